// Depthwise Conv (group == input channels, any channel multiplier) on NCHW fp32 as a direct
// loop: im2col + a GEMM per group turned MobileNet's 3x3 depthwise layers into thousands of
// 1-row GEMMs (~10x slower than onnxruntime). Here each output row is bias + sum over taps of
// w * shifted row of a zero-padded copy of the channel; the inner loop runs over output columns
// and vectorises at stride 1.
// Epilogue: act 0 none, 1 Relu, 2 Clip(min, max) (ReLU6).
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "../plan.h"
#include "../pool.h"
#include "window.h"

namespace graphopt::runtime {
namespace {

// in = (x [N,C,H,W], w [C*mult, 1, kh, kw], bias [C*mult]?)
Status depthwise(ExecCtx& c, const Step& s) {
  const Tensor& x = c.in(s, 0);
  const Tensor& w = c.in(s, 1);
  if (x.dt != DType::f32 || x.shape.size() != 4) return bad(s, "needs float32 NCHW input, got " + shape_str(x.shape));
  if (w.dt != DType::f32 || w.shape.size() != 4 || w.shape[1] != 1) return bad(s, "weights must be float32 [M, 1, kh, kw]");
  const index_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3];
  const index_t M = w.shape[0], kh = w.shape[2], kw = w.shape[3];
  if (C == 0 || M % C || s.i("group", C) != C)
    return bad(s, "input has " + std::to_string(C) + " channels, the depthwise weights expect " + std::to_string(s.i("group", 0)));
  const index_t mult = M / C;
  const float* bias = c.has(s, 2) ? c.in(s, 2).as<float>() : nullptr;
  if (bias && c.in(s, 2).numel() != M) return bad(s, "bias must have " + std::to_string(M) + " entries");
  Geo g;
  std::string err;
  if (!geometry(s, H, W, kh, kw, &g, &err)) return bad(s, err);
  Tensor& y = c.out(s, 0, {N, M, g.OH, g.OW}, DType::f32);
  if (y.numel() == 0) return Status::ok();
  const int act = static_cast<int>(s.i("act", 0));
  const float lo = static_cast<float>(s.f("min", -INFINITY)), hi = static_cast<float>(s.f("max", INFINITY));
  const float* xp = x.as<float>();
  const float* wp = w.as<float>();
  float* yp = y.as<float>();
  const index_t OH = g.OH, OW = g.OW, P = OH * OW;
  // Each channel is first copied into a zero-padded plane covering every tap of the output, so
  // the tap loops need no bounds checks; 3-wide kernels at stride 1 add three taps per pass.
  const index_t Hp = (OH - 1) * g.sh + (kh - 1) * g.dh + 1, Wp = (OW - 1) * g.sw + (kw - 1) * g.dw + 1;
  parallel_ranges(N * M, y.numel() >= kParMin / 4 ? pool_threads() : 1, 1, 1, [&](index_t i0, index_t i1) {
    std::vector<float> plane(static_cast<std::size_t>(Hp * Wp));
    index_t planed = -1;  // input channel currently in `plane` (a multiplier > 1 reuses it)
    for (index_t i = i0; i < i1; ++i) {
      const index_t n = i / M, m = i % M, src = n * C + m / mult;
      if (src != planed) {
        const float* xc = xp + src * H * W;
        std::fill(plane.begin(), plane.end(), 0.f);
        const index_t c0 = std::max<index_t>(0, g.pl), w0 = std::max<index_t>(0, -g.pl);
        const index_t ncol = std::min<index_t>(W - w0, Wp - c0);
        for (index_t r = 0; r < Hp; ++r) {
          const index_t ih = r - g.pt;
          if (ih < 0 || ih >= H || ncol <= 0) continue;
          std::copy_n(xc + ih * W + w0, ncol, plane.data() + r * Wp + c0);
        }
        planed = src;
      }
      const float* wm = wp + m * kh * kw;
      float* yc = yp + i * P;
      const float b0 = bias ? bias[m] : 0.f;
      for (index_t oh = 0; oh < OH; ++oh) {
        float* yr = yc + oh * OW;
        for (index_t ow = 0; ow < OW; ++ow) yr[ow] = b0;
        for (index_t a = 0; a < kh; ++a) {
          const float* xr = plane.data() + (oh * g.sh + a * g.dh) * Wp;
          const float* wa = wm + a * kw;
          if (kw == 3 && g.sw == 1) {
            const float *x0 = xr, *x1 = xr + g.dw, *x2 = xr + 2 * g.dw;
            const float v0 = wa[0], v1 = wa[1], v2 = wa[2];
            for (index_t ow = 0; ow < OW; ++ow) yr[ow] += v0 * x0[ow] + v1 * x1[ow] + v2 * x2[ow];
            continue;
          }
          for (index_t b = 0; b < kw; ++b) {
            const float wv = wa[b];
            const float* xs = xr + b * g.dw;
            if (g.sw == 1) {
              for (index_t ow = 0; ow < OW; ++ow) yr[ow] += wv * xs[ow];
            } else {
              for (index_t ow = 0; ow < OW; ++ow) yr[ow] += wv * xs[ow * g.sw];
            }
          }
        }
        switch (act) {
          case 1: for (index_t ow = 0; ow < OW; ++ow) yr[ow] = yr[ow] < 0.f ? 0.f : yr[ow]; break;
          case 2:  // NaN fails both compares and stays NaN
            for (index_t ow = 0; ow < OW; ++ow) {
              const float v = yr[ow] < lo ? lo : yr[ow];
              yr[ow] = v > hi ? hi : v;
            }
            break;
          default: break;
        }
      }
    }
  });
  return Status::ok();
}

}  // namespace

void register_depthwise_ops(std::map<std::string, OpFn>& r) { r["DepthwiseConv"] = &depthwise; }

}  // namespace graphopt::runtime
