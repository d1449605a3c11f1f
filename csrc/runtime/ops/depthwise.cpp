// Depthwise Conv (group == input channels, any channel multiplier) on NCHW fp32 as a direct
// loop: im2col + a GEMM per group turned MobileNet's 3x3 depthwise layers into thousands of
// 1-row GEMMs (~10x slower than onnxruntime). Here each output row is bias + sum over taps of
// w * shifted input row; the inner loop runs over output columns and vectorises at stride 1.
// Epilogue: act 0 none, 1 Relu, 2 Clip(min, max) (ReLU6), 3 HardSwish.
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
  parallel_ranges(N * M, y.numel() >= kParMin / 4 ? pool_threads() : 1, 1, 1, [&](index_t i0, index_t i1) {
    for (index_t i = i0; i < i1; ++i) {
      const index_t n = i / M, m = i % M;
      const float* xc = xp + (n * C + m / mult) * H * W;
      const float* wm = wp + m * kh * kw;
      float* yc = yp + i * P;
      const float b0 = bias ? bias[m] : 0.f;
      for (index_t oh = 0; oh < OH; ++oh) {
        float* yr = yc + oh * OW;
        for (index_t ow = 0; ow < OW; ++ow) yr[ow] = b0;
        for (index_t a = 0; a < kh; ++a) {
          const index_t ih = oh * g.sh - g.pt + a * g.dh;
          if (ih < 0 || ih >= H) continue;
          const float* xr = xc + ih * W;
          for (index_t b = 0; b < kw; ++b) {
            const float wv = wm[a * kw + b];
            const index_t off = b * g.dw - g.pl;  // iw = ow * sw + off
            // output columns whose tap lands inside the row: 0 <= ow*sw + off < W
            const index_t lo_ow = off >= 0 ? 0 : (-off + g.sw - 1) / g.sw;
            const index_t hi_ow = std::min<index_t>(OW, W - off <= 0 ? 0 : (W - off - 1) / g.sw + 1);
            if (g.sw == 1) {
              for (index_t ow = lo_ow; ow < hi_ow; ++ow) yr[ow] += wv * xr[ow + off];
            } else {
              for (index_t ow = lo_ow; ow < hi_ow; ++ow) yr[ow] += wv * xr[ow * g.sw + off];
            }
          }
        }
        switch (act) {
          case 1: for (index_t ow = 0; ow < OW; ++ow) yr[ow] = yr[ow] < 0.f ? 0.f : yr[ow]; break;
          case 2: for (index_t ow = 0; ow < OW; ++ow) yr[ow] = yr[ow] != yr[ow] ? yr[ow] : std::fmin(std::fmax(yr[ow], lo), hi); break;
          case 3:
            for (index_t ow = 0; ow < OW; ++ow) yr[ow] = yr[ow] * std::fmax(0.f, std::fmin(1.f, yr[ow] / 6.f + 0.5f));
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
