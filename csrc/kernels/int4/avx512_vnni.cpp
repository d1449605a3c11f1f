// AVX-512 VNNI int4 matmul with int8 activations (the prefill path): each row of x is quantized
// to int8 once per call (a symmetric scale per row and K-block, stored as u8 = code + 128), then a 4-row x
// 32-column tile runs vpdpbusd on the packed nibbles (Int4Packed: 16 columns x 4 k per register,
// unpacked by a shift and a mask into signed 16 * (q - 8)), one int32 sum per K-block that starts
// at the block's -2048 * sum(q - 8) (the +128 of the activations) and is scaled in fp32 at the
// block's end (times the activations' scale of that block). Same arithmetic, in the same order, as
// ref::int4_matmul_q8.
#include <immintrin.h>

#include <cstring>
#include <limits>
#include <vector>

#include "int4_internal.h"

namespace graphopt::kernels::avx512_vnni {
namespace {

struct Act {
  std::vector<std::uint8_t> buf;
  const std::uint8_t* xu = nullptr;  // [M][Kp], k >= K at 128 (code 0)
  const float* sx = nullptr;         // [M][nb] scales per K-block
  const float* xs = nullptr;         // [M][nb] code sums times the scale (zero points only)
  index_t Kp = 0, nb = 0;
};

inline __mmask16 tail_mask(index_t left) { return left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1u); }

void quantize(const float* x, index_t M, index_t K, index_t block, bool sums, Act* a) {
  a->nb = (K + block - 1) / block;
  a->Kp = a->nb * block;
  const std::size_t xu_bytes = static_cast<std::size_t>(M * a->Kp + 63) / 64 * 64;
  const std::size_t need = xu_bytes + 4 * static_cast<std::size_t>(2 * M * a->nb) + 64;
  if (a->buf.size() < need) a->buf.resize(need);
  auto* base = reinterpret_cast<std::uint8_t*>((reinterpret_cast<std::uintptr_t>(a->buf.data()) + 63) & ~std::uintptr_t{63});
  auto* xu = base;
  auto* sx = reinterpret_cast<float*>(base + xu_bytes);
  float* xs = sx + M * a->nb;
  const __m512 sign = _mm512_set1_ps(-0.f);
  const __m512i off = _mm512_set1_epi32(128);
  for (index_t m = 0; m < M; ++m) {
    const float* xr = x + m * K;
    std::uint8_t* dst = xu + m * a->Kp;
    __mmask16 nan = 0;
    for (index_t b = 0; b < a->nb; ++b) {
      __m512 mx = _mm512_setzero_ps();
      for (index_t k = b * block; k < (b + 1) * block; k += 16) {
        const __m512 v = _mm512_maskz_loadu_ps(k < K ? tail_mask(K - k) : __mmask16(0), xr + k);
        nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        mx = _mm512_max_ps(mx, _mm512_andnot_ps(sign, v));
      }
      const float amax = _mm512_reduce_max_ps(mx);
      const float inv = amax > 0.f ? 127.f / amax : 0.f, sb = amax / 127.f;
      const __m512 vi = _mm512_set1_ps(inv);
      __m512i sum = _mm512_setzero_si512();
      for (index_t k = b * block; k < (b + 1) * block; k += 16) {
        const __mmask16 mk = k < K ? tail_mask(K - k) : __mmask16(0);
        const __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(mk, xr + k), vi));
        sum = _mm512_add_epi32(sum, q);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + k), _mm512_cvtepi32_epi8(_mm512_add_epi32(q, off)));
      }
      sx[m * a->nb + b] = sb;
      if (sums) xs[m * a->nb + b] = static_cast<float>(_mm512_reduce_add_epi32(sum)) * sb;
    }
    if (nan)  // a NaN in x makes the row NaN
      for (index_t b = 0; b < a->nb; ++b) sx[m * a->nb + b] = std::numeric_limits<float>::quiet_NaN();
  }
  a->xu = xu;
  a->sx = sx;
  a->xs = xs;
}

inline __m512i bcast4(const std::uint8_t* p) {
  std::int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// Rows [m0, m0 + MR) x column groups [g0, g0 + NG) over all of K; stores the columns in [n0, n1).
template <int MR, int NG, bool ZP>
void tile(const Int4Packed& p, const Act& a, index_t m0, index_t g0, const float* bias, float* y, index_t n0, index_t n1) {
  const index_t B = p.block, nb = p.nb;
  const __m512i hi4 = _mm512_set1_epi8(static_cast<char>(0xF0));
  __m512 acc[MR][NG];
#pragma GCC unroll 4
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 2
    for (int g = 0; g < NG; ++g) acc[m][g] = _mm512_setzero_ps();
  const std::uint8_t* xr[MR];
#pragma GCC unroll 4
  for (int m = 0; m < MR; ++m) xr[m] = a.xu + (m0 + m) * a.Kp;
  for (index_t b = 0; b < nb; ++b) {
    __m512i dot[MR][NG];
    const std::uint8_t* wb[NG];
#pragma GCC unroll 2
    for (int g = 0; g < NG; ++g) {
      const index_t gb = (g0 + g) * nb + b;
      wb[g] = p.w.data() + gb * 8 * B;
      const __m512i c = _mm512_loadu_si512(p.comp.data() + gb * 16);
#pragma GCC unroll 4
      for (int m = 0; m < MR; ++m) dot[m][g] = c;
    }
    const index_t kb = b * B;
    for (index_t r = 0; r < B / 8; ++r) {
      __m512i wl[NG], wh[NG];
#pragma GCC unroll 2
      for (int g = 0; g < NG; ++g) {
        const __m512i v = _mm512_loadu_si512(wb[g] + r * 64);
        wl[g] = _mm512_and_si512(_mm512_slli_epi16(v, 4), hi4);
        wh[g] = _mm512_and_si512(v, hi4);
      }
#pragma GCC unroll 4
      for (int m = 0; m < MR; ++m) {
        const __m512i x0 = bcast4(xr[m] + kb + r * 8), x1 = bcast4(xr[m] + kb + r * 8 + 4);
#pragma GCC unroll 2
        for (int g = 0; g < NG; ++g) {
          dot[m][g] = _mm512_dpbusd_epi32(dot[m][g], x0, wl[g]);
          dot[m][g] = _mm512_dpbusd_epi32(dot[m][g], x1, wh[g]);
        }
      }
    }
#pragma GCC unroll 2
    for (int g = 0; g < NG; ++g) {
      const index_t gb = (g0 + g) * nb + b;
      const __m512 s = _mm512_loadu_ps(p.s16.data() + gb * 16);
#pragma GCC unroll 4
      for (int m = 0; m < MR; ++m)  // the weights' scale times this row's scale of the block: one multiply
        acc[m][g] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[m][g]), _mm512_mul_ps(s, _mm512_set1_ps(a.sx[(m0 + m) * nb + b])),
                                    acc[m][g]);
      if constexpr (ZP) {
        const __m512 zs = _mm512_loadu_ps(p.zs.data() + gb * 16);
#pragma GCC unroll 4
        for (int m = 0; m < MR; ++m) acc[m][g] = _mm512_fmadd_ps(zs, _mm512_set1_ps(a.xs[(m0 + m) * nb + b]), acc[m][g]);
      }
    }
  }
#pragma GCC unroll 2
  for (int g = 0; g < NG; ++g) {
    const index_t c0 = (g0 + g) * 16, lo = n0 > c0 ? n0 - c0 : 0, hi = n1 - c0 < 16 ? n1 - c0 : 16;
    if (hi <= lo) continue;
    const auto mk = static_cast<__mmask16>(((1u << hi) - 1u) & ~((1u << lo) - 1u));
    const __m512 bv = bias ? _mm512_maskz_loadu_ps(mk, bias + c0) : _mm512_setzero_ps();
#pragma GCC unroll 4
    for (int m = 0; m < MR; ++m) {
      __m512 v = acc[m][g];
      if (bias) v = _mm512_add_ps(v, bv);
      _mm512_mask_storeu_ps(y + (m0 + m) * p.N + c0, mk, v);
    }
  }
}

template <bool ZP>
void run(const Int4Job& j, const Act& a) {
  const Int4Packed& p = *j.w.packed;
  using Fn = void (*)(const Int4Packed&, const Act&, index_t, index_t, const float*, float*, index_t, index_t);
  static constexpr Fn k2[4] = {&tile<1, 2, ZP>, &tile<2, 2, ZP>, &tile<3, 2, ZP>, &tile<4, 2, ZP>};
  static constexpr Fn k1[4] = {&tile<1, 1, ZP>, &tile<2, 1, ZP>, &tile<3, 1, ZP>, &tile<4, 1, ZP>};
  const index_t ga = j.n0 / 16, ge = (j.n1 + 15) / 16;
  for (index_t g = ga; g < ge; g += 2) {
    const bool two = g + 1 < ge;
    for (index_t m = 0; m < j.M; m += 4) {
      const index_t mr = j.M - m < 4 ? j.M - m : 4;
      (two ? k2 : k1)[mr - 1](p, a, m, g, j.bias, j.y, j.n0, j.n1);
    }
  }
}

}  // namespace

void int4_matmul_q8(const Int4Job& j) {
  thread_local Act a;
  quantize(j.x, j.M, j.w.K, j.w.block, j.w.zp != nullptr, &a);
  if (j.w.zp) run<true>(j, a);
  else run<false>(j, a);
}

}  // namespace graphopt::kernels::avx512_vnni
