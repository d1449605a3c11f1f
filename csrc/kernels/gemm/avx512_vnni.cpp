// int8 GEMM u8 x s8 -> s32 with AVX-512 VNNI (vpdpbusd). Built with
// -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni.
//
// Micro-kernel: MR=6 rows x NP=4 panels (64 columns) of zmm accumulators
// (24 zmm), K consumed in groups of 4 (one vpdpbusd per row x panel). Each
// k-group loads one 64-byte zmm per panel and broadcasts 4 activation bytes
// per row. For mr <= 2 the kernel widens to 8 panels to hide latency. Full
// tiles finish with the epilogue in registers (epilogue_avx512.h).
#include <immintrin.h>

#include "epilogue_avx512.h"

namespace graphopt::kernels::avx512_vnni {
namespace {

// Accumulators are typed as GCC's native int32x16 vector: with __m512i
// (int64x8) every _mm512_dpbusd_epi32 round-trips through casts and GCC 12
// spills the 24 accumulators to the stack on each k-step (2.3x slower).
typedef int v16si __attribute__((vector_size(64)));

template <int MR, int NP>
__attribute__((always_inline)) inline void accumulate(const std::uint8_t* A, index_t lda, const std::uint8_t* P,
                                                      index_t pb, index_t K, v16si (&acc)[MR][NP]) {
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NP; ++j) acc[i][j] = v16si{};
  const index_t KG = K >> 2;
  const std::uint8_t* b = P;
  for (index_t g = 0; g < KG; ++g, b += 64) {
    v16si bv[NP];
#pragma GCC unroll 8
    for (int j = 0; j < NP; ++j) bv[j] = *reinterpret_cast<const v16si*>(b + j * pb);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      std::int32_t x;
      std::memcpy(&x, A + i * lda + 4 * g, 4);
      const v16si av = v16si{} + x;
#pragma GCC unroll 8
      for (int j = 0; j < NP; ++j) acc[i][j] = __builtin_ia32_vpdpbusd_v16si(acc[i][j], av, bv[j]);
    }
  }
  if (K & 3) {  // ragged K: the packed weights are zero-padded; read only valid A bytes
    v16si bv[NP];
#pragma GCC unroll 8
    for (int j = 0; j < NP; ++j) bv[j] = *reinterpret_cast<const v16si*>(b + j * pb);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      // Byte-wise (no memcpy call: a call would force the accumulators out of registers).
      const std::uint8_t* a = A + i * lda + 4 * KG;
      std::uint32_t x = a[0];
      if ((K & 3) > 1) x |= static_cast<std::uint32_t>(a[1]) << 8;
      if ((K & 3) > 2) x |= static_cast<std::uint32_t>(a[2]) << 16;
      const v16si av = v16si{} + static_cast<int>(x);
#pragma GCC unroll 8
      for (int j = 0; j < NP; ++j) acc[i][j] = __builtin_ia32_vpdpbusd_v16si(acc[i][j], av, bv[j]);
    }
  }
}

// Any mr x np tile, stored to the tile buffer (edge tiles).
template <int MR, int NP>
struct Micro {
  static void run(const std::uint8_t* A, index_t lda, const std::uint8_t* P, index_t pb, index_t K,
                  std::int32_t* tile) {
    v16si acc[MR][NP];
    accumulate<MR, NP>(A, lda, P, pb, K, acc);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < NP; ++j) *reinterpret_cast<v16si*>(tile + i * kTileLd + j * 16) = acc[i][j];
  }
};

using MicroFn = void (*)(const std::uint8_t*, index_t, const std::uint8_t*, index_t, index_t, std::int32_t*);

struct Traits {
  using AType = std::uint8_t;
  using AccT = std::int32_t;
  static constexpr int MR = 6, NP = 4, NP_SMALL = 8;
  // Full tiles (and the 1-2 row GEMV tiles): the epilogue runs on the accumulator registers.
  template <Act A, OutType O, int R, int C>
  static void full(const std::uint8_t* Am, index_t lda, const std::uint8_t* P, index_t pb, index_t K,
                   const TileDst& d) {
    v16si acc[R][C];
    accumulate<R, C>(Am, lda, P, pb, K, acc);
    finish_s8_regs<A, O, R, C>(acc, d);
  }
  using Plan = FusedFns<AType, AccT>;
  static Plan plan(const EpiResolved& e) { return fused_fns<Traits>(e); }
  static void micro(int mr, int np, const std::uint8_t* A, index_t lda, const std::uint8_t* P, index_t pb,
                    index_t K, std::int32_t* tile) {
    static const MicroTable<MicroFn, Micro, 6, 4> big;
    static const MicroTable<MicroFn, Micro, 2, 8> small;
    (mr <= 2 ? small.get(mr, np) : big.get(mr, np))(A, lda, P, pb, K, tile);
  }
};

}  // namespace

void gemm_s8(const GemmArgs& g) { run_gemm<Traits>(g); }

double peak_gops(int, double seconds) {
  __m512i acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_epi32(i);
  const __m512i a = _mm512_set1_epi32(0x01010101), b = _mm512_set1_epi32(0x01ff01ff);
  double t0 = omp_get_wtime(), t = t0;
  long long iters = 0;
  const long long chunk = 1 << 16;
  while (t - t0 < seconds) {
    for (long long n = 0; n < chunk; ++n) {
#pragma GCC unroll 12
      for (int i = 0; i < 12; ++i) acc[i] = _mm512_dpbusd_epi32(acc[i], a, b);
    }
    iters += chunk;
    t = omp_get_wtime();
  }
  __m512i s = acc[0];
  for (int i = 1; i < 12; ++i) s = _mm512_add_epi32(s, acc[i]);
  volatile int sink = _mm512_reduce_add_epi32(s);
  (void)sink;
  return static_cast<double>(iters) * 12 * 64 * 2 / (t - t0) * 1e-9;
}

}  // namespace graphopt::kernels::avx512_vnni
