// CNN ops on NCHW fp32: Conv (im2col + packed fp32 / bf16 / int8 GEMM with fused bias/ReLU),
// MaxPool, AveragePool, Global{Average,Max}Pool, BatchNormalization.
#include <algorithm>
#include <cmath>
#include <cstring>

#include <mutex>

#include "../plan.h"
#include "../pool.h"
#include "window.h"
#include "graphopt/kernels/eltwise.h"
#include "graphopt/kernels/gemm.h"

namespace graphopt::runtime {
namespace {

// Conv: in = (x [N,C,H,W], bias?), packed[g] = W_g^T as [K=Cg*kh*kw, N=Mg].
// Rows p0..p1 of the im2col matrix of one image/group: row p holds the Cg*kh*kw inputs
// under output pixel p; taps in the padding read `pad` (the encoding of 0.0).
template <class T>
void im2col(const T* xi, const Geo& g, index_t Cg, index_t H, index_t W, index_t p0, index_t p1, T pad, T* col) {
  const index_t K = Cg * g.kh * g.kw;
  for (index_t p = p0; p < p1; ++p) {
    const index_t oh = p / g.OW, ow = p % g.OW;
    T* row = col + p * K;
    for (index_t ci = 0; ci < Cg; ++ci)
      for (index_t a = 0; a < g.kh; ++a) {
        const index_t ih = oh * g.sh - g.pt + a * g.dh;
        const bool in_h = ih >= 0 && ih < H;
        for (index_t b = 0; b < g.kw; ++b) {
          const index_t iw = ow * g.sw - g.pl + b * g.dw;
          *row++ = (in_h && iw >= 0 && iw < W) ? xi[(ci * H + ih) * W + iw] : pad;
        }
      }
  }
}

// Conv as im2col + packed GEMM per image and group. mode 0 fp32; 1 bf16 (x converted once);
// 2 int8: x quantized to u8 per tensor with static a_scale/a_zp, or dynamically per image (one
// image's outlier must not change another's grid; an image holding NaN/Inf comes out NaN),
// padded with the zero point, s8 weights per output channel.
Status conv(ExecCtx& c, const Step& s) {
  const Tensor& x = c.in(s, 0);
  if (x.dt != DType::f32 || x.shape.size() != 4) return bad(s, "needs float32 NCHW input, got " + shape_str(x.shape));
  const index_t G = s.i("group", 1), N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3];
  const index_t kh = s.i("kh", 1), kw = s.i("kw", 1), M = s.i("M", 1);
  if (C % G || static_cast<index_t>(s.packed.size()) != G) return bad(s, "channels do not match the groups");
  const index_t Cg = C / G, Mg = M / G, K = Cg * kh * kw;
  if (s.packed[0]->K() != K) return bad(s, "input has " + std::to_string(C) + " channels, weights expect " + std::to_string(s.packed[0]->K() / (kh * kw) * G));
  Geo g;
  std::string err;
  if (!geometry(s, H, W, kh, kw, &g, &err)) return bad(s, err);
  const index_t P = g.OH * g.OW;
  Tensor& y = c.out(s, 0, {N, M, g.OH, g.OW}, DType::f32);
  if (y.numel() == 0) return Status::ok();
  const float* bias = c.has(s, 1) ? c.in(s, 1).as<float>() : nullptr;
  const int mode = static_cast<int>(s.i("mode", 0));
  const std::size_t esz = mode == 2 ? 1 : mode == 1 ? 2 : 4;
  const index_t nx = x.numel();
  // scratch: [converted x (bf16 / u8)] [im2col P x K] [GEMM out P x Mg fp32], 64-byte aligned pieces
  auto up = [](std::size_t b) { return (b + 63) / 64 * 64; };
  const std::size_t xbytes = mode == 0 ? 0 : up(static_cast<std::size_t>(nx) * esz);
  const std::size_t cbytes = up(static_cast<std::size_t>(P * K) * esz);
  const std::size_t need = xbytes + cbytes + static_cast<std::size_t>(P * Mg) * 4 + 64;
  if (s.scratch.size() < need) s.scratch.resize(need);
  auto* base = reinterpret_cast<std::uint8_t*>((reinterpret_cast<std::uintptr_t>(s.scratch.data()) + 63) / 64 * 64);
  void* xc = base;
  void* col = base + xbytes;
  float* tmp = reinterpret_cast<float*>(base + xbytes + cbytes);
  kernels::Epilogue e;
  e.act = static_cast<kernels::Act>(s.i("act", 0));
  std::vector<float> img_scale;  // dynamic int8: per image
  std::vector<std::int32_t> img_zp;
  std::vector<char> img_nonfinite;
  if (mode == 1) {
    if (Status st = kernels::f32_to_bf16(x.as<float>(), nx, static_cast<bf16_t*>(xc)); !st) return bad(s, st.message());
  } else if (mode == 2) {
    e.a_scale = static_cast<float>(s.f("a_scale", 0.0));
    e.a_zp = static_cast<std::int32_t>(s.i("a_zp", 0));
    if (!(e.a_scale > 0.f)) {
      const index_t per = C * H * W;
      img_scale.resize(static_cast<std::size_t>(N));
      img_zp.resize(static_cast<std::size_t>(N));
      img_nonfinite.resize(static_cast<std::size_t>(N));
      // Each image a row on its own grid, in one read; a NaN scale marks an image with a NaN or an Inf.
      if (Status st = kernels::quantize_rows_dynamic_u8(x.as<float>(), N, per, static_cast<std::uint8_t*>(xc),
                                                        img_scale.data(), img_zp.data()); !st)
        return bad(s, st.message());
      for (index_t n = 0; n < N; ++n) img_nonfinite[n] = static_cast<char>(!(img_scale[n] > 0.f));
    } else {
      kernels::QuantAxis ax;
      ax.inner = nx;
      ax.scale = &e.a_scale;
      ax.zero_point = &e.a_zp;
      if (Status st = kernels::quantize(x.as<float>(), ax, true, xc); !st) return bad(s, st.message());
    }
  }
  for (index_t n = 0; n < N; ++n) {
    if (!img_scale.empty()) {
      e.a_scale = img_scale[n];
      e.a_zp = img_zp[n];
      if (img_nonfinite[n]) {
        std::fill_n(y.as<float>() + n * M * P, M * P, std::numeric_limits<float>::quiet_NaN());
        continue;
      }
    }
    for (index_t gi = 0; gi < G; ++gi) {
      const index_t xoff = (n * C + gi * Cg) * H * W;
      std::mutex mu;
      Status err;
      // im2col, GEMM (rows = output pixels) and the NCHW transpose, in row ranges on the pool.
      parallel_ranges(P, pool_threads() * 2, 64, 1, [&](index_t p0, index_t p1) {
        kernels::Epilogue ep = e;
        ep.bias = bias ? bias + gi * Mg : nullptr;
        const kernels::PackedWeights& Wp = *s.packed[gi];
        Status st;
        if (mode == 0) {
          float* cl = static_cast<float*>(col);
          im2col(x.as<float>() + xoff, g, Cg, H, W, p0, p1, 0.f, cl);
          st = kernels::gemm_f32(cl + p0 * K, p1 - p0, K, Wp, ep, tmp + p0 * Mg, Mg);
        } else if (mode == 1) {
          bf16_t* cl = static_cast<bf16_t*>(col);
          im2col(static_cast<const bf16_t*>(xc) + xoff, g, Cg, H, W, p0, p1, bf16_t(0), cl);
          st = kernels::gemm_bf16(cl + p0 * K, p1 - p0, K, Wp, ep, tmp + p0 * Mg, Mg);
        } else {
          std::uint8_t* cl = static_cast<std::uint8_t*>(col);
          im2col(static_cast<const std::uint8_t*>(xc) + xoff, g, Cg, H, W, p0, p1, static_cast<std::uint8_t>(e.a_zp), cl);
          st = kernels::gemm_s8(cl + p0 * K, p1 - p0, K, Wp, ep, tmp + p0 * Mg, Mg);
        }
        if (!st) { std::lock_guard<std::mutex> lk(mu); err = st; }
      });
      if (!err) return bad(s, err.message());
      float* yo = y.as<float>() + (n * M + gi * Mg) * P;
      parallel_ranges(Mg, pool_threads(), 8, 1, [&](index_t m0, index_t m1) {
        for (index_t m = m0; m < m1; ++m)
          for (index_t p = 0; p < P; ++p) yo[m * P + p] = tmp[p * Mg + m];
      });
    }
  }
  return Status::ok();
}

template <bool MAX>
Status pool(ExecCtx& c, const Step& s) {
  const Tensor& x = c.in(s, 0);
  if (x.dt != DType::f32 || x.shape.size() != 4) return bad(s, "needs float32 NCHW input, got " + shape_str(x.shape));
  const index_t NC = x.shape[0] * x.shape[1], H = x.shape[2], W = x.shape[3];
  const auto* ks = s.iv("kernel_shape");
  if (!ks || ks->size() != 2) return bad(s, "kernel_shape must have 2 entries");
  Geo g;
  std::string err;
  if (!geometry(s, H, W, (*ks)[0], (*ks)[1], &g, &err)) return bad(s, err);
  const bool incl = s.i("count_include_pad", 0) != 0;
  Tensor& y = c.out(s, 0, {x.shape[0], x.shape[1], g.OH, g.OW}, DType::f32);
  const float* xp = x.as<float>();
  float* yp = y.as<float>();
  parallel_ranges(NC, (y.numel() >= kParMin / 4) ? pool_threads() : 1, 1, 1, [&](index_t nc0, index_t nc1) {
    for (index_t nc = nc0; nc < nc1; ++nc)
      for (index_t oh = 0; oh < g.OH; ++oh)
        for (index_t ow = 0; ow < g.OW; ++ow) {
          float acc = MAX ? -INFINITY : 0.f;
          index_t cnt = 0;
          for (index_t a = 0; a < g.kh; ++a) {
            const index_t ih = oh * g.sh - g.pt + a * g.dh;
            for (index_t b = 0; b < g.kw; ++b) {
              const index_t iw = ow * g.sw - g.pl + b * g.dw;
              const bool inside = ih >= 0 && ih < H && iw >= 0 && iw < W;
              if (inside) {
                const float v = xp[(nc * H + ih) * W + iw];
                acc = MAX ? (v > acc || v != v ? v : acc) : acc + v;  // a NaN in the window wins
                ++cnt;
              } else if (!MAX && incl && ih < H + g.pb && iw < W + g.pr) {
                ++cnt;  // padded positions count, beyond-pad (ceil_mode) ones do not
              }
            }
          }
          yp[(nc * g.OH + oh) * g.OW + ow] = MAX ? acc : (cnt ? acc / static_cast<float>(cnt) : 0.f);
        }
  });
  return Status::ok();
}

template <bool MAX>
Status global_pool(ExecCtx& c, const Step& s) {
  const Tensor& x = c.in(s, 0);
  if (x.dt != DType::f32 || x.shape.size() < 3) return bad(s, "needs float32 [N,C,...] input");
  const index_t NC = x.shape[0] * x.shape[1], S = x.numel() / std::max<index_t>(NC, 1);
  Shape os = x.shape;
  for (std::size_t d = 2; d < os.size(); ++d) os[d] = 1;
  float* yp = c.out(s, 0, os, DType::f32).as<float>();
  const float* xp = x.as<float>();
  parallel_ranges(NC, (x.numel() >= kParMin) ? pool_threads() : 1, 1, 1, [&](index_t i0, index_t i1) {
    for (index_t i = i0; i < i1; ++i) {
      float acc = MAX ? -INFINITY : 0.f;
      for (index_t j = 0; j < S; ++j) {
        const float v = xp[i * S + j];
        acc = MAX ? (v > acc || v != v ? v : acc) : acc + v;  // a NaN wins, as in MaxPool
      }
      yp[i] = MAX ? acc : acc / static_cast<float>(S);
    }
  });
  return Status::ok();
}

Status batchnorm(ExecCtx& c, const Step& s) {
  const Tensor& x = c.in(s, 0);
  if (x.dt != DType::f32 || x.shape.size() < 2) return bad(s, "needs float32 [N,C,...] input");
  const index_t N = x.shape[0], C = x.shape[1], S = x.numel() / std::max<index_t>(N * C, 1);
  const float *sc = c.in(s, 1).as<float>(), *b = c.in(s, 2).as<float>(), *mu = c.in(s, 3).as<float>(), *var = c.in(s, 4).as<float>();
  for (int i = 1; i <= 4; ++i)
    if (c.in(s, i).numel() != C) return bad(s, "parameters must have C=" + std::to_string(C) + " entries");
  const float eps = static_cast<float>(s.f("epsilon", 1e-5));
  float* yp = c.out(s, 0, x.shape, DType::f32).as<float>();
  const float* xp = x.as<float>();
  parallel_ranges(N * C, (x.numel() >= kParMin) ? pool_threads() : 1, 1, 1, [&](index_t nc0, index_t nc1) {
    for (index_t nc = nc0; nc < nc1; ++nc) {
      const index_t ch = nc % C;
      const float a = sc[ch] / std::sqrt(var[ch] + eps), t = b[ch] - mu[ch] * a;
      for (index_t j = 0; j < S; ++j) yp[nc * S + j] = xp[nc * S + j] * a + t;
    }
  });
  return Status::ok();
}

}  // namespace

void register_cnn_ops(std::map<std::string, OpFn>& r) {
  r["Conv"] = &conv;
  r["MaxPool"] = &pool<true>;
  r["AveragePool"] = &pool<false>;
  r["GlobalAveragePool"] = &global_pool<false>;
  r["GlobalMaxPool"] = &global_pool<true>;
  r["BatchNormalization"] = &batchnorm;
}

}  // namespace graphopt::runtime
