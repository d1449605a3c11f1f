// Decoder kernels, AVX-512 build (flags set per file in CMakeLists.txt; see decoder.h).
#include <immintrin.h>

#include <cmath>

#include "../common/math.h"
#include "../common/vmath_avx512.h"
#include "decoder_internal.h"

namespace graphopt::kernels::avx512 {
namespace {

inline __mmask16 mask_for(index_t left) {
  return left >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << left) - 1u);
}

// x * sigmoid(x) = x / (1 + exp(-x)); exp_v is finite for large arguments, so very negative x gives -0.
inline __m512 silu_v(__m512 x) {
  const __m512 e = exp_v(_mm512_sub_ps(_mm512_setzero_ps(), x));
  return _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.f), e));
}

}  // namespace

void rmsnorm(const RMSNormJob& j) {
  const index_t N = j.N;
  for (index_t r = 0; r < j.rows; ++r) {
    const float* x = j.x + r * N;
    const float* res = j.res ? j.res + r * N : nullptr;
    float* y = j.y + r * N;
    float* so = j.sum_out ? j.sum_out + r * N : nullptr;
    // Pass 1: s = x (+ residual) into sum_out when asked; sum of squares in 16 lanes.
    __m512 acc = _mm512_setzero_ps();
    for (index_t i = 0; i < N; i += 16) {
      const __mmask16 m = mask_for(N - i);
      __m512 s = _mm512_maskz_loadu_ps(m, x + i);
      if (res) s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(m, res + i));
      if (so) _mm512_mask_storeu_ps(so + i, m, s);
      acc = _mm512_add_ps(acc, _mm512_mul_ps(s, s));  // no FMA: rounds as the scalar reference
    }
    alignas(64) float lanes[16];
    _mm512_store_ps(lanes, acc);
    float ss = 0.f;
    for (float a : lanes) ss += a;
    const __m512 inv = _mm512_set1_ps(1.f / std::sqrt(ss / static_cast<float>(N) + j.eps));
    // Pass 2: y = s * inv * gamma (s re-read: sum_out may alias x or residual, y may alias x).
    for (index_t i = 0; i < N; i += 16) {
      const __mmask16 m = mask_for(N - i);
      __m512 s;
      if (so) {
        s = _mm512_maskz_loadu_ps(m, so + i);
      } else {
        s = _mm512_maskz_loadu_ps(m, x + i);
        if (res) s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(m, res + i));
      }
      _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(_mm512_mul_ps(s, inv), _mm512_maskz_loadu_ps(m, j.gamma + i)));
    }
  }
}

void silu(const SiluJob& j) {
  for (index_t i = 0; i < j.I; i += 16) {
    const __mmask16 m = mask_for(j.I - i);
    _mm512_mask_storeu_ps(j.y + i, m, silu_v(_mm512_maskz_loadu_ps(m, j.x + i)));
  }
}

void silu_mul(const SiluJob& j) {
  for (index_t r = 0; r < j.rows; ++r) {
    const float* g = j.x + r * j.ld;
    const float* u = g + j.I;
    float* y = j.y + r * j.I;
    for (index_t i = 0; i < j.I; i += 16) {
      const __mmask16 m = mask_for(j.I - i);
      _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(silu_v(_mm512_maskz_loadu_ps(m, g + i)), _mm512_maskz_loadu_ps(m, u + i)));
    }
  }
}

void rotary(const RotaryJob& j) {
  const index_t D = j.D, h = D / 2;
  for (index_t r = 0; r < j.rows; ++r) {
    const float* x = j.x + r * D;
    const float* c = j.cos + r * D;
    const float* s = j.sin + r * D;
    float* y = j.y + r * D;
    for (index_t i = 0; i < h; i += 16) {
      const __mmask16 m = mask_for(h - i);
      const __m512 x1 = _mm512_maskz_loadu_ps(m, x + i), x2 = _mm512_maskz_loadu_ps(m, x + h + i);
      // products rounded separately, then added: the scalar reference's rounding
      const __m512 lo = _mm512_sub_ps(_mm512_mul_ps(x1, _mm512_maskz_loadu_ps(m, c + i)),
                                      _mm512_mul_ps(x2, _mm512_maskz_loadu_ps(m, s + i)));
      const __m512 hi = _mm512_add_ps(_mm512_mul_ps(x2, _mm512_maskz_loadu_ps(m, c + h + i)),
                                      _mm512_mul_ps(x1, _mm512_maskz_loadu_ps(m, s + h + i)));
      _mm512_mask_storeu_ps(y + i, m, lo);
      _mm512_mask_storeu_ps(y + h + i, m, hi);
    }
  }
}

}  // namespace graphopt::kernels::avx512
