// bf16 GEMM with AVX512-BF16 (vdpbf16ps), fp32 accumulation. Built with the
// AVX-512 flags plus -mavx512bf16.
//
// Micro-kernel: 6 rows x 4 panels of zmm fp32 accumulators; K consumed in
// pairs (bf16_k2 layout), one vdpbf16ps per row x panel per pair. Full tiles
// finish with the epilogue in registers (epilogue_avx512.h).
#include <immintrin.h>

#include "epilogue_avx512.h"

namespace graphopt::kernels::avx512_bf16 {
namespace {

template <int MR, int NP>
__attribute__((always_inline)) inline void accumulate(const std::uint16_t* A, index_t lda, const std::uint8_t* P,
                                                      index_t pb, index_t K, __m512 (&acc)[MR][NP]) {
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NP; ++j) acc[i][j] = _mm512_setzero_ps();
  const index_t KG = K >> 1;
  const std::uint8_t* b = P;
  for (index_t g = 0; g < KG; ++g, b += 64) {
    __m512bh bv[NP];
#pragma GCC unroll 8
    for (int j = 0; j < NP; ++j) bv[j] = (__m512bh)_mm512_load_si512(reinterpret_cast<const void*>(b + j * pb));
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      std::int32_t x;
      std::memcpy(&x, A + i * lda + 2 * g, 4);
      const __m512bh av = (__m512bh)_mm512_set1_epi32(x);
#pragma GCC unroll 8
      for (int j = 0; j < NP; ++j) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], av, bv[j]);
    }
  }
  if (K & 1) {
    __m512bh bv[NP];
#pragma GCC unroll 8
    for (int j = 0; j < NP; ++j) bv[j] = (__m512bh)_mm512_load_si512(reinterpret_cast<const void*>(b + j * pb));
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const std::int32_t x = A[i * lda + 2 * KG];
      const __m512bh av = (__m512bh)_mm512_set1_epi32(x);
#pragma GCC unroll 8
      for (int j = 0; j < NP; ++j) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], av, bv[j]);
    }
  }
}

// Any mr x np tile, stored to the tile buffer (edge tiles).
template <int MR, int NP>
struct Micro {
  static void run(const std::uint16_t* A, index_t lda, const std::uint8_t* P, index_t pb, index_t K, float* tile) {
    __m512 acc[MR][NP];
    accumulate<MR, NP>(A, lda, P, pb, K, acc);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < NP; ++j) _mm512_store_ps(tile + i * kTileLd + j * 16, acc[i][j]);
  }
};

using MicroFn = void (*)(const std::uint16_t*, index_t, const std::uint8_t*, index_t, index_t, float*);

struct Traits {
  using AType = std::uint16_t;
  using AccT = float;
  static constexpr int MR = 6, NP = 4, NP_SMALL = 8;
  // Full tiles (and the 1-2 row GEMV tiles): the epilogue runs on the accumulator registers.
  template <Act A, OutType O, int R, int C>
  static void full(const std::uint16_t* Am, index_t lda, const std::uint8_t* P, index_t pb, index_t K,
                   const TileDst& d) {
    __m512 acc[R][C];
    accumulate<R, C>(Am, lda, P, pb, K, acc);
    finish_f_regs<A, O, R, C>(acc, d);
  }
  using Plan = FusedFns<AType, AccT>;
  static Plan plan(const EpiResolved& e) { return fused_fns<Traits>(e); }
  static void micro(int mr, int np, const std::uint16_t* A, index_t lda, const std::uint8_t* P, index_t pb,
                    index_t K, float* tile) {
    static const MicroTable<MicroFn, Micro, 6, 4> big;
    static const MicroTable<MicroFn, Micro, 2, 8> small;
    (mr <= 2 ? small.get(mr, np) : big.get(mr, np))(A, lda, P, pb, K, tile);
  }
};

}  // namespace

void gemm_bf16(const GemmArgs& g) { run_gemm<Traits>(g); }

double peak_gops(int, double seconds) {
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i));
  const __m512bh a = (__m512bh)_mm512_set1_epi32(0x3f803f80), b = (__m512bh)_mm512_set1_epi32(0x00010001);
  double t0 = omp_get_wtime(), t = t0;
  long long iters = 0;
  const long long chunk = 1 << 16;
  while (t - t0 < seconds) {
    for (long long n = 0; n < chunk; ++n) {
#pragma GCC unroll 12
      for (int i = 0; i < 12; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
    }
    iters += chunk;
    t = omp_get_wtime();
  }
  __m512 s = acc[0];
  for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, acc[i]);
  volatile float sink = _mm512_reduce_add_ps(s);
  (void)sink;
  return static_cast<double>(iters) * 12 * 32 * 2 / (t - t0) * 1e-9;
}

}  // namespace graphopt::kernels::avx512_bf16
