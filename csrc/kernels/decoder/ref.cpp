// Decoder kernels, scalar reference (no -m flags; see decoder.h for the semantics).
#include <cmath>

#include "../common/math.h"
#include "decoder_internal.h"

namespace graphopt::kernels::ref {

void rmsnorm(const RMSNormJob& j) {
  const index_t N = j.N;
  for (index_t r = 0; r < j.rows; ++r) {
    const float* x = j.x + r * N;
    const float* res = j.res ? j.res + r * N : nullptr;
    float* y = j.y + r * N;
    float* so = j.sum_out ? j.sum_out + r * N : nullptr;
    // 16 partial sums (the order the AVX-512 kernel uses, so both round alike).
    float acc[16] = {0};
    for (index_t i = 0; i < N; ++i) {
      const float s = res ? x[i] + res[i] : x[i];
      acc[i % 16] += s * s;
    }
    float ss = 0.f;
    for (float a : acc) ss += a;
    const float inv = 1.f / std::sqrt(ss / static_cast<float>(N) + j.eps);
    for (index_t i = 0; i < N; ++i) {
      const float s = res ? x[i] + res[i] : x[i];
      if (so) so[i] = s;
      y[i] = s * inv * j.gamma[i];
    }
  }
}

namespace {
inline float silu_f(float v) { return v / (1.f + exp_f(-v)); }
}  // namespace

void silu(const SiluJob& j) {
  for (index_t i = 0; i < j.I; ++i) j.y[i] = silu_f(j.x[i]);
}

void silu_mul(const SiluJob& j) {
  for (index_t r = 0; r < j.rows; ++r) {
    const float* g = j.x + r * j.ld;
    const float* u = g + j.I;
    float* y = j.y + r * j.I;
    for (index_t i = 0; i < j.I; ++i) y[i] = silu_f(g[i]) * u[i];
  }
}

void rotary(const RotaryJob& j) {
  const index_t D = j.D, h = D / 2;
  for (index_t r = 0; r < j.rows; ++r) {
    const float* x = j.x + r * D;
    const float* c = j.cos + r * D;
    const float* s = j.sin + r * D;
    float* y = j.y + r * D;
    for (index_t i = 0; i < h; ++i) {
      y[i] = x[i] * c[i] - x[i + h] * s[i];
      y[i + h] = x[i + h] * c[i + h] + x[i] * s[i + h];
    }
  }
}

}  // namespace graphopt::kernels::ref
