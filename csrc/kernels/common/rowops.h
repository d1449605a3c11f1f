// Row reductions and softmax shared by the element-wise and attention kernels.
// Reductions use 16 independent lanes so they vectorise without -ffast-math;
// in AVX-512 translation units softmax_row is written with intrinsics.
// Internal linkage (anonymous namespace): one copy per ISA TU.
#pragma once
#include <cmath>

#include "graphopt/tensor_view.h"
#include "math.h"
#if defined(__AVX512F__)
#include "vmath_avx512.h"
#endif

namespace graphopt::kernels {
namespace {

inline float row_sum(const float* __restrict x, index_t n) {
  float acc[16] = {0};
  index_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int l = 0; l < 16; ++l) acc[l] += x[i + l];
  float s = 0.f;
  for (int l = 0; l < 16; ++l) s += acc[l];
  for (; i < n; ++i) s += x[i];
  return s;
}

inline float row_sq_dev(const float* __restrict x, index_t n, float mean) {
  float acc[16] = {0};
  index_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int l = 0; l < 16; ++l) { const float d = x[i + l] - mean; acc[l] += d * d; }
  float s = 0.f;
  for (int l = 0; l < 16; ++l) s += acc[l];
  for (; i < n; ++i) { const float d = x[i] - mean; s += d * d; }
  return s;
}

inline float row_max(const float* __restrict x, index_t n) {
  float acc[16];
  for (int l = 0; l < 16; ++l) acc[l] = -INFINITY;
  index_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int l = 0; l < 16; ++l) acc[l] = x[i + l] > acc[l] ? x[i + l] : acc[l];
  float m = -INFINITY;
  for (int l = 0; l < 16; ++l) m = acc[l] > m ? acc[l] : m;
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

#if defined(__AVX512F__)
inline __mmask16 tail_mask(index_t r) { return static_cast<__mmask16>((1u << r) - 1u); }

// y = softmax(x + mask) over n entries (mask may be null, y may alias x), as
// softmax_row below; -inf entries give 0, an all -inf row gives all 0.
inline void softmax_row_v(const float* x, const float* mask, index_t n, float* y) {
  const __m512 ninf = _mm512_set1_ps(-INFINITY);
  const index_t nv = n / 16 * 16;
  const __mmask16 tm = tail_mask(n - nv);
  __m512 mx = ninf, mx1 = ninf;
  index_t i = 0;
  for (; i + 32 <= nv; i += 32) {
    __m512 v = _mm512_loadu_ps(x + i), w = _mm512_loadu_ps(x + i + 16);
    if (mask) {
      v = _mm512_add_ps(v, _mm512_loadu_ps(mask + i));
      w = _mm512_add_ps(w, _mm512_loadu_ps(mask + i + 16));
    }
    _mm512_storeu_ps(y + i, v);
    _mm512_storeu_ps(y + i + 16, w);
    mx = _mm512_max_ps(mx, v);
    mx1 = _mm512_max_ps(mx1, w);
  }
  for (; i < n; i += 16) {
    const __mmask16 m = i < nv ? static_cast<__mmask16>(0xffff) : tm;
    __m512 v = _mm512_mask_loadu_ps(ninf, m, x + i);
    if (mask) v = _mm512_mask_add_ps(v, m, v, _mm512_maskz_loadu_ps(m, mask + i));
    _mm512_mask_storeu_ps(y + i, m, v);
    mx = _mm512_max_ps(mx, v);
  }
  mx = _mm512_max_ps(mx, mx1);
  const float rmax = _mm512_reduce_max_ps(mx);
  if (!(rmax > -INFINITY)) {  // fully masked row
    for (index_t i = 0; i < n; i += 16) {
      const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xffff) : tail_mask(n - i);
      _mm512_mask_storeu_ps(y + i, m, _mm512_setzero_ps());
    }
    return;
  }
  const __m512 vmax = _mm512_set1_ps(rmax);
  __m512 s0 = _mm512_setzero_ps(), s1 = s0;
  for (i = 0; i + 32 <= n; i += 32) {
    const __m512 a = exp_fast_v(_mm512_sub_ps(_mm512_loadu_ps(y + i), vmax));
    const __m512 b = exp_fast_v(_mm512_sub_ps(_mm512_loadu_ps(y + i + 16), vmax));
    _mm512_storeu_ps(y + i, a);
    _mm512_storeu_ps(y + i + 16, b);
    s0 = _mm512_add_ps(s0, a);
    s1 = _mm512_add_ps(s1, b);
  }
  for (; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xffff) : tail_mask(n - i);
    const __m512 a = _mm512_maskz_mov_ps(m, exp_fast_v(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, y + i), vmax)));
    _mm512_mask_storeu_ps(y + i, m, a);
    s0 = _mm512_add_ps(s0, a);
  }
  const __m512 inv = _mm512_set1_ps(1.f / _mm512_reduce_add_ps(_mm512_add_ps(s0, s1)));
  for (i = 0; i < nv; i += 16) _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_loadu_ps(y + i), inv));
  if (nv < n) _mm512_mask_storeu_ps(y + nv, tm, _mm512_mul_ps(_mm512_maskz_loadu_ps(tm, y + nv), inv));
}

#endif

// In place: y = softmax(y) over n entries; -inf entries -> 0, all -inf -> all 0.
inline void softmax_row(float* __restrict y, index_t n) {
#if defined(__AVX512F__)
  softmax_row_v(y, nullptr, n, y);
#else
  const float m = row_max(y, n);
  if (!(m > -INFINITY)) {
    for (index_t j = 0; j < n; ++j) y[j] = 0.f;
    return;
  }
  for (index_t j = 0; j < n; ++j) y[j] = exp_f(y[j] - m);
  const float s = row_sum(y, n);
  const float inv = 1.f / s;
  for (index_t j = 0; j < n; ++j) y[j] *= inv;
#endif
}

}  // namespace
}  // namespace graphopt::kernels
