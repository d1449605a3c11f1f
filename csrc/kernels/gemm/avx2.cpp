// AVX2 + FMA GEMMs. Built with -mavx2 -mfma.
//
// int8: exact widening path. Weights are packed as s16 pairs (s16_k2), the
// activation pair (a[k], a[k+1]) is zero-extended to two s16 lanes, and
// vpmaddwd forms a[k]*w[k] + a[k+1]*w[k+1] in s32 without the s16 saturation
// that vpmaddubsw would hit (255*127*2 > 32767).
// fp32: FMA. bf16: pairs widened to fp32 by shifts, then FMA.
// Micro-kernels: 6 rows x 1 panel (2 ymm = 16 columns), 2 panels for mr <= 2.
#include <immintrin.h>

#include "driver.h"

namespace graphopt::kernels::avx2 {
namespace {

template <int MR, int NP>
struct MicroS8 {
  static void run(const std::uint8_t* A, index_t lda, const std::uint8_t* P, index_t pb, index_t K,
                  std::int32_t* tile) {
    __m256i acc[MR][2 * NP];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < 2 * NP; ++j) acc[i][j] = _mm256_setzero_si256();
    const std::uint8_t* b = P;
    for (index_t k = 0; k < K; k += 2, b += 64) {
      __m256i bv[2 * NP];
#pragma GCC unroll 8
      for (int j = 0; j < NP; ++j) {
        bv[2 * j] = _mm256_load_si256(reinterpret_cast<const __m256i*>(b + j * pb));
        bv[2 * j + 1] = _mm256_load_si256(reinterpret_cast<const __m256i*>(b + j * pb + 32));
      }
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        const std::uint8_t* a = A + i * lda + k;
        const std::int32_t x = static_cast<std::int32_t>(a[0]) | (k + 1 < K ? static_cast<std::int32_t>(a[1]) << 16 : 0);
        const __m256i av = _mm256_set1_epi32(x);
#pragma GCC unroll 8
        for (int j = 0; j < 2 * NP; ++j) acc[i][j] = _mm256_add_epi32(acc[i][j], _mm256_madd_epi16(av, bv[j]));
      }
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < 2 * NP; ++j)
        _mm256_store_si256(reinterpret_cast<__m256i*>(tile + i * kTileLd + j * 8), acc[i][j]);
  }
};

template <int MR, int NP>
struct MicroF32 {
  static void run(const float* A, index_t lda, const std::uint8_t* P, index_t pb, index_t K, float* tile) {
    __m256 acc[MR][2 * NP];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < 2 * NP; ++j) acc[i][j] = _mm256_setzero_ps();
    const std::uint8_t* b = P;
    for (index_t k = 0; k < K; ++k, b += 64) {
      __m256 bv[2 * NP];
#pragma GCC unroll 8
      for (int j = 0; j < NP; ++j) {
        bv[2 * j] = _mm256_load_ps(reinterpret_cast<const float*>(b + j * pb));
        bv[2 * j + 1] = _mm256_load_ps(reinterpret_cast<const float*>(b + j * pb + 32));
      }
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        const __m256 av = _mm256_broadcast_ss(A + i * lda + k);
#pragma GCC unroll 8
        for (int j = 0; j < 2 * NP; ++j) acc[i][j] = _mm256_fmadd_ps(av, bv[j], acc[i][j]);
      }
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < 2 * NP; ++j) _mm256_store_ps(tile + i * kTileLd + j * 8, acc[i][j]);
  }
};

template <int MR, int NP>
struct MicroBf16 {
  static void run(const std::uint16_t* A, index_t lda, const std::uint8_t* P, index_t pb, index_t K, float* tile) {
    __m256 acc[MR][2 * NP];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < 2 * NP; ++j) acc[i][j] = _mm256_setzero_ps();
    const __m256i hi_mask = _mm256_set1_epi32(static_cast<int>(0xffff0000u));
    const std::uint8_t* b = P;
    for (index_t k = 0; k < K; k += 2, b += 64) {
      __m256 b0[2 * NP], b1[2 * NP];
#pragma GCC unroll 8
      for (int j = 0; j < 2 * NP; ++j) {
        const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(b + (j / 2) * pb + (j % 2) * 32));
        b0[j] = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
        b1[j] = _mm256_castsi256_ps(_mm256_and_si256(v, hi_mask));
      }
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        const __m256 a0 = _mm256_set1_ps(bf16_to_f32(A[i * lda + k]));
        const __m256 a1 = _mm256_set1_ps(k + 1 < K ? bf16_to_f32(A[i * lda + k + 1]) : 0.f);
#pragma GCC unroll 8
        for (int j = 0; j < 2 * NP; ++j) {
          acc[i][j] = _mm256_fmadd_ps(a0, b0[j], acc[i][j]);
          acc[i][j] = _mm256_fmadd_ps(a1, b1[j], acc[i][j]);
        }
      }
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < 2 * NP; ++j) _mm256_store_ps(tile + i * kTileLd + j * 8, acc[i][j]);
  }
};

template <class AT, class AT2, template <int, int> class Micro, int MRX, int NPX, int NPS>
struct Traits {
  using AType = AT;
  using AccT = AT2;
  using Fn = void (*)(const AT*, index_t, const std::uint8_t*, index_t, index_t, AT2*);
  static constexpr int MR = MRX, NP = NPX, NP_SMALL = NPS;
  static void micro(int mr, int np, const AT* A, index_t lda, const std::uint8_t* P, index_t pb, index_t K,
                    AccT* tile) {
    static const MicroTable<Fn, Micro, MRX, NPX> big;
    static const MicroTable<Fn, Micro, 2, NPS> small;
    (mr <= 2 ? small.get(mr, np) : big.get(mr, np))(A, lda, P, pb, K, tile);
  }
};

using S8Traits = Traits<std::uint8_t, std::int32_t, MicroS8, 6, 1, 2>;
using F32Traits = Traits<float, float, MicroF32, 6, 1, 2>;
using Bf16Traits = Traits<std::uint16_t, float, MicroBf16, 4, 1, 2>;

}  // namespace

void gemm_s8(const GemmArgs& g) { run_gemm<S8Traits>(g); }
void gemm_f32(const GemmArgs& g) { run_gemm<F32Traits>(g); }
void gemm_bf16(const GemmArgs& g) { run_gemm<Bf16Traits>(g); }

double peak_gops(int kind, double seconds) {
  double t0 = omp_get_wtime(), t = t0;
  long long iters = 0;
  const long long chunk = 1 << 16;
  if (kind == kPeakInt8Avx2) {
    __m256i acc[12];
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_epi32(i);
    const __m256i a = _mm256_set1_epi32(0x00010001), b = _mm256_set1_epi32(0x00020003);
    while (t - t0 < seconds) {
      for (long long n = 0; n < chunk; ++n) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; ++i) acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(a, b));
      }
      iters += chunk;
      t = omp_get_wtime();
    }
    __m256i s = acc[0];
    for (int i = 1; i < 12; ++i) s = _mm256_add_epi32(s, acc[i]);
    volatile int sink = _mm256_extract_epi32(s, 0);
    (void)sink;
    return static_cast<double>(iters) * 12 * 16 * 2 / (t - t0) * 1e-9;
  }
  __m256 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(static_cast<float>(i));
  const __m256 a = _mm256_set1_ps(1.0000001f), b = _mm256_set1_ps(0.9999999f);
  while (t - t0 < seconds) {
    for (long long n = 0; n < chunk; ++n) {
#pragma GCC unroll 12
      for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
    }
    iters += chunk;
    t = omp_get_wtime();
  }
  __m256 s = acc[0];
  for (int i = 1; i < 12; ++i) s = _mm256_add_ps(s, acc[i]);
  volatile float sink = _mm256_cvtss_f32(s);
  (void)sink;
  return static_cast<double>(iters) * 12 * 8 * 2 / (t - t0) * 1e-9;
}

}  // namespace graphopt::kernels::avx2
