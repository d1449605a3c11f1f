// AVX2 + FMA vector math, 8 lanes: the formulas and tables of math.h (and the
// names of vmath_avx512.h, overloaded on __m256). GCC does not vectorise the
// table lookups or the float -> 8-bit narrowing for AVX2 by itself, hence
// intrinsics. Include only from translation units built with -mavx2 -mfma;
// internal linkage for the reason given in math.h.
#pragma once
#include <immintrin.h>

#include <cstdint>

#include "math.h"

namespace graphopt::kernels {
namespace {

// 16-entry table row t[0..15] indexed by the low 4 bits of i: two 8-entry
// vpermps, and bit 3 (moved to the sign bit) picks between them.
inline __m256 lookup16(const float* t, __m256i i, __m256 hi_sel) {
  const __m256 lo = _mm256_permutevar8x32_ps(_mm256_loadu_ps(t), i);
  const __m256 hi = _mm256_permutevar8x32_ps(_mm256_loadu_ps(t + 8), i);
  return _mm256_blendv_ps(lo, hi, hi_sel);
}

// odd_piecewise (math.h) for 8 lanes, with FMA (as odd_piecewise_v in vmath_avx512.h).
template <int NC>
inline __m256 odd_piecewise_v(__m256 x, const float (&c)[NC][16], float w, float inv_w) {
  const __m256 sign_mask = _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(0x80000000u)));
  const __m256 magic = _mm256_set1_ps(12582912.f);
  const __m256 ax = _mm256_andnot_ps(sign_mask, x);
  const __m256 a = _mm256_min_ps(_mm256_set1_ps(15.5f * w * (1.f - 9.5367432e-7f)), ax);  // NaN (2nd operand) stays
  const __m256 t = _mm256_fmadd_ps(a, _mm256_set1_ps(inv_w), magic);
  const __m256i i = _mm256_castps_si256(t);
  const __m256 hi_sel = _mm256_castsi256_ps(_mm256_slli_epi32(i, 28));
  const __m256 d = _mm256_fnmadd_ps(_mm256_sub_ps(t, magic), _mm256_set1_ps(w), a);
  __m256 p = lookup16(c[NC - 1], i, hi_sel);
  for (int k = NC - 2; k >= 0; --k) p = _mm256_fmadd_ps(p, d, lookup16(c[k], i, hi_sel));
  return _mm256_or_ps(p, _mm256_and_ps(x, sign_mask));
}

inline __m256 erf_v(__m256 x) { return odd_piecewise_v(x, kErfTab, kErfW, kErfInvW); }
inline __m256 tanh_v(__m256 x) { return odd_piecewise_v(x, kTanhTab, kTanhW, kTanhInvW); }

inline __m256 gelu_erf_v(__m256 x) {
  const __m256 h = _mm256_mul_ps(x, _mm256_set1_ps(0.5f));
  return _mm256_fmadd_ps(h, erf_v(_mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752f))), h);
}


// exp_fast_v of vmath_avx512.h for 8 lanes, x <= 88: AVX2 has no scalef, so
// 2^n is built in the exponent field, which limits n to >= -126: below
// -87.33 the result is 0 (as exp_f).
inline __m256 exp_fast_v(__m256 x) {
  const __m256 lo = _mm256_set1_ps(-87.33654f);
  const __m256 xc = _mm256_max_ps(lo, x);  // NaN (2nd operand) stays NaN
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(0.00826153066f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.0418987311f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.166681141f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.499991417f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.999999523f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e)), _mm256_cmp_ps(x, lo, _CMP_NLT_UQ));  // NaN kept
}

// As gelu_tanh_f in math.h: x / (1 + exp(-2u)), exp(-2u) = inf above 88.
inline __m256 gelu_tanh_v(__m256 x) {
  const __m256 v = _mm256_mul_ps(x, _mm256_fmadd_ps(_mm256_mul_ps(x, x), _mm256_set1_ps(-0.0713548162726f),
                                                    _mm256_set1_ps(-1.59576912161f)));
  const __m256 big = _mm256_cmp_ps(v, _mm256_set1_ps(88.f), _CMP_GT_OQ);
  const __m256 e = _mm256_blendv_ps(exp_fast_v(_mm256_min_ps(v, _mm256_set1_ps(88.f))), _mm256_set1_ps(INFINITY), big);
  return _mm256_div_ps(x, _mm256_add_ps(e, _mm256_set1_ps(1.f)));
}

// saturate(round_half_even(y) + zp) as int32 lanes, bounds folded in (see quant_v in vmath_avx512.h).
inline __m256i quant_v(__m256 y, __m256 lo, __m256 hi, __m256i zp) {
  const __m256 c = _mm256_min_ps(_mm256_max_ps(y, lo), hi);
  return _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_round_ps(c, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)), zp);
}

// 32 in-range int32 lanes (a, b, c, d in order) to 32 u8 / s8 bytes.
template <bool U8>
inline __m256i narrow32(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);  // exact: |v| <= 255
  const __m256i q = U8 ? _mm256_packus_epi16(ab, cd) : _mm256_packs_epi16(ab, cd);
  return _mm256_permutevar8x32_epi32(q, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));  // undo the in-lane packing
}

}  // namespace
}  // namespace graphopt::kernels
