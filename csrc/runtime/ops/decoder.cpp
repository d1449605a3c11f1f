// Decoder (LLaMA-style) ops: RMSNorm (+ residual, with the sum as a second
// output), SiLU, the SiLU-gated product of a packed gate|up GEMM output, and
// rotate-half rotary embedding. Kernels: graphopt/kernels/decoder.h.
#include <algorithm>
#include <mutex>
#include <string>

#include "../plan.h"
#include "../pool.h"
#include "graphopt/kernels/decoder.h"

namespace graphopt::runtime {
namespace {

Status wrap(const Step& s, const Status& st) { return st ? Status::ok() : bad(s, st.message()); }

// Rows of N elements split over the pool (at least ~16K elements per chunk).
template <class F>
Status over_rows(const Step& s, index_t rows, index_t N, const F& f) {
  std::mutex mu;
  Status err;
  const index_t min_rows = std::max<index_t>(1, (index_t{1} << 14) / std::max<index_t>(N, 1));
  parallel_ranges(rows, pool_threads(), min_rows, 1, [&](index_t b, index_t e) {
    Status st = f(b, e);
    if (!st) { std::lock_guard<std::mutex> lk(mu); err = st; }
  });
  return wrap(s, err);
}

// RMSNorm: in = (x, gamma, residual?), out = (y, sum?); y = s / sqrt(mean(s^2) + eps) * gamma, s = x + residual.
Status rmsnorm(ExecCtx& c, const Step& s) {
  const Tensor& x = c.in(s, 0);
  const Tensor& g = c.in(s, 1);
  if (x.dt != DType::f32 || g.dt != DType::f32) return bad(s, "RMSNorm needs float32 input and gamma");
  if (x.shape.empty()) return bad(s, "RMSNorm of a scalar");
  const index_t N = x.shape.back();
  if (g.numel() != N) return bad(s, "gamma has " + std::to_string(g.numel()) + " elements, the last dimension is " + std::to_string(N));
  const float* res = nullptr;
  if (c.has(s, 2)) {
    const Tensor& r = c.in(s, 2);
    if (r.dt != DType::f32) return bad(s, "residual must be float32");
    if (r.shape != x.shape) return bad(s, "residual " + shape_str(r.shape) + " differs from the input " + shape_str(x.shape));
    res = r.as<float>();
  }
  Tensor& y = c.out(s, 0, x.shape, DType::f32);
  float* sum = s.out.size() > 1 && s.out[1] >= 0 ? c.out(s, 1, x.shape, DType::f32).as<float>() : nullptr;
  const float eps = static_cast<float>(s.f("epsilon", 1e-6));
  const index_t rows = x.numel() / N;
  const float* xp = x.as<float>();
  return over_rows(s, rows, N, [&](index_t b, index_t e) {
    const index_t o = b * N;
    return kernels::rmsnorm(xp + o, res ? res + o : nullptr, g.as<float>(), eps, e - b, N, y.as<float>() + o,
                            sum ? sum + o : nullptr);
  });
}

Status silu(ExecCtx& c, const Step& s) {
  const Tensor& x = c.in(s, 0);
  if (x.dt != DType::f32) return bad(s, "SiLU needs float32");
  Tensor& y = c.out(s, 0, x.shape, DType::f32);
  const index_t n = x.numel();
  return over_rows(s, n, 1, [&](index_t b, index_t e) { return kernels::silu(x.as<float>() + b, e - b, y.as<float>() + b); });
}

// SiluMul: x [..., 2I] = (gate | up) -> y [..., I] = silu(gate) * up.
Status silu_mul(ExecCtx& c, const Step& s) {
  const Tensor& x = c.in(s, 0);
  if (x.dt != DType::f32) return bad(s, "SiluMul needs float32");
  if (x.shape.empty() || x.shape.back() % 2) return bad(s, "SiluMul input " + shape_str(x.shape) + " must end in an even dimension");
  const index_t I = x.shape.back() / 2;
  Shape os = x.shape;
  os.back() = I;
  Tensor& y = c.out(s, 0, os, DType::f32);
  const index_t rows = I ? x.numel() / (2 * I) : 0;
  return over_rows(s, rows, 2 * I, [&](index_t b, index_t e) {
    return kernels::silu_mul(x.as<float>() + b * 2 * I, e - b, I, y.as<float>() + b * I);
  });
}

// Rotary: in = (x [..., D], cos, sin) with cos/sin broadcasting to x and ending in D; y = x*cos + rotate_half(x)*sin.
Status rotary(ExecCtx& c, const Step& s) {
  const Tensor& x = c.in(s, 0);
  const Tensor& cs = c.in(s, 1);
  const Tensor& sn = c.in(s, 2);
  if (x.dt != DType::f32 || cs.dt != DType::f32 || sn.dt != DType::f32) return bad(s, "RotaryEmbedding needs float32");
  if (cs.shape != sn.shape) return bad(s, "cos " + shape_str(cs.shape) + " and sin " + shape_str(sn.shape) + " differ");
  const std::size_t R = x.shape.size();
  if (R < 1 || cs.shape.size() > R || cs.shape.empty() || cs.shape.back() != x.shape.back())
    return bad(s, "cos/sin " + shape_str(cs.shape) + " do not match the input " + shape_str(x.shape));
  const index_t D = x.shape.back();
  if (D % 2) return bad(s, "rotary dimension " + std::to_string(D) + " is odd");
  // cos viewed with x's rank (leading 1s); each dim must equal x's or be 1.
  Shape cshape(R - cs.shape.size(), 1);
  cshape.insert(cshape.end(), cs.shape.begin(), cs.shape.end());
  for (std::size_t d = 0; d + 1 < R; ++d)
    if (cshape[d] != x.shape[d] && cshape[d] != 1)
      return bad(s, "cos/sin " + shape_str(cs.shape) + " do not broadcast to the input " + shape_str(x.shape));
  Tensor& y = c.out(s, 0, x.shape, DType::f32);
  const index_t rows = D ? x.numel() / D : 0;
  if (rows == 0) return Status::ok();
  // Runs: the trailing row dims where cos is not broadcast are contiguous in both.
  index_t run = 1;
  std::size_t d = R - 1;
  while (d-- > 0 && cshape[d] == x.shape[d]) run *= x.shape[d];
  const index_t blocks = rows / run;
  // cos row of the first row of block k: walk the leading dims (those above the run).
  std::vector<index_t> cstride(R, 0);
  {
    index_t acc = 1;
    for (std::size_t k = R - 1; k-- > 0;) { cstride[k] = cshape[k] == 1 ? 0 : acc; acc *= cshape[k]; }
  }
  const std::size_t lead = d + 1;  // dims [0, lead) index blocks
  std::mutex mu;
  Status err;
  parallel_ranges(blocks, pool_threads(), std::max<index_t>(1, (index_t{1} << 13) / std::max<index_t>(run * D, 1)), 1,
                  [&](index_t b0, index_t b1) {
    for (index_t k = b0; k < b1; ++k) {
      index_t rem = k, crow = 0;
      for (std::size_t q = lead; q-- > 0;) { crow += (rem % x.shape[q]) * cstride[q]; rem /= x.shape[q]; }
      Status st = kernels::rotary(x.as<float>() + k * run * D, cs.as<float>() + crow * D, sn.as<float>() + crow * D, run, D,
                                  y.as<float>() + k * run * D);
      if (!st) { std::lock_guard<std::mutex> lk(mu); err = st; }
    }
  });
  return wrap(s, err);
}

}  // namespace

void register_decoder_ops(std::map<std::string, OpFn>& r) {
  r["RMSNorm"] = &rmsnorm;
  r["Silu"] = &silu;
  r["SiluMul"] = &silu_mul;
  r["Rotary"] = &rotary;
}

}  // namespace graphopt::runtime
