// AVX-512F vector math: the same formulas and tables as the scalar math.h (so
// results agree to rounding; the vector code uses FMA), written with intrinsics because GCC's auto-vectoriser
// leaves conversions and saturating narrows on the table. Include only from
// translation units built with -mavx512f (-mavx512bw -mavx512dq -mavx512vl);
// internal linkage for the reason given in math.h.
#pragma once
#include <immintrin.h>

#include <cstdint>

#include "math.h"

namespace graphopt::kernels {
namespace {

// exp(x), ~1-2 ulp on [-87, 88]; 0 below -87.33, finite (not inf) above 88.37.
inline __m512 exp_v(__m512 x) {
  // Bounds first: vmaxps/vminps return their second operand when one is NaN, so NaN stays NaN.
  const __m512 xc = _mm512_min_ps(_mm512_set1_ps(88.37626f), _mm512_max_ps(_mm512_set1_ps(-87.33654f), x));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xc);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 y = _mm512_set1_ps(1.9875691500E-4f);
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.3981999507E-3f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(8.3334519073E-3f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(4.1665795894E-2f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.6666665459E-1f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(5.0000001201E-1f));
  y = _mm512_fmadd_ps(_mm512_mul_ps(y, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.f)));
  y = _mm512_scalef_ps(y, n);  // y * 2^n in one rounding, as the scalar path's multiply by 2^n
  const __mmask16 under = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.33654f), _CMP_LT_OQ);
  return _mm512_mask_blend_ps(under, y, _mm512_setzero_ps());
}

// exp, cheaper than exp_v (11 ops instead of 17) at a max relative error of
// 1.7e-7 (exp_v: ~1e-7), for softmax (x - row max <= 0, -inf allowed) and GELU.
// Overflows to inf above ~88.7; +inf and NaN inputs give NaN (callers clamp).
// Degree-5 polynomial with c0 = 1 (exp(0) is exactly 1; tools/fit_vmath.py);
// scalef scales subnormal results correctly, and below -110 the result is
// exactly 0 (2^-159 * p rounds to 0), so no masking is needed.
inline __m512 exp_fast_v(__m512 x) {
  const __m512 xc = _mm512_max_ps(_mm512_set1_ps(-110.f), x);  // NaN (2nd operand) stays NaN
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xc);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(0.00826153066f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.0418987311f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.166681141f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.499991417f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.999999523f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  return _mm512_scalef_ps(p, n);
}

// odd_piecewise (math.h) for 16 lanes: the interval index is the low 4 bits of
// |x| / w + 1.5 * 2^23 (vpermps reads only those), and each coefficient of the
// lane's interval comes from one vpermps of a 16-entry table row; Horner with FMA.
template <int NC>
inline __m512 odd_piecewise_v(__m512 x, const float (&c)[NC][16], float w, float inv_w) {
  const __m512 magic = _mm512_set1_ps(12582912.f);
  const __m512 a = _mm512_min_ps(_mm512_set1_ps(15.5f * w * (1.f - 9.5367432e-7f)), _mm512_abs_ps(x));  // NaN stays
  const __m512 t = _mm512_fmadd_ps(a, _mm512_set1_ps(inv_w), magic);
  const __m512i i = _mm512_castps_si512(t);
  const __m512 d = _mm512_fnmadd_ps(_mm512_sub_ps(t, magic), _mm512_set1_ps(w), a);
  __m512 p = _mm512_permutexvar_ps(i, _mm512_loadu_ps(c[NC - 1]));
  for (int k = NC - 2; k >= 0; --k) p = _mm512_fmadd_ps(p, d, _mm512_permutexvar_ps(i, _mm512_loadu_ps(c[k])));
  // sign of x onto p (p >= 0): bitwise select(sign mask ? x : p)
  return _mm512_castsi512_ps(_mm512_ternarylogic_epi32(_mm512_set1_epi32(static_cast<int>(0x80000000u)),
                                                       _mm512_castps_si512(x), _mm512_castps_si512(p), 0xca));
}

// erf(x) and tanh(x), as erf_f / tanh_f in math.h (same tables; max abs error ~1 ulp of 1).
inline __m512 erf_v(__m512 x) { return odd_piecewise_v(x, kErfTab, kErfW, kErfInvW); }
inline __m512 tanh_v(__m512 x) { return odd_piecewise_v(x, kTanhTab, kTanhW, kTanhInvW); }

inline __m512 gelu_erf_v(__m512 x) {
  const __m512 h = _mm512_mul_ps(x, _mm512_set1_ps(0.5f));
  return _mm512_fmadd_ps(h, erf_v(_mm512_mul_ps(x, _mm512_set1_ps(0.70710678118654752f))), h);
}

// As gelu_tanh_f in math.h: x / (1 + exp(-2u)); -2u is clamped at 100 (exp -> inf, x / inf -> -0).
inline __m512 gelu_tanh_v(__m512 x) {
  const __m512 v = _mm512_mul_ps(x, _mm512_fmadd_ps(_mm512_mul_ps(x, x), _mm512_set1_ps(-0.0713548162726f),
                                                    _mm512_set1_ps(-1.59576912161f)));
  const __m512 e = exp_fast_v(_mm512_min_ps(v, _mm512_set1_ps(100.f)));
  return _mm512_div_ps(x, _mm512_add_ps(e, _mm512_set1_ps(1.f)));
}

// saturate(round_half_even(y) + zp) to u8 / s8 for 16 lanes (y already divided by the scale).
// Rounds to nearest even explicitly (not via MXCSR); out-of-int32-range lanes saturate like the
// scalar path's clamp to +-2^22 does after narrowing.
inline __m128i to_u8_v(__m512 y, __m512i zp) {
  const __m512 c = _mm512_min_ps(_mm512_max_ps(y, _mm512_set1_ps(-4194304.f)), _mm512_set1_ps(4194304.f));
  const __m512i q = _mm512_add_epi32(_mm512_cvt_roundps_epi32(c, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), zp);
  return _mm512_cvtusepi32_epi8(_mm512_max_epi32(q, _mm512_setzero_si512()));
}
inline __m128i to_s8_v(__m512 y, __m512i zp) {
  const __m512 c = _mm512_min_ps(_mm512_max_ps(y, _mm512_set1_ps(-4194304.f)), _mm512_set1_ps(4194304.f));
  return _mm512_cvtsepi32_epi8(_mm512_add_epi32(_mm512_cvt_roundps_epi32(c, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), zp));
}

// The same result as to_u8_v / to_s8_v with the bounds folded in once per row:
// lo = qmin - zp and hi = qmax - zp (integers, so clamping before rounding equals
// clamping after). NaN takes lo (vmaxps returns its second operand), as the scalar
// path does. The sum is in range, so the plain truncating narrow is exact.
inline __m128i quant_v(__m512 y, __m512 lo, __m512 hi, __m512i zp) {
  const __m512 c = _mm512_min_ps(_mm512_max_ps(y, lo), hi);
  return _mm512_cvtepi32_epi8(
      _mm512_add_epi32(_mm512_cvt_roundps_epi32(c, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), zp));
}

// fp32 -> bf16 bits, round to nearest even, NaN stays NaN (as f32_to_bf16 in math.h).
inline __m256i to_bf16_v(__m512 x) {
  const __m512i u = _mm512_castps_si512(x);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb), 16);
  const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
  const __m512i qn = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
  return _mm512_cvtepi32_epi16(_mm512_mask_blend_epi32(nan, r, qn));
}

}  // namespace
}  // namespace graphopt::kernels
