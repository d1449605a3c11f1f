// Int4Linear: weight-only int4 MatMul (onnxruntime's com.microsoft::MatMulNBits, bits=4).
// in = (x [..., K], q uint8 [N, K/block, block/2], scales f32 [N*K/block], zero points u8?, bias f32 [N]?),
// ia = K, N, block, q8 (int8 activations from the kernel's row threshold; default 1); out = y [..., N].
// The weights are plan constants read in place, so a plan over a memory-mapped int4 file holds them
// once; the int8-activation path adds a packed copy on its first call and then drops the resident
// pages of the mapped weights it no longer reads. Kernel: graphopt/kernels/int4.h.
#include <algorithm>
#include <mutex>
#include <string>

#include "../plan.h"
#include "../pool.h"
#include "graphopt/kernels/int4.h"

namespace graphopt::runtime {
namespace {

Status int4_linear(ExecCtx& c, const Step& s) {
  const Tensor& x = c.in(s, 0);
  const Tensor& q = c.in(s, 1);
  const Tensor& sc = c.in(s, 2);
  kernels::Int4Weights w;
  w.K = s.i("K", 0);
  w.N = s.i("N", 0);
  w.block = s.i("block", 32);
  if (x.dt != DType::f32) return bad(s, std::string("Int4Linear needs float32 input, got ") + dtype_name(x.dt));
  if (x.shape.empty() || x.shape.back() != w.K)
    return bad(s, "input " + shape_str(x.shape) + " does not end in K=" + std::to_string(w.K));
  if (w.block < 16) return bad(s, "block size " + std::to_string(w.block) + " < 16");
  const index_t nb = (w.K + w.block - 1) / w.block;
  if (q.dt != DType::u8 || q.numel() != w.N * nb * (w.block / 2))
    return bad(s, "packed weight " + shape_str(q.shape) + " is not uint8 [N, K/block, block/2]");
  if (sc.dt != DType::f32 || sc.numel() != w.N * nb) return bad(s, "scales " + shape_str(sc.shape) + " are not float32 [N*K/block]");
  w.q = q.as<std::uint8_t>();
  w.scale = sc.as<float>();
  if (c.has(s, 3)) {
    const Tensor& zp = c.in(s, 3);
    if (zp.dt != DType::u8 || zp.numel() != w.N * ((nb + 1) / 2)) return bad(s, "zero points are not packed uint8 [N*ceil(K/block/2)]");
    w.zp = zp.as<std::uint8_t>();
  }
  const float* bias = nullptr;
  if (c.has(s, 4)) {
    const Tensor& b = c.in(s, 4);
    if (b.dt != DType::f32 || b.numel() != w.N) return bad(s, "bias " + shape_str(b.shape) + " is not float32 [N]");
    bias = b.as<float>();
  }
  Shape os = x.shape;
  os.back() = w.N;
  Tensor& y = c.out(s, 0, os, DType::f32);
  const index_t M = x.numel() / w.K;
  std::mutex mu;
  Status err;
  // int8 activations (q8 = 1, the lowering's default) from the kernel's row threshold; the packed
  // weights are built on the first such call (a plan that only decodes never holds them).
  w.q8 = s.i("q8", 1) != 0 && M >= kernels::int4_q8_min_rows();
  if (w.q8 && kernels::int4_q8_needs_pack()) {
    if (!s.state) {
      auto p = std::make_shared<kernels::Int4Packed>();
      kernels::int4_pack_init(w, p.get());
      parallel_ranges(p->groups, pool_threads(), 8, 1, [&](index_t b, index_t e) { kernels::int4_pack_groups(w, b, e, p.get()); });
      s.state_bytes = p->nbytes();
      s.state = p;
      // The int8 path reads only the packed copy: the mapped MatMulNBits weights, scales and zero
      // points leave the resident set (the fp32 path, if the ISA cap drops, faults them back in).
      for (std::size_t i = 1; i <= 3; ++i) c.drop_const_pages(s, i);
    }
    w.packed = static_cast<const kernels::Int4Packed*>(s.state.get());
  }
  // Columns over the pool in multiples of 16 (one prefill panel); at least ~64K weights per part.
  const index_t min_cols = std::max<index_t>(16, (index_t{1} << 16) / std::max<index_t>(w.K, 1));
  parallel_ranges(w.N, pool_threads(), min_cols, 16, [&](index_t b, index_t e) {
    Status st = kernels::int4_matmul(x.as<float>(), M, w, bias, y.as<float>(), b, e);
    if (!st) { std::lock_guard<std::mutex> lk(mu); err = st; }
  });
  return err ? Status::ok() : bad(s, err.message());
}

}  // namespace

void register_int4_ops(std::map<std::string, OpFn>& r) { r["Int4Linear"] = &int4_linear; }

}  // namespace graphopt::runtime
