// AVX-512 int4 matmul: a decode path (M <= 4: dequantize 16 weights at a time in registers and
// FMA them into every row; one pass over the packed weights, which is what bounds a GEMV) and a
// prefill path (dequantize a 16-column panel to fp32 once, then 4x4 register-tiled dot products
// over it, so each dequantized weight is reused M times from L2).
#include <immintrin.h>

#include <vector>

#include "int4_internal.h"

namespace graphopt::kernels::avx512 {
namespace {

// 16 weights from 8 packed bytes: (q - zp) * s  ==  q * s + zs  with zs = -zp * s.
inline __m512 deq16(const std::uint8_t* p, __m512 s, __m512 zs) {
  const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  const __m128i m4 = _mm_set1_epi8(0x0F);
  const __m128i v = _mm_unpacklo_epi8(_mm_and_si128(b, m4), _mm_and_si128(_mm_srli_epi16(b, 4), m4));
  return _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(v)), s, zs);
}

inline __mmask16 tail_mask(index_t left) { return left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1u); }

template <int MR>
void decode(const Int4Job& j) {
  const Int4Weights& w = j.w;
  const index_t K = w.K, nb = (K + w.block - 1) / w.block, blob = w.block / 2;
  for (index_t n = j.n0; n < j.n1; ++n) {
    __m512 acc[MR][2];
    for (int m = 0; m < MR; ++m) acc[m][0] = acc[m][1] = _mm512_setzero_ps();
    int par = 0;
    for (index_t b = 0; b < nb; ++b) {
      const std::uint8_t* src = w.q + (n * nb + b) * blob;
      const float sc = w.scale[n * nb + b];
      const __m512 s = _mm512_set1_ps(sc), zs = _mm512_set1_ps(-static_cast<float>(int4_zp(w, n, b)) * sc);
      const index_t k0 = b * w.block, k1 = k0 + w.block < K ? k0 + w.block : K;
      for (index_t k = k0; k < k1; k += 16, par ^= 1) {
        const __m512 wv = deq16(src + (k - k0) / 2, s, zs);
        if (k + 16 <= K) {
          for (int m = 0; m < MR; ++m) acc[m][par] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(j.x + m * K + k), acc[m][par]);
        } else {
          const __mmask16 mk = tail_mask(K - k);
          for (int m = 0; m < MR; ++m)
            acc[m][par] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(mk, j.x + m * K + k), acc[m][par]);
        }
      }
    }
    for (int m = 0; m < MR; ++m)
      j.y[m * w.N + n] = _mm512_reduce_add_ps(_mm512_add_ps(acc[m][0], acc[m][1])) + (j.bias ? j.bias[n] : 0.f);
  }
}

// Decode for blocks of 32k weights: 32 weights per 16-byte load, the zero point subtracted in
// int8 before widening, NC columns at once so 2*NC*MR accumulator chains hide the FMA latency.
template <int MR, int NC>
void decode32_cols(const Int4Job& j, index_t n) {
  const Int4Weights& w = j.w;
  const index_t K = w.K, nb = (K + w.block - 1) / w.block, blob = w.block / 2;
  const __m128i m4 = _mm_set1_epi8(0x0F);
  __m512 acc[MR][NC][2];
#pragma GCC unroll 4
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) acc[m][c][0] = acc[m][c][1] = _mm512_setzero_ps();
  for (index_t b = 0; b < nb; ++b) {
    const index_t k0 = b * w.block, k1 = k0 + w.block < K ? k0 + w.block : K;
    __m128i z[NC];
    __m512 sc[NC];
    const std::uint8_t* src[NC];
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) {
      z[c] = _mm_set1_epi8(static_cast<char>(int4_zp(w, n + c, b)));
      sc[c] = _mm512_set1_ps(w.scale[(n + c) * nb + b]);
      src[c] = w.q + ((n + c) * nb + b) * blob;
    }
    for (index_t k = k0; k < k1; k += 32) {
      const __mmask16 mk0 = tail_mask(K - k), mk1 = tail_mask(K - k > 16 ? K - k - 16 : 0);
      __m512 x0[MR], x1[MR];
#pragma GCC unroll 4
      for (int m = 0; m < MR; ++m) {
        x0[m] = _mm512_maskz_loadu_ps(mk0, j.x + m * K + k);
        x1[m] = _mm512_maskz_loadu_ps(mk1, j.x + m * K + k + 16);
      }
#pragma GCC unroll 4
      for (int c = 0; c < NC; ++c) {
        const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src[c] + (k - k0) / 2));
        const __m128i lo = _mm_sub_epi8(_mm_and_si128(q, m4), z[c]);
        const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(q, 4), m4), z[c]);
        const __m512 w0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_unpacklo_epi8(lo, hi))), sc[c]);
        const __m512 w1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_unpackhi_epi8(lo, hi))), sc[c]);
#pragma GCC unroll 4
        for (int m = 0; m < MR; ++m) {
          acc[m][c][0] = _mm512_fmadd_ps(w0, x0[m], acc[m][c][0]);
          acc[m][c][1] = _mm512_fmadd_ps(w1, x1[m], acc[m][c][1]);
        }
      }
    }
  }
#pragma GCC unroll 4
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c)
      j.y[m * w.N + n + c] = _mm512_reduce_add_ps(_mm512_add_ps(acc[m][c][0], acc[m][c][1])) + (j.bias ? j.bias[n + c] : 0.f);
}

template <int MR>
void decode32(const Int4Job& j) {
  constexpr int NC = MR <= 2 ? 4 : 2;
  index_t n = j.n0;
  for (; n + NC <= j.n1; n += NC) decode32_cols<MR, NC>(j, n);
  for (; n < j.n1; ++n) decode32_cols<MR, 1>(j, n);
}

// y[MR rows, NR panel columns] from the dequantized panel (column c at wp + c * Kp).
// k runs over [k0, k1) (a cache block); the sums are added to y (the caller starts y at the bias).
template <int MR, int NR>
void tile(const float* x, index_t K, index_t k0, index_t k1, const float* wp, index_t Kp, float* y, index_t ldy) {
  __m512 acc[MR][NR];
  for (int m = 0; m < MR; ++m)
    for (int c = 0; c < NR; ++c) acc[m][c] = _mm512_setzero_ps();
  for (index_t k = k0; k < k1; k += 16) {
    const __mmask16 mk = tail_mask(K - k);
    __m512 xv[MR];
    for (int m = 0; m < MR; ++m) xv[m] = _mm512_maskz_loadu_ps(mk, x + m * K + k);
    for (int c = 0; c < NR; ++c) {
      const __m512 wv = _mm512_load_ps(wp + c * Kp + k);
      for (int m = 0; m < MR; ++m) acc[m][c] = _mm512_fmadd_ps(xv[m], wv, acc[m][c]);
    }
  }
  for (int m = 0; m < MR; ++m)
    for (int c = 0; c < NR; ++c) y[m * ldy + c] += _mm512_reduce_add_ps(acc[m][c]);
}

// The full 4x4 tile with named accumulators (GCC keeps an accumulator *array* on the stack and
// stores all 16 back every iteration, which halves the FMA rate).
template <>
void tile<4, 4>(const float* x, index_t K, index_t k0, index_t k1, const float* wp, index_t Kp, float* y, index_t ldy) {
  __m512 a00 = _mm512_setzero_ps(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00;
  __m512 a20 = a00, a21 = a00, a22 = a00, a23 = a00, a30 = a00, a31 = a00, a32 = a00, a33 = a00;
  const float *x0 = x, *x1 = x + K, *x2 = x + 2 * K, *x3 = x + 3 * K;
  const float *w0 = wp, *w1 = wp + Kp, *w2 = wp + 2 * Kp, *w3 = wp + 3 * Kp;
  for (index_t k = k0; k < k1; k += 16) {
    const __mmask16 mk = tail_mask(K - k);
    const __m512 v0 = _mm512_maskz_loadu_ps(mk, x0 + k), v1 = _mm512_maskz_loadu_ps(mk, x1 + k);
    const __m512 v2 = _mm512_maskz_loadu_ps(mk, x2 + k), v3 = _mm512_maskz_loadu_ps(mk, x3 + k);
    __m512 w = _mm512_load_ps(w0 + k);
    a00 = _mm512_fmadd_ps(v0, w, a00); a10 = _mm512_fmadd_ps(v1, w, a10);
    a20 = _mm512_fmadd_ps(v2, w, a20); a30 = _mm512_fmadd_ps(v3, w, a30);
    w = _mm512_load_ps(w1 + k);
    a01 = _mm512_fmadd_ps(v0, w, a01); a11 = _mm512_fmadd_ps(v1, w, a11);
    a21 = _mm512_fmadd_ps(v2, w, a21); a31 = _mm512_fmadd_ps(v3, w, a31);
    w = _mm512_load_ps(w2 + k);
    a02 = _mm512_fmadd_ps(v0, w, a02); a12 = _mm512_fmadd_ps(v1, w, a12);
    a22 = _mm512_fmadd_ps(v2, w, a22); a32 = _mm512_fmadd_ps(v3, w, a32);
    w = _mm512_load_ps(w3 + k);
    a03 = _mm512_fmadd_ps(v0, w, a03); a13 = _mm512_fmadd_ps(v1, w, a13);
    a23 = _mm512_fmadd_ps(v2, w, a23); a33 = _mm512_fmadd_ps(v3, w, a33);
  }
  const __m512 acc[4][4] = {{a00, a01, a02, a03}, {a10, a11, a12, a13}, {a20, a21, a22, a23}, {a30, a31, a32, a33}};
  for (int m = 0; m < 4; ++m)
    for (int c = 0; c < 4; ++c) y[m * ldy + c] += _mm512_reduce_add_ps(acc[m][c]);
}

using TileFn = void (*)(const float*, index_t, index_t, index_t, const float*, index_t, float*, index_t);
template <int MR>
constexpr TileFn kTiles[4] = {&tile<MR, 1>, &tile<MR, 2>, &tile<MR, 3>, &tile<MR, 4>};
constexpr const TileFn* kTileRows[4] = {kTiles<1>, kTiles<2>, kTiles<3>, kTiles<4>};

void prefill(const Int4Job& j) {
  const Int4Weights& w = j.w;
  const index_t K = w.K, nb = (K + w.block - 1) / w.block, blob = w.block / 2;
  // Column stride: a multiple of 16 floats plus 16, so the four columns of a tile do not sit a
  // multiple of 4 KiB apart (same L1 set: with the x rows, more streams than the cache has ways).
  const index_t Kp = (K + 15) / 16 * 16 + 16;
  thread_local std::vector<float> buf;
  if (buf.size() < static_cast<std::size_t>(16 * Kp + 16)) buf.assign(static_cast<std::size_t>(16 * Kp + 16), 0.f);
  float* panel = reinterpret_cast<float*>((reinterpret_cast<std::uintptr_t>(buf.data()) + 63) & ~std::uintptr_t{63});
  for (index_t p0 = j.n0; p0 < j.n1; p0 += 16) {
    const index_t np = j.n1 - p0 < 16 ? j.n1 - p0 : 16;
    for (index_t c = 0; c < np; ++c) {  // dequantize the panel (weights past K multiply x's zero tail)
      const index_t n = p0 + c;
      float* dst = panel + c * Kp;
      for (index_t b = 0; b < nb; ++b) {
        const std::uint8_t* src = w.q + (n * nb + b) * blob;
        const float sc = w.scale[n * nb + b];
        const __m512 s = _mm512_set1_ps(sc), zs = _mm512_set1_ps(-static_cast<float>(int4_zp(w, n, b)) * sc);
        const index_t k0 = b * w.block;
        for (index_t k = k0; k < K && k < k0 + w.block; k += 16) _mm512_store_ps(dst + k, deq16(src + (k - k0) / 2, s, zs));
      }
    }
    for (index_t m = 0; m < j.M; ++m)
      for (index_t c = 0; c < np; ++c) j.y[m * w.N + p0 + c] = j.bias ? j.bias[p0 + c] : 0.f;
    // K in blocks of kKc: a 4-row x block (4 x 2 KiB) and the panel's block (16 x 2 KiB) stay in L1.
    constexpr index_t kKc = 512;
    for (index_t k0 = 0; k0 < K; k0 += kKc) {
      const index_t k1 = k0 + kKc < K ? k0 + kKc : K;
      for (index_t m = 0; m < j.M; m += 4) {
        const index_t mr = j.M - m < 4 ? j.M - m : 4;
        for (index_t c = 0; c < np; c += 4) {
          const index_t nr = np - c < 4 ? np - c : 4;
          kTileRows[mr - 1][nr - 1](j.x + m * K, K, k0, k1, panel + c * Kp, Kp, j.y + m * w.N + p0 + c, w.N);
        }
      }
    }
  }
}

}  // namespace

void int4_matmul(const Int4Job& j) {
  if (j.w.block % 32 == 0) {
    switch (j.M) {
      case 1: decode32<1>(j); return;
      case 2: decode32<2>(j); return;
      case 3: decode32<3>(j); return;
      case 4: decode32<4>(j); return;
      default: prefill(j); return;
    }
  }
  switch (j.M) {
    case 1: decode<1>(j); return;
    case 2: decode<2>(j); return;
    case 3: decode<3>(j); return;
    case 4: decode<4>(j); return;
    default: prefill(j);
  }
}

}  // namespace graphopt::kernels::avx512
