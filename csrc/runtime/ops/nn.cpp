// Transformer ops: Linear (packed GEMM, fp32 / bf16 / int8 with fused bias and
// activation), batched MatMul, LayerNorm (+ residual), Softmax, fused
// attention, reductions, Quantize/DequantizeLinear.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include <omp.h>

#include <mutex>

#include "../plan.h"
#include "../pool.h"
#include "graphopt/kernels/attention.h"
#include "graphopt/kernels/eltwise.h"
#include "graphopt/isa.h"
#include "graphopt/kernels/gemm.h"

namespace graphopt::runtime {
namespace {

using kernels::Epilogue;
using kernels::PackedWeights;

Status wrap(const Step& s, const Status& st) { return st ? Status::ok() : bad(s, st.message()); }

template <class T>
T* scratch(const Step& s, std::size_t n) {  // NOLINT: defined before its first use below
  if (s.scratch.size() < n * sizeof(T) + 64) s.scratch.resize(n * sizeof(T) + 64);
  auto p = reinterpret_cast<std::uintptr_t>(s.scratch.data());
  return reinterpret_cast<T*>((p + 63) / 64 * 64);
}

}  // namespace
namespace {

// Range of x widened to include 0 (the kernels' vectorised minmax), split over the pool when large.
void minmax(const float* x, index_t n, float* lo, float* hi) {
  const int t = pool_threads();
  if (t <= 1 || n < 4 * kParMin) { kernels::minmax(x, n, lo, hi); return; }
  std::vector<float> l(static_cast<std::size_t>(t), 0.f), h(static_cast<std::size_t>(t), 0.f);
  const index_t size = (n + t - 1) / t;
  parallel_for(t, [&](index_t i) {
    const index_t b = i * size, e = std::min(n, b + size);
    if (b < e) kernels::minmax(x + b, e - b, &l[i], &h[i]);
  });
  *lo = *std::min_element(l.begin(), l.end());
  *hi = *std::max_element(h.begin(), h.end());
}

// Dynamic int8 Linear input: one u8 scale / zero point per row (token or sample), so a row's
// outlier or Inf cannot flatten the other rows' quantization grid, and a row holding a NaN or
// an Inf comes out all NaN instead of finite numbers. The rows are quantized here in one read
// each (kernels::quantize_rows_dynamic_u8), or arrive quantized (xq) with their grid [2, M]
// (scales, then zero points; a NaN scale marks a non-finite row) from a LayerNorm that wrote
// them in its own pass. Returns the u8 rows; rs/rz get the GEMM's row grids
// (Epilogue::a_row_scale / a_row_zp), nonfinite the rows whose output must be NaN.
const std::uint8_t* dynamic_rows(const Step& s, const float* x, const std::uint8_t* xq, const float* grid, index_t M,
                                 index_t K, std::vector<float>* rs, std::vector<std::int32_t>* rz,
                                 std::vector<index_t>* nonfinite, Status* err) {
  rs->resize(static_cast<std::size_t>(M));
  rz->resize(static_cast<std::size_t>(M));
  if (!xq) {
    auto* buf = scratch<std::uint8_t>(s, static_cast<std::size_t>(M * K));
    std::mutex mu;
    parallel_ranges(M, pool_threads(), std::max<index_t>(1, 8192 / std::max<index_t>(K, 1)), 1, [&](index_t m0, index_t m1) {
      Status st = kernels::quantize_rows_dynamic_u8(x + m0 * K, m1 - m0, K, buf + m0 * K, rs->data() + m0, rz->data() + m0);
      if (!st) { std::lock_guard<std::mutex> lk(mu); *err = st; }
    });
    xq = buf;
  } else {
    for (index_t m = 0; m < M; ++m) {
      (*rs)[m] = grid[m];
      (*rz)[m] = static_cast<std::int32_t>(grid[M + m]);
    }
  }
  for (index_t m = 0; m < M; ++m)
    if (!((*rs)[m] > 0.f && (*rz)[m] >= 0 && (*rz)[m] <= 255)) {  // NaN scale: the row held a NaN or an Inf
      nonfinite->push_back(m);
      (*rs)[m] = 1.f;
      (*rz)[m] = 0;
    }
  return xq;
}

// out 3 (a dynamic int8 Linear feeding another): its output rows quantized on their own grids (u8
// output 0 and the [2, M] grid output 1, as a LayerNorm writes them for its dynamic consumers), in
// chunks of rows whose fp32 GEMM output stays in a per-thread buffer (L2) instead of going through
// memory to be read back by the consumer. Same bits as quantizing the fp32 output afterwards.
Status linear_rows_out(const Step& s, const std::uint8_t* A, const std::vector<float>& rs, const std::vector<std::int32_t>& rz,
                       const std::vector<index_t>& nonfinite, index_t M, index_t K, index_t N, const float* bias,
                       kernels::Act act, std::uint8_t* yq, float* grid) {
  // At most 128 rows (their fp32 rows stay in L2), and at least one chunk per thread: a batch-1 call
  // (128 rows) in one chunk ran on one thread (DistilBERT b1, 2 threads: 11.7 ms against static's 9.8).
  // Multiples of 16 rows keep the chunks on the AMX path. Rows are independent: same bits for any chunking.
  const index_t per_thread = (M + pool_threads() - 1) / pool_threads();
  const index_t kChunk = std::min<index_t>(128, std::max<index_t>(16, (per_thread + 15) / 16 * 16));
  std::vector<std::int32_t> gz(static_cast<std::size_t>(M));
  std::vector<char> bad_row(static_cast<std::size_t>(M), 0);
  for (index_t m : nonfinite) bad_row[m] = 1;
  std::mutex mu;
  Status err;
  parallel_for((M + kChunk - 1) / kChunk, [&](index_t ci) {
    thread_local std::vector<float> buf;
    const index_t r0 = ci * kChunk, rows = std::min(kChunk, M - r0);
    if (buf.size() < static_cast<std::size_t>(kChunk * N)) buf.resize(static_cast<std::size_t>(kChunk * N));
    index_t col0 = 0;
    Status st;
    for (const auto& Wp : s.packed) {
      Epilogue e;
      e.bias = bias ? bias + col0 : nullptr;
      e.act = act;
      e.out = kernels::OutType::f32;
      e.a_row_scale = rs.data() + r0;
      e.a_row_zp = rz.data() + r0;
      if (st = kernels::gemm_s8(A + r0 * K, rows, K, *Wp, e, buf.data() + col0, N); !st) break;
      col0 += Wp->N();
    }
    for (index_t m = r0; st && m < r0 + rows; ++m)
      if (bad_row[m]) std::fill_n(buf.data() + (m - r0) * N, N, std::numeric_limits<float>::quiet_NaN());
    if (st) st = kernels::quantize_rows_dynamic_u8(buf.data(), rows, N, yq + r0 * N, grid + r0, gz.data() + r0);
    if (!st) { std::lock_guard<std::mutex> lk(mu); err = st; }
  });
  if (!err) return bad(s, err.message());
  for (index_t m = 0; m < M; ++m) grid[M + m] = static_cast<float>(gz[m]);
  return Status::ok();
}

// Linear: y[..., N] = act(x[..., K] @ W + bias), W packed at compile time, possibly as several
// column slices (ia "cols": first column of each slice) so threads split N without sharing panels.
// mode 0 fp32, 1 bf16 (x converted once per call), 2 int8 (x quantized to u8 per tensor
// statically from a_scale/a_zp when given, else dynamically per row: dynamic_rows; input 4,
// a [2, M] row grid, comes with a u8 x already quantized that way by a LayerNorm).
// Chained Linears skip the conversions: x may already be bf16 (mode 1) or u8 on the static
// grid a_scale/a_zp (mode 2), and "out" asks for 1 bf16 / 2 u8 (out_scale, out_zp) outputs, or 3 (dynamic
// int8) u8 rows on their own grids with the grid as output 1 (linear_rows_out).
// Optional per-channel multipliers, each a folded Mul by a constant (SmoothQuant's 1/s): input 2
// a_mul[K] scales a float x before its static quantization, input 3 out_mul[N] the output
// before it is stored or requantized. Both round as the Mul step would, so the bits do not change.
Status linear(ExecCtx& c, const Step& s) {
  const Tensor& x = c.in(s, 0);
  const PackedWeights& W0 = *s.packed.at(0);
  const index_t K = W0.K();
  index_t N = 0;
  for (auto& w : s.packed) N += w->N();
  const int mode = static_cast<int>(s.i("mode", 0));
  const bool rows_grid = mode == 2 && x.dt == DType::u8 && c.has(s, 4);  // quantized per row upstream
  const bool pre = (mode == 1 && x.dt == DType::bf16) || rows_grid ||
                   (mode == 2 && x.dt == DType::u8 && s.f("a_scale", 0.0) > 0.0);  // already converted
  if (x.dt != DType::f32 && !pre) return bad(s, std::string("input must be float32, got ") + dtype_name(x.dt));
  if (x.shape.empty() || x.shape.back() != K)
    return bad(s, "input " + shape_str(x.shape) + " does not end in K=" + std::to_string(K));
  const index_t M = x.numel() / K;
  Shape os = x.shape;
  os.back() = N;
  const float* bias = c.has(s, 1) ? c.in(s, 1).as<float>() : nullptr;
  const float* a_mul = c.has(s, 2) ? c.in(s, 2).as<float>() : nullptr;
  const float* out_mul = c.has(s, 3) ? c.in(s, 3).as<float>() : nullptr;
  if (a_mul && (c.in(s, 2).dt != DType::f32 || c.in(s, 2).numel() != K))
    return bad(s, "a_mul must be float32 with K=" + std::to_string(K) + " entries");
  if (a_mul && (mode != 2 || pre || !(s.f("a_scale", 0.0) > 0.0)))
    return bad(s, "a_mul needs a static int8 Linear (a_scale > 0) on a float32 input");
  if (out_mul && (c.in(s, 3).dt != DType::f32 || c.in(s, 3).numel() != N))
    return bad(s, "out_mul must be float32 with N=" + std::to_string(N) + " entries");
  const auto act = static_cast<kernels::Act>(s.i("act", 0));
  const int out_kind = static_cast<int>(s.i("out", 0));
  const DType ydt = out_kind >= 2 ? DType::u8 : out_kind == 1 ? DType::bf16 : DType::f32;
  Tensor& y = c.out(s, 0, os, ydt);
  if (M == 0) return Status::ok();
  // Dynamic int8 quantizes per row (dynamic_rows); a u8 input with a row grid needs that path.
  const bool dyn_rows = mode == 2 && (rows_grid || !pre) && out_kind != 2 && !(s.f("a_scale", 0.0) > 0.0);
  if (rows_grid && !dyn_rows)
    return bad(s, "a u8 input with a row grid needs a dynamic int8 Linear with a float32 or bf16 output");
  if (dyn_rows && out_mul) return bad(s, "out_mul is not applied on the per-row dynamic int8 path");
  if (out_kind == 3 && !dyn_rows) return bad(s, "u8 rows with their own grids (out 3) need a dynamic int8 Linear");
  const void* A = x.data;
  float a_scale = 1.f;
  std::int32_t a_zp = 0;
  std::vector<float> rs;
  std::vector<std::int32_t> rz;
  std::vector<index_t> nonfinite;
  if (dyn_rows) {
    const float* grid = nullptr;
    if (rows_grid) {
      const Tensor& gt = c.in(s, 4);
      if (gt.dt != DType::f32 || gt.numel() != 2 * M)
        return bad(s, "row grid must be float32 with 2 x " + std::to_string(M) + " entries, got " + shape_str(gt.shape));
      grid = gt.as<float>();
    }
    Status qerr;
    A = dynamic_rows(s, rows_grid ? nullptr : x.as<float>(), rows_grid ? x.as<std::uint8_t>() : nullptr, grid, M, K, &rs,
                     &rz, &nonfinite, &qerr);
    if (!qerr) return bad(s, qerr.message());
  } else if (pre) {
    a_scale = static_cast<float>(s.f("a_scale", 1.0));
    a_zp = static_cast<std::int32_t>(s.i("a_zp", 0));
  } else if (mode == 1) {
    auto* xb = scratch<bf16_t>(s, static_cast<std::size_t>(x.numel()));
    std::vector<Status> errs(1);
    parallel_ranges(x.numel(), pool_threads(), 8192, 16, [&](index_t b, index_t e) {
      Status st = kernels::f32_to_bf16(x.as<float>() + b, e - b, xb + b);
      if (!st) errs[0] = st;
    });
    if (!errs[0]) return bad(s, errs[0].message());
    A = xb;
  } else if (mode == 2) {
    a_scale = static_cast<float>(s.f("a_scale", 0.0));
    a_zp = static_cast<std::int32_t>(s.i("a_zp", 0));
    if (!(a_scale > 0.f)) {
      float lo, hi;
      minmax(x.as<float>(), x.numel(), &lo, &hi);
      a_scale = (hi - lo) / 255.f;
      if (!(a_scale > 0.f)) a_scale = 1.f;
      a_zp = std::clamp(static_cast<std::int32_t>(std::nearbyint(-lo / a_scale)), 0, 255);
    }
    auto* xq = scratch<std::uint8_t>(s, static_cast<std::size_t>(x.numel()));
    std::vector<Status> errs(1);
    parallel_ranges(x.numel(), pool_threads(), 8192, 64, [&](index_t b, index_t e) {
      kernels::QuantAxis ax;
      ax.scale = &a_scale;
      ax.zero_point = &a_zp;
      if (!a_mul) {
        ax.inner = e - b;
        Status st = kernels::quantize(x.as<float>() + b, ax, true, xq + b);
        if (!st) errs[0] = st;
        return;
      }
      // x * a_mul in cache-sized pieces, then the same quantize call as the unscaled path.
      constexpr index_t kPiece = 4096;
      float t[kPiece];
      const float* xs = x.as<float>();
      for (index_t p0 = b; p0 < e; p0 += kPiece) {
        const index_t n = std::min(kPiece, e - p0);
        index_t k = p0 % K;
        for (index_t i = 0; i < n; ++i) {
          t[i] = xs[p0 + i] * a_mul[k];
          if (++k == K) k = 0;
        }
        ax.inner = n;
        Status st = kernels::quantize(t, ax, true, xq + p0);
        if (!st) { errs[0] = st; return; }
      }
    });
    if (!errs[0]) return bad(s, errs[0].message());
    A = xq;
  }
  if (out_kind == 3)
    return linear_rows_out(s, static_cast<const std::uint8_t*>(A), rs, rz, nonfinite, M, K, N, bias, act,
                           y.as<std::uint8_t>(), c.out(s, 1, Shape{2, M}, DType::f32).as<float>());
  // Chunks: column slices x row blocks (row blocks only when M is large).
  const index_t P = static_cast<index_t>(s.packed.size());
  const int t = pool_threads();
  const index_t mblock = M >= 256 && t > 1 ? std::max<index_t>(64, (M + t - 1) / t) : M;
  const index_t MB = (M + mblock - 1) / mblock;
  std::vector<index_t> col0(static_cast<std::size_t>(P), 0);
  for (index_t p = 1; p < P; ++p) col0[p] = col0[p - 1] + s.packed[p - 1]->N();
  std::mutex mu;
  Status err;
  parallel_for(P * MB, [&](index_t ci) {
    const index_t p = ci % P, r0 = (ci / P) * mblock, rows = std::min(mblock, M - r0);
    const PackedWeights& W = *s.packed[p];
    Epilogue e;
    e.bias = bias ? bias + col0[p] : nullptr;
    e.out_mul = out_mul ? out_mul + col0[p] : nullptr;
    e.act = act;
    e.out = out_kind == 2 ? kernels::OutType::u8 : out_kind == 1 ? kernels::OutType::bf16 : kernels::OutType::f32;
    e.out_scale = static_cast<float>(s.f("out_scale", 1.0));
    e.out_zp = static_cast<std::int32_t>(s.i("out_zp", 0));
    void* C = static_cast<char*>(y.data) + (r0 * N + col0[p]) * static_cast<index_t>(dtype_size(ydt));
    Status st;
    if (mode == 0) st = kernels::gemm_f32(static_cast<const float*>(A) + r0 * K, rows, K, W, e, C, N);
    else if (mode == 1) st = kernels::gemm_bf16(static_cast<const bf16_t*>(A) + r0 * K, rows, K, W, e, C, N);
    else {
      e.a_scale = a_scale;
      e.a_zp = a_zp;
      if (!rs.empty()) {
        e.a_row_scale = rs.data() + r0;
        e.a_row_zp = rz.data() + r0;
      }
      st = kernels::gemm_s8(static_cast<const std::uint8_t*>(A) + r0 * K, rows, K, W, e, C, N);
    }
    if (!st) { std::lock_guard<std::mutex> lk(mu); err = st; }
  });
  if (!err) return bad(s, err.message());
  for (index_t m : nonfinite) {
    if (ydt == DType::bf16) std::fill_n(y.as<bf16_t>() + m * N, N, bf16_t{0x7fc0});
    else std::fill_n(y.as<float>() + m * N, N, std::numeric_limits<float>::quiet_NaN());
  }
  return Status::ok();
}

// MatMul of two run-time tensors (numpy semantics, batch broadcasting). Each
// batch's B is packed into fp32 panels (cheap next to the GEMM) and run through gemm_f32.
Status matmul(ExecCtx& c, const Step& s) {
  const Tensor& a = c.in(s, 0);
  const Tensor& b = c.in(s, 1);
  if (a.dt != DType::f32 || b.dt != DType::f32) return bad(s, "MatMul needs float32 inputs");
  Shape as = a.shape, bs = b.shape;
  const bool a1 = as.size() == 1, b1 = bs.size() == 1;
  if (a1) as.insert(as.begin(), 1);
  if (b1) bs.push_back(1);
  if (as.size() < 2 || bs.size() < 2) return bad(s, "MatMul of scalars");
  const index_t M = as[as.size() - 2], K = as.back(), N = bs.back();
  if (bs[bs.size() - 2] != K) return bad(s, "inner dimensions differ: " + shape_str(a.shape) + " x " + shape_str(b.shape));
  Shape ab(as.begin(), as.end() - 2), bb(bs.begin(), bs.end() - 2), ob;
  if (!broadcast_shape(ab, bb, &ob)) return bad(s, "batch dimensions do not broadcast: " + shape_str(a.shape) + " x " + shape_str(b.shape));
  Shape os = ob;
  if (!a1) os.push_back(M);
  if (!b1) os.push_back(N);
  Tensor& y = c.out(s, 0, os, DType::f32);
  const index_t nb = numel(ob);
  if (nb == 0 || M == 0 || N == 0) return Status::ok();
  if (K == 0) { std::fill_n(y.as<float>(), y.numel(), 0.f); return Status::ok(); }
  // Batch index -> offsets in a and b (broadcast strides).
  auto offs = [&](const Shape& src, index_t bi) {
    index_t off = 0, stride = 1, rem = bi;
    std::vector<index_t> idx(ob.size());
    for (std::size_t d = ob.size(); d-- > 0;) { idx[d] = rem % ob[d]; rem /= ob[d]; }
    for (std::size_t k = 0; k < src.size(); ++k) {
      const std::size_t sd = src.size() - 1 - k, od = ob.size() - 1 - k;
      if (src[sd] != 1) off += idx[od] * stride;
      stride *= src[sd];
    }
    return off;
  };
  Epilogue e;
  for (index_t bi = 0; bi < nb; ++bi) {
    const float* ap = a.as<float>() + offs(ab, bi) * M * K;
    const float* bp = b.as<float>() + offs(bb, bi) * K * N;
    PackedWeights W;
    if (Status st = PackedWeights::pack_f32(bp, K, N, false, &W); !st) return bad(s, st.message());
    if (Status st = kernels::gemm_f32(ap, M, K, W, e, y.as<float>() + bi * M * N, N); !st) return bad(s, st.message());
  }
  return Status::ok();
}

// LayerNorm over the trailing dims from `axis`: in = (x, gamma, beta?, residual?),
// out = (y, sum?) where sum = x + residual (SkipLayerNorm's second output).
Status layernorm(ExecCtx& c, const Step& s) {
  const Tensor& x = c.in(s, 0);
  const Tensor& g = c.in(s, 1);
  if (x.dt != DType::f32) return bad(s, "needs float32");
  std::int64_t axis = s.i("axis", -1);
  if (!norm_axis(axis, static_cast<std::int64_t>(x.shape.size()))) return bad(s, "axis out of range");
  index_t N = 1;
  for (std::size_t d = axis; d < x.shape.size(); ++d) N *= x.shape[d];
  if (g.numel() != N) return bad(s, "gamma has " + std::to_string(g.numel()) + " elements, normalised size is " + std::to_string(N));
  const float* beta = c.has(s, 2) ? c.in(s, 2).as<float>() : nullptr;
  const float* res = nullptr;
  const float* xin = x.as<float>();
  Shape ys = x.shape;
  const Tensor* r = c.has(s, 3) ? &c.in(s, 3) : nullptr;
  if (r && r->dt != DType::f32) return bad(s, "residual must be float32");
  if (r && r->shape != x.shape && !broadcast_shape(x.shape, r->shape, &ys))
    return bad(s, "residual " + shape_str(r->shape) + " does not broadcast with " + shape_str(x.shape));
  Tensor& y = c.out(s, 0, ys, DType::f32);
  float* sum = s.out.size() > 1 && s.out[1] >= 0 ? c.out(s, 1, ys, DType::f32).as<float>() : nullptr;
  if (r) {
    if (r->shape == x.shape) {
      res = r->as<float>();
    } else {
      // Broadcasting residual (e.g. position embeddings [1,S,H] under a batch of rows): the sum is
      // materialised once -- into output 1 when SkipLayerNorm's Sum is used (it is the residual
      // stream of a pre-LN block, and the rows then read it as x), else into scratch.
      const Tensor& rr = *r;
      const index_t n = numel(ys);
      float* tot = sum ? sum : scratch<float>(s, static_cast<std::size_t>(n));
      const std::size_t R = ys.size();
      auto strides = [&](const Shape& sh) {
        std::vector<index_t> st(R, 0);
        index_t acc = 1;
        for (std::size_t k = 0; k < sh.size(); ++k) {
          const std::size_t i = sh.size() - 1 - k;
          st[R - 1 - k] = sh[i] == 1 ? 0 : acc;
          acc *= sh[i];
        }
        return st;
      };
      const std::vector<index_t> sx = strides(x.shape), sr = strides(rr.shape);
      std::vector<index_t> idx(R, 0);
      for (index_t i = 0; i < n; ++i) {
        index_t ox = 0, orr = 0;
        for (std::size_t d = 0; d < R; ++d) { ox += idx[d] * sx[d]; orr += idx[d] * sr[d]; }
        tot[i] = x.as<float>()[ox] + rr.as<float>()[orr];
        for (std::size_t d = R; d-- > 0;) { if (++idx[d] < ys[d]) break; idx[d] = 0; }
      }
      xin = tot;
    }
  }
  // Output 2 (int8 consumers): y quantized to u8 in the same pass, on the static consumers' grid
  // (q_scale, q_zp), or with output 3 (dynamic consumers) each row on its own grid, written as
  // [2, rows]: the row scales (NaN: the row is not finite), then the zero points.
  std::uint8_t* q = s.out.size() > 2 && s.out[2] >= 0 ? c.out(s, 2, ys, DType::u8).as<std::uint8_t>() : nullptr;
  const index_t rows = N ? numel(ys) / N : 0;
  float* grid = s.out.size() > 3 && s.out[3] >= 0 ? c.out(s, 3, Shape{2, rows}, DType::f32).as<float>() : nullptr;
  if (grid && !q) return bad(s, "a row grid (output 3) needs the u8 output 2");
  std::vector<std::int32_t> rz(grid ? static_cast<std::size_t>(rows) : 0);
  const float q_scale = static_cast<float>(s.f("q_scale", 1.0));
  const auto q_zp = static_cast<std::int32_t>(s.i("q_zp", 0));
  const float eps = static_cast<float>(s.f("epsilon", 1e-5));
  std::mutex mu;
  Status err;
  parallel_ranges(rows, pool_threads(), 16, 1, [&](index_t b, index_t e) {
    const index_t o = b * N;
    const float* r0 = res ? res + o : nullptr;
    float* s0 = sum ? sum + o : nullptr;
    Status st = grid ? kernels::layernorm_quantize_dynamic(xin + o, r0, g.as<float>(), beta, eps, e - b, N, y.as<float>() + o,
                                                           s0, q + o, grid + b, rz.data() + b)
              : q ? kernels::layernorm_quantize(xin + o, r0, g.as<float>(), beta, eps, e - b, N, y.as<float>() + o, s0,
                                                q_scale, q_zp, q + o)
                  : kernels::layernorm(xin + o, r0, g.as<float>(), beta, eps, e - b, N, y.as<float>() + o, s0);
    if (!st) { std::lock_guard<std::mutex> lk(mu); err = st; }
  });
  for (index_t r = 0; r < static_cast<index_t>(rz.size()); ++r) grid[rows + r] = static_cast<float>(rz[r]);
  return wrap(s, err);
}

Status softmax(ExecCtx& c, const Step& s) {
  const Tensor& x = c.in(s, 0);
  if (x.dt != DType::f32) return bad(s, "needs float32");
  std::int64_t axis = s.i("axis", -1);
  const std::int64_t r = static_cast<std::int64_t>(x.shape.size());
  if (r == 0 || !norm_axis(axis, r) || axis != r - 1) return bad(s, "only the last axis is supported natively");
  const index_t N = x.shape.back();
  Tensor& y = c.out(s, 0, x.shape, DType::f32);
  if (x.numel() == 0) return Status::ok();
  return wrap(s, kernels::softmax(x.as<float>(), nullptr, 1, x.numel() / N, N, y.as<float>()));
}

// Multi-head attention on the fused kernel (kernels::attention: S = Q K^T, mask, softmax and
// P V per head and query block, in registers and L1, with fp32 or bf16 products).
// Layouts are read through strides, so no transposes are materialised:
//   in_bsh=0: Q, K, V are [B, N, S, D];   in_bsh=1: [B, S, C] rows holding the heads side by side
//   (packed=1: one [B, S, 3H] tensor with Q | K | V, as a fused QKV projection produces it);
//   out_bsh=0: O is [B, N, S, D];  out_bsh=1: O is [B, S, N*D] (ready for the output projection).
// mask: additive fp32 broadcastable as [1|B, 1|N, 1|Sq, Sk] (per-head: T5's position bias);
// trailing keys masked (<= -5000) for every query of a batch row (padding) are skipped by the kernel.
// kv_heads (in_bsh) / K's head dim (4-D): grouped K/V heads read in place (GQA); causal=1: key j is
// masked for query i when j > i + Sk - Sq (window=W > 0: also when j < i + Sk - Sq - W + 1), with
// the score causal_fill (default -inf; the key-padding filler when a padding mask comes too).
// bf16=1: bf16 products with fp32 accumulation and softmax (the bf16/int8 precisions).

// Runs the kernel's tasks on the executor's pool, so a run keeps one set of worker threads.
void attention_tasks(void*, std::int64_t n, kernels::AttnTaskFn fn, void* ctx) {
  parallel_for(n, [&](index_t t) { fn(ctx, t); });
}

Status attention(ExecCtx& c, const Step& s) {
  const bool in_bsh = s.i("in_bsh", 0) != 0, out_bsh = s.i("out_bsh", 0) != 0, packed = s.i("packed", 0) != 0;
  const Tensor& q = c.in(s, 0);
  const Tensor& k = packed ? q : c.in(s, 1);
  const Tensor& v = packed ? q : c.in(s, 2);
  // Q, K, V: all float32, or all bf16 (a chained producer wrote them so); "out" 1 asks for bf16 out.
  const DType dt = q.dt;
  if ((dt != DType::f32 && dt != DType::bf16) || k.dt != dt || v.dt != dt)
    return bad(s, std::string("Q, K, V must all be float32 or all bf16, got ") + dtype_name(q.dt) + ", " +
                  dtype_name(k.dt) + ", " + dtype_name(v.dt));
  const std::size_t es = dtype_size(dt);
  kernels::AttentionArgs a;
  index_t B, N, Sq, Sk, D, Nkv;
  const char *qp = static_cast<const char*>(q.data), *kp = static_cast<const char*>(k.data), *vp = static_cast<const char*>(v.data);
  if (!in_bsh) {
    if (q.shape.size() != 4 || k.shape.size() != 4 || v.shape.size() != 4) return bad(s, "Q, K, V must be rank 4 [B,N,S,D]");
    B = q.shape[0]; N = q.shape[1]; Sq = q.shape[2]; D = q.shape[3]; Sk = k.shape[2]; Nkv = k.shape[1];
    if (k.shape[0] != B || Nkv < 1 || N % Nkv || k.shape[3] != D || v.shape != k.shape)
      return bad(s, "K/V shapes " + shape_str(k.shape) + "/" + shape_str(v.shape) + " do not match Q " + shape_str(q.shape));
    a.q_st = {N * Sq * D, Sq * D, D};
    a.k_st = a.v_st = {Nkv * Sk * D, Sk * D, D};
  } else {
    N = s.i("heads", 1);
    if (q.shape.size() != 3) return bad(s, "input must be [B, S, C], got " + shape_str(q.shape));
    B = q.shape[0]; Sq = q.shape[1];
    const index_t C = q.shape[2];
    if (packed) {
      if (C % (3 * N)) return bad(s, "packed QKV width " + std::to_string(C) + " is not divisible by 3*heads");
      D = C / 3 / N;
      Sk = Sq;
      Nkv = N;
      kp = qp + N * D * es;
      vp = qp + 2 * N * D * es;
      a.q_st = a.k_st = a.v_st = {Sq * C, D, C};
    } else {
      Nkv = s.i("kv_heads", N);
      if (C % N || Nkv < 1 || N % Nkv || k.shape.size() != 3 || v.shape != k.shape || k.shape[0] != B ||
          k.shape[2] * N != C * Nkv)
        return bad(s, "Q/K/V must be [B, S, H] with H divisible by heads (K/V: kv_heads of the same size), got " +
                          shape_str(q.shape) + ", " + shape_str(k.shape) + ", " + shape_str(v.shape));
      D = C / N;
      Sk = k.shape[1];
      const index_t Ckv = Nkv * D;
      a.q_st = {Sq * C, D, C};
      a.k_st = a.v_st = {Sk * Ckv, D, Ckv};
    }
  }
  const float scale = static_cast<float>(s.f("scale", 1.0 / std::sqrt(static_cast<double>(D))));
  const int mi = packed ? 1 : 3;
  if (c.has(s, mi)) {
    const Tensor& m = c.in(s, mi);
    if (m.dt != DType::f32) return bad(s, "mask must be float32");
    Shape ms = m.shape;
    while (ms.size() < 4) ms.insert(ms.begin(), 1);
    if (ms.size() != 4 || (ms[1] != 1 && ms[1] != N) || ms[3] != Sk || (ms[0] != 1 && ms[0] != B) ||
        (ms[2] != 1 && ms[2] != Sq))
      return bad(s, "mask shape " + shape_str(m.shape) + " is not [1|B, 1|N, 1|Sq, Sk]");
    if (s.i("padded", 0) && ms[0] != B)  // a key-padding mask has one row per batch row, never broadcast
      return bad(s, "key padding mask has " + std::to_string(ms[0]) + " rows for a batch of " + std::to_string(B));
    a.mask = m.as<float>();
    a.mask_b = ms[0];
    a.mask_h = ms[1];
    a.mask_q = ms[2];
  }
  const DType odt = s.i("out", 0) == 1 ? DType::bf16 : DType::f32;
  Tensor& o = out_bsh ? c.out(s, 0, {B, Sq, N * D}, odt) : c.out(s, 0, {B, N, Sq, D}, odt);
  if (B * N * Sq == 0) return Status::ok();
  a.out_st = out_bsh ? kernels::HeadStrides{Sq * N * D, D, N * D} : kernels::HeadStrides{N * Sq * D, Sq * D, D};
  a.type = dt == DType::bf16 ? kernels::AttnType::bf16 : kernels::AttnType::f32;
  a.out_bf16 = odt == DType::bf16;
  a.q = qp; a.k = kp; a.v = vp; a.out = o.data;
  a.B = B; a.H = N; a.Sq = Sq; a.Sk = Sk; a.D = D; a.Hkv = Nkv;
  a.causal = s.i("causal", 0) != 0;
  a.window = s.i("window", 0);
  a.causal_fill = static_cast<float>(s.f("causal_fill", -INFINITY));
  a.scale = scale;
  a.bf16_compute = s.i("bf16", 0) != 0;
  a.threads = pool_threads();
  a.run = &attention_tasks;
  return wrap(s, kernels::attention(a));
}

// ReduceMean / ReduceSum / ReduceMax over `axes` (attribute or input), keepdims.
template <int KIND>  // 0 mean, 1 sum, 2 max
Status reduce(ExecCtx& c, const Step& s) {
  const Tensor& x = c.in(s, 0);
  if (x.dt != DType::f32) return bad(s, "needs float32");
  const std::int64_t r = static_cast<std::int64_t>(x.shape.size());
  std::vector<std::int64_t> axes = c.has(s, 1) ? read_ints(c.in(s, 1)) : (s.iv("axes") ? *s.iv("axes") : std::vector<std::int64_t>{});
  const bool keep = s.i("keepdims", 1) != 0;
  std::vector<bool> red(r, false);
  if (axes.empty()) {
    if (s.i("noop_with_empty_axes", 0)) {
      Tensor& y = c.out(s, 0, x.shape, DType::f32);
      if (x.nbytes()) std::memcpy(y.data, x.data, x.nbytes());
      return Status::ok();
    }
    std::fill(red.begin(), red.end(), true);
  }
  for (auto a : axes) {
    if (!norm_axis(a, r)) return bad(s, "axis out of range");
    red[a] = true;
  }
  Shape os, full(r);
  index_t count = 1;
  for (std::int64_t d = 0; d < r; ++d) {
    full[d] = red[d] ? 1 : x.shape[d];
    if (red[d]) count *= x.shape[d];
    if (!red[d]) os.push_back(x.shape[d]);
    else if (keep) os.push_back(1);
  }
  Tensor& y = c.out(s, 0, os, DType::f32);
  float* yp = y.as<float>();
  const index_t on = numel(full);
  const float init = KIND == 2 ? -INFINITY : 0.f;
  std::fill_n(yp, on, init);
  // Output strides over the full-rank shape.
  Shape ost(r, 1);
  for (std::int64_t d = r - 1; d > 0; --d) ost[d - 1] = ost[d] * full[d];
  const float* xp = x.as<float>();
  const index_t n = x.numel();
  if (r > 0 && red[r - 1] && std::count(red.begin(), red.end(), true) == 1) {
    const index_t N = x.shape[r - 1], rows = n / std::max<index_t>(N, 1);
    parallel_ranges(rows, (n >= kParMin) ? pool_threads() : 1, 1, 1, [&](index_t row0, index_t row1) {
      for (index_t row = row0; row < row1; ++row) {
        float acc = init;
        for (index_t j = 0; j < N; ++j) {
          const float v = xp[row * N + j];
          acc = KIND == 2 ? (v > acc || v != v ? v : acc) : acc + v;  // NaN wins (ONNX ReduceMax)
        }
        yp[row] = acc;
      }
    });
  } else {
    std::vector<index_t> idx(r, 0);
    for (index_t i = 0; i < n; ++i) {
      index_t o = 0;
      for (std::int64_t d = 0; d < r; ++d) o += (red[d] ? 0 : idx[d]) * ost[d];
      yp[o] = KIND == 2 ? (xp[i] > yp[o] || xp[i] != xp[i] ? xp[i] : yp[o]) : yp[o] + xp[i];  // NaN wins
      for (std::int64_t d = r - 1; d >= 0; --d) { if (++idx[d] < x.shape[d]) break; idx[d] = 0; }
    }
  }
  if (KIND == 0 && count > 0)
    for (index_t i = 0; i < on; ++i) yp[i] /= static_cast<float>(count);
  return Status::ok();
}

// QuantizeLinear / DequantizeLinear (per tensor or per axis), via the kernels.
bool quant_axis(const Step& s, const Tensor& x, const Tensor& scale, kernels::QuantAxis* ax) {
  const std::int64_t r = static_cast<std::int64_t>(x.shape.size());
  ax->n_param = scale.numel();
  if (ax->n_param == 1) { ax->outer = 1; ax->C = 1; ax->inner = x.numel(); return true; }
  std::int64_t axis = s.i("axis", 1);
  if (!norm_axis(axis, r) || x.shape[axis] != ax->n_param) return false;
  ax->outer = 1;
  ax->inner = 1;
  for (std::int64_t d = 0; d < axis; ++d) ax->outer *= x.shape[d];
  for (std::int64_t d = axis + 1; d < r; ++d) ax->inner *= x.shape[d];
  ax->C = x.shape[axis];
  return true;
}

Status quantize_linear(ExecCtx& c, const Step& s) {
  const Tensor& x = c.in(s, 0);
  const Tensor& sc = c.in(s, 1);
  if (x.dt != DType::f32 || sc.dt != DType::f32) return bad(s, "needs float32 input and scale");
  const bool has_zp = c.has(s, 2);
  const DType odt = has_zp ? c.in(s, 2).dt : DType::u8;
  if (odt != DType::u8 && odt != DType::s8) return bad(s, "only uint8/int8 outputs are native");
  kernels::QuantAxis ax;
  if (!quant_axis(s, x, sc, &ax)) return bad(s, "scale does not match the quantization axis");
  std::vector<std::int32_t> zp(static_cast<std::size_t>(ax.n_param), 0);
  if (has_zp) {
    const Tensor& z = c.in(s, 2);
    for (index_t i = 0; i < ax.n_param; ++i)
      zp[i] = odt == DType::u8 ? z.as<std::uint8_t>()[z.numel() == 1 ? 0 : i] : z.as<std::int8_t>()[z.numel() == 1 ? 0 : i];
  }
  ax.scale = sc.as<float>();
  ax.zero_point = zp.data();
  Tensor& y = c.out(s, 0, x.shape, odt);
  if (x.numel() == 0) return Status::ok();
  return wrap(s, kernels::quantize(x.as<float>(), ax, odt == DType::u8, y.data));
}

Status dequantize_linear(ExecCtx& c, const Step& s) {
  const Tensor& x = c.in(s, 0);
  const Tensor& sc = c.in(s, 1);
  if ((x.dt != DType::u8 && x.dt != DType::s8) || sc.dt != DType::f32) return bad(s, "needs uint8/int8 input and float32 scale");
  kernels::QuantAxis ax;
  if (!quant_axis(s, x, sc, &ax)) return bad(s, "scale does not match the quantization axis");
  std::vector<std::int32_t> zp(static_cast<std::size_t>(ax.n_param), 0);
  if (c.has(s, 2)) {
    const Tensor& z = c.in(s, 2);
    for (index_t i = 0; i < ax.n_param; ++i)
      zp[i] = x.dt == DType::u8 ? z.as<std::uint8_t>()[z.numel() == 1 ? 0 : i] : z.as<std::int8_t>()[z.numel() == 1 ? 0 : i];
  }
  ax.scale = sc.as<float>();
  ax.zero_point = zp.data();
  Tensor& y = c.out(s, 0, x.shape, DType::f32);
  if (x.numel() == 0) return Status::ok();
  return wrap(s, kernels::dequantize(x.data, x.dt == DType::u8, ax, y.as<float>()));
}

// [B, S, 3*H] packed QKV -> Q, K, V as [B, heads, S, H/heads] each.
Status qkv_split(ExecCtx& c, const Step& s) {
  const Tensor& x = c.in(s, 0);
  const index_t heads = s.i("heads", 1);
  if (x.dt != DType::f32 || x.shape.size() != 3 || x.shape[2] % (3 * heads))
    return bad(s, "input must be float32 [B, S, 3*H] with H divisible by heads, got " + shape_str(x.shape));
  const index_t B = x.shape[0], S = x.shape[1], H = x.shape[2] / 3, D = H / heads;
  float* out[3];
  for (int k = 0; k < 3; ++k) out[k] = c.out(s, k, {B, heads, S, D}, DType::f32).as<float>();
  const float* xp = x.as<float>();
  parallel_ranges(B * S, (x.numel() >= kParMin) ? pool_threads() : 1, 1, 1, [&](index_t bs0, index_t bs1) {
    for (index_t bs = bs0; bs < bs1; ++bs) {
      const index_t b = bs / S, t = bs % S;
      for (int k = 0; k < 3; ++k)
        for (index_t h = 0; h < heads; ++h)
          std::memcpy(out[k] + ((b * heads + h) * S + t) * D, xp + bs * 3 * H + k * H + h * D, static_cast<std::size_t>(D) * 4);
    }
  });
  return Status::ok();
}

// [B, heads, S, D] -> [B, S, heads*D].
Status merge_heads(ExecCtx& c, const Step& s) {
  const Tensor& x = c.in(s, 0);
  if (x.dt != DType::f32 || x.shape.size() != 4) return bad(s, "input must be float32 [B, heads, S, D]");
  const index_t B = x.shape[0], N = x.shape[1], S = x.shape[2], D = x.shape[3];
  float* y = c.out(s, 0, {B, S, N * D}, DType::f32).as<float>();
  const float* xp = x.as<float>();
  parallel_ranges(B * S, (x.numel() >= kParMin) ? pool_threads() : 1, 1, 1, [&](index_t bs0, index_t bs1) {
    for (index_t bs = bs0; bs < bs1; ++bs) {
      const index_t b = bs / S, t = bs % S;
      for (index_t h = 0; h < N; ++h)
        std::memcpy(y + bs * N * D + h * D, xp + ((b * N + h) * S + t) * D, static_cast<std::size_t>(D) * 4);
    }
  });
  return Status::ok();
}

// Key padding mask [B, S] (nonzero = attend) -> additive float mask [B, 1, 1, S].
Status padding_mask(ExecCtx& c, const Step& s) {
  const Tensor& m = c.in(s, 0);
  if (m.shape.size() != 2) return bad(s, "key padding mask must be [B, S], got " + shape_str(m.shape));
  const float val = static_cast<float>(s.f("value", -10000.0));
  float* y = c.out(s, 0, {m.shape[0], 1, 1, m.shape[1]}, DType::f32).as<float>();
  for (index_t i = 0, n = m.numel(); i < n; ++i) {
    bool on;
    switch (m.dt) {
      case DType::s64: on = m.as<std::int64_t>()[i] != 0; break;
      case DType::s32: on = m.as<std::int32_t>()[i] != 0; break;
      case DType::boolean: case DType::u8: on = m.as<std::uint8_t>()[i] != 0; break;
      default: return bad(s, "mask must be int64/int32/bool");
    }
    y[i] = on ? 0.f : val;
  }
  return Status::ok();
}

// ids [B, S] -> position ids [1, S] = arange(S).
Status position_ids(ExecCtx& c, const Step& s) {
  const Tensor& ids = c.in(s, 0);
  if (ids.shape.size() != 2) return bad(s, "ids must be [B, S]");
  auto* y = c.out(s, 0, {1, ids.shape[1]}, DType::s64).as<std::int64_t>();
  for (index_t i = 0; i < ids.shape[1]; ++i) y[i] = i;
  return Status::ok();
}

}  // namespace

void register_nn_ops(std::map<std::string, OpFn>& r) {
  r["Linear"] = &linear;
  r["MatMul"] = &matmul;
  r["LayerNorm"] = &layernorm;
  r["Softmax"] = &softmax;
  r["Attention"] = &attention;
  r["ReduceMean"] = &reduce<0>;
  r["ReduceSum"] = &reduce<1>;
  r["ReduceMax"] = &reduce<2>;
  r["QuantizeLinear"] = &quantize_linear;
  r["DequantizeLinear"] = &dequantize_linear;
  r["QKVSplit"] = &qkv_split;
  r["MergeHeads"] = &merge_heads;
  r["PaddingMask"] = &padding_mask;
  r["PositionIds"] = &position_ids;
}

}  // namespace graphopt::runtime
