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

// y[MR rows, NR panel columns] from the dequantized panel (column c at wp + c * Kp).
template <int MR, int NR>
void tile(const float* x, index_t K, const float* wp, index_t Kp, float* y, index_t ldy, const float* bias) {
  __m512 acc[MR][NR];
  for (int m = 0; m < MR; ++m)
    for (int c = 0; c < NR; ++c) acc[m][c] = _mm512_setzero_ps();
  for (index_t k = 0; k < K; k += 16) {
    const __mmask16 mk = tail_mask(K - k);
    __m512 xv[MR];
    for (int m = 0; m < MR; ++m) xv[m] = _mm512_maskz_loadu_ps(mk, x + m * K + k);
    for (int c = 0; c < NR; ++c) {
      const __m512 wv = _mm512_load_ps(wp + c * Kp + k);
      for (int m = 0; m < MR; ++m) acc[m][c] = _mm512_fmadd_ps(xv[m], wv, acc[m][c]);
    }
  }
  for (int m = 0; m < MR; ++m)
    for (int c = 0; c < NR; ++c) y[m * ldy + c] = _mm512_reduce_add_ps(acc[m][c]) + (bias ? bias[c] : 0.f);
}

using TileFn = void (*)(const float*, index_t, const float*, index_t, float*, index_t, const float*);
template <int MR>
constexpr TileFn kTiles[4] = {&tile<MR, 1>, &tile<MR, 2>, &tile<MR, 3>, &tile<MR, 4>};
constexpr const TileFn* kTileRows[4] = {kTiles<1>, kTiles<2>, kTiles<3>, kTiles<4>};

void prefill(const Int4Job& j) {
  const Int4Weights& w = j.w;
  const index_t K = w.K, nb = (K + w.block - 1) / w.block, blob = w.block / 2;
  const index_t Kp = (K + 15) / 16 * 16;
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
    for (index_t m = 0; m < j.M; m += 4) {
      const index_t mr = j.M - m < 4 ? j.M - m : 4;
      for (index_t c = 0; c < np; c += 4) {
        const index_t nr = np - c < 4 ? np - c : 4;
        kTileRows[mr - 1][nr - 1](j.x + m * K, K, panel + c * Kp, Kp, j.y + m * w.N + p0 + c, w.N,
                                  j.bias ? j.bias + p0 + c : nullptr);
      }
    }
  }
}

}  // namespace

void int4_matmul(const Int4Job& j) {
  switch (j.M) {
    case 1: decode<1>(j); return;
    case 2: decode<2>(j); return;
    case 3: decode<3>(j); return;
    case 4: decode<4>(j); return;
    default: prefill(j);
  }
}

}  // namespace graphopt::kernels::avx512
