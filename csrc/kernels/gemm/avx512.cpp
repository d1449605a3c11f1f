// fp32 GEMM with AVX-512 FMA, and a bf16 GEMM for AVX-512 CPUs without
// AVX512-BF16 (bf16 pairs widened to fp32 by shifts, then FMA). Built with
// -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma.
//
// Micro-kernel: 6 rows x 4 panels (64 columns) of zmm accumulators; full tiles
// finish with the epilogue in registers (epilogue_avx512.h).
#include <immintrin.h>

#include "epilogue_avx512.h"

namespace graphopt::kernels::avx512 {
namespace {

// Lines ahead of the weight streams to prefetch into L1: a micro-tile reads NP panels, NP streams
// K * 64 bytes apart from L2, which the hardware prefetcher alone keeps behind. A/B at one thread,
// CPU time, DistilBERT's shapes at M = 1024: K = 768 4 % faster, K = 3072 7 % (and faster than a
// K-blocked variant with kc 128-384, tried and dropped: 74-75 % of the FMA peak against 79 %).
// Also tried and dropped: a K-blocked order that keeps a kc = 128 x 64-column weight block in L1 for
// all the row tiles of a task (partial sums through C, same bits): 64-71 % against 73-80 % at
// M = 1024; and unrolling the k loop by 4 (GCC then spills accumulators): 71 % against 77 %.
constexpr int kPrefetchLines = 8;

// pf / pf_lines: lines to pull into L2 for a later tile (TileDst::pf): one every second k-step from
// the start of the loop, whose first part runs in a copy of its own so that the rest carries no
// prefetch logic (a per-step countdown cost the kernel 2 % with weights in L2).
template <int MR, int NP>
__attribute__((always_inline)) inline void accumulate_f32(const float* A, index_t lda, const std::uint8_t* P,
                                                          index_t pb, index_t K, __m512 (&acc)[MR][NP],
                                                          const std::uint8_t* pf = nullptr, index_t pf_lines = 0) {
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NP; ++j) acc[i][j] = _mm512_setzero_ps();
  auto step = [&](index_t k, const std::uint8_t* b) __attribute__((always_inline)) {
    __m512 bv[NP];
#pragma GCC unroll 8
    for (int j = 0; j < NP; ++j) bv[j] = _mm512_load_ps(reinterpret_cast<const float*>(b + j * pb));
#pragma GCC unroll 8
    for (int j = 0; j < NP; ++j) _mm_prefetch(reinterpret_cast<const char*>(b + j * pb + kPrefetchLines * 64), _MM_HINT_T0);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m512 av = _mm512_set1_ps(A[i * lda + k]);
#pragma GCC unroll 8
      for (int j = 0; j < NP; ++j) acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
    }
  };
  const index_t k_pf = 2 * pf_lines < K ? 2 * pf_lines : K & ~static_cast<index_t>(1);
  for (index_t k = 0; k < k_pf; k += 2, pf += 64) {
    _mm_prefetch(reinterpret_cast<const char*>(pf), _MM_HINT_T1);
    step(k, P + k * 64);
    step(k + 1, P + (k + 1) * 64);
  }
  for (index_t k = k_pf; k < K; ++k) step(k, P + k * 64);
}

template <int MR, int NP>
__attribute__((always_inline)) inline void accumulate_bf16(const std::uint16_t* A, index_t lda,
                                                           const std::uint8_t* P, index_t pb, index_t K,
                                                           __m512 (&acc)[MR][NP]) {
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NP; ++j) acc[i][j] = _mm512_setzero_ps();
  const __m512i hi_mask = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
  const std::uint8_t* b = P;
  for (index_t k = 0; k < K; k += 2, b += 64) {
    __m512 b0[NP], b1[NP];
#pragma GCC unroll 8
    for (int j = 0; j < NP; ++j) {
      const __m512i v = _mm512_load_si512(reinterpret_cast<const void*>(b + j * pb));
      b0[j] = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
      b1[j] = _mm512_castsi512_ps(_mm512_and_si512(v, hi_mask));
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m512 a0 = _mm512_set1_ps(bf16_to_f32(A[i * lda + k]));
      const __m512 a1 = _mm512_set1_ps(k + 1 < K ? bf16_to_f32(A[i * lda + k + 1]) : 0.f);
#pragma GCC unroll 8
      for (int j = 0; j < NP; ++j) {
        acc[i][j] = _mm512_fmadd_ps(a0, b0[j], acc[i][j]);
        acc[i][j] = _mm512_fmadd_ps(a1, b1[j], acc[i][j]);
      }
    }
  }
}

template <int MR, int NP>
inline void store_tile(const __m512 (&acc)[MR][NP], float* tile) {
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NP; ++j) _mm512_store_ps(tile + i * kTileLd + j * 16, acc[i][j]);
}

// Any mr x np tile, stored to the tile buffer (edge tiles).
template <int MR, int NP>
struct MicroF32 {
  static void run(const float* A, index_t lda, const std::uint8_t* P, index_t pb, index_t K, float* tile) {
    __m512 acc[MR][NP];
    accumulate_f32<MR, NP>(A, lda, P, pb, K, acc);
    store_tile<MR, NP>(acc, tile);
  }
};

template <int MR, int NP>
struct MicroBf16 {
  static void run(const std::uint16_t* A, index_t lda, const std::uint8_t* P, index_t pb, index_t K, float* tile) {
    __m512 acc[MR][NP];
    accumulate_bf16<MR, NP>(A, lda, P, pb, K, acc);
    store_tile<MR, NP>(acc, tile);
  }
};

using F32Fn = void (*)(const float*, index_t, const std::uint8_t*, index_t, index_t, float*);
using Bf16Fn = void (*)(const std::uint16_t*, index_t, const std::uint8_t*, index_t, index_t, float*);

struct F32Traits {
  using AType = float;
  using AccT = float;
  static constexpr int MR = 6, NP = 4, NP_SMALL = 8;
  static constexpr bool kPrefetchNext = true;
  // Full tiles (and the 1-2 row GEMV tiles): the epilogue runs on the accumulator registers.
  template <Act A, OutType O, int R, int C>
  static void full(const float* Am, index_t lda, const std::uint8_t* P, index_t pb, index_t K, const TileDst& d) {
    __m512 acc[R][C];
    accumulate_f32<R, C>(Am, lda, P, pb, K, acc, d.pf, d.pf_lines);
    finish_f_regs<A, O, R, C>(acc, d);
  }
  using Plan = FusedFns<AType, AccT>;
  static Plan plan(const EpiResolved& e) { return fused_fns<F32Traits>(e); }
  static void micro(int mr, int np, const float* A, index_t lda, const std::uint8_t* P, index_t pb, index_t K,
                    float* tile) {
    static const MicroTable<F32Fn, MicroF32, MR, NP> big;
    static const MicroTable<F32Fn, MicroF32, 2, 8> small;
    (mr <= 2 ? small.get(mr, np) : big.get(mr, np))(A, lda, P, pb, K, tile);
  }
};

struct Bf16Traits {
  using AType = std::uint16_t;
  using AccT = float;
  static constexpr int MR = 6, NP = 2, NP_SMALL = 4;
  template <Act A, OutType O, int R, int C>
  static void full(const std::uint16_t* Am, index_t lda, const std::uint8_t* P, index_t pb, index_t K,
                   const TileDst& d) {
    __m512 acc[R][C];
    accumulate_bf16<R, C>(Am, lda, P, pb, K, acc);
    finish_f_regs<A, O, R, C>(acc, d);
  }
  using Plan = FusedFns<AType, AccT>;
  static Plan plan(const EpiResolved& e) { return fused_fns<Bf16Traits>(e); }
  static void micro(int mr, int np, const std::uint16_t* A, index_t lda, const std::uint8_t* P, index_t pb,
                    index_t K, float* tile) {
    static const MicroTable<Bf16Fn, MicroBf16, 6, 2> big;
    static const MicroTable<Bf16Fn, MicroBf16, 2, 4> small;
    (mr <= 2 ? small.get(mr, np) : big.get(mr, np))(A, lda, P, pb, K, tile);
  }
};

}  // namespace

void gemm_f32(const GemmArgs& g) { run_gemm<F32Traits>(g); }
void gemm_bf16(const GemmArgs& g) { run_gemm<Bf16Traits>(g); }

double peak_gops(int, double seconds) {
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i));
  const __m512 a = _mm512_set1_ps(1.0000001f), b = _mm512_set1_ps(0.9999999f);
  double t0 = omp_get_wtime(), t = t0;
  long long iters = 0;
  const long long chunk = 1 << 16;
  while (t - t0 < seconds) {
    for (long long n = 0; n < chunk; ++n) {
#pragma GCC unroll 12
      for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
    }
    iters += chunk;
    t = omp_get_wtime();
  }
  __m512 s = acc[0];
  for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, acc[i]);
  volatile float sink = _mm512_reduce_add_ps(s);
  (void)sink;
  return static_cast<double>(iters) * 12 * 16 * 2 / (t - t0) * 1e-9;
}

}  // namespace graphopt::kernels::avx512
