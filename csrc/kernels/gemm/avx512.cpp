// fp32 GEMM with AVX-512 FMA, and a bf16 GEMM for AVX-512 CPUs without
// AVX512-BF16 (bf16 pairs widened to fp32 by shifts, then FMA). Built with
// -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma.
//
// Micro-kernel: 6 rows x 4 panels (64 columns) of zmm accumulators; full tiles
// finish with the epilogue in registers (epilogue_avx512.h).
#include <immintrin.h>

#include <new>

#include "epilogue_avx512.h"

namespace graphopt::kernels::avx512 {
namespace {

// acc = init (rows ldi floats apart; null: zeros), then acc += A[:, k] * B[k, :] for k = 0..K-1 in
// order: a K-blocked call that stores and reloads the sums between blocks gives the same bits.
template <int MR, int NP>
__attribute__((always_inline)) inline void accumulate_f32(const float* A, index_t lda, const std::uint8_t* P,
                                                          index_t pb, index_t K, __m512 (&acc)[MR][NP],
                                                          const float* init = nullptr, index_t ldi = 0) {
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NP; ++j) acc[i][j] = init ? _mm512_load_ps(init + i * ldi + 16 * j) : _mm512_setzero_ps();
  const std::uint8_t* b = P;
  for (index_t k = 0; k < K; ++k, b += 64) {
    __m512 bv[NP];
#pragma GCC unroll 8
    for (int j = 0; j < NP; ++j) bv[j] = _mm512_load_ps(reinterpret_cast<const float*>(b + j * pb));
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m512 av = _mm512_set1_ps(A[i * lda + k]);
#pragma GCC unroll 8
      for (int j = 0; j < NP; ++j) acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
    }
  }
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
  // Full tiles (and the 1-2 row GEMV tiles): the epilogue runs on the accumulator registers.
  template <Act A, OutType O, int R, int C>
  static void full(const float* Am, index_t lda, const std::uint8_t* P, index_t pb, index_t K, const TileDst& d) {
    __m512 acc[R][C];
    accumulate_f32<R, C>(Am, lda, P, pb, K, acc);
    finish_f_regs<A, O, R, C>(acc, d);
  }
  using Plan = FusedFns<AType, AccT>;
  static Plan plan(const EpiResolved& e) { return fused_fns<F32Traits>(e); }
  static void micro(int mr, int np, const float* A, index_t lda, const std::uint8_t* P, index_t pb, index_t K,
                    float* tile) {
    static const MicroTable<F32Fn, MicroF32, 6, 4> big;
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

// ---------------------------------------------------------------- K-blocked fp32

// Calls with many rows and a long K run K-blocked: a 4-panel x kKc slice of the weights (64 KB)
// stays near the core while every row micro-tile of the task passes over it, instead of streaming
// all K rows of 4 panels (768 KB at K = 3072) from L2 for each micro-tile, and the row block is
// sized by kKc, not K (42 rows at K = 3072 unblocked). 1024 x 3072 x 768 at one thread, CPU time:
// 71-72 -> 74-75 % of the FMA peak; kKc = 128 / 384 measured 71-74 %. The partial sums of a task
// (<= kMbMax rows x its panels) wait in a per-thread buffer in L2 between k-blocks; the last block
// adds its products to them and finishes with the fused epilogue in registers. Same FMA order per
// element as the unblocked kernel, so the same bits.
constexpr index_t kKc = 256;
constexpr index_t kMbMax = 192;
constexpr index_t kMinRows = 16;  // below this, B is read about once anyway: the unblocked kernel
constexpr index_t kMinK = 2048;   // at K = 768 the unblocked kernel is faster (80 vs 76 % of peak)

// Any mr x np tile: sums = init (null: zeros; rows ldi apart) + this k-block's products, stored to
// out (rows ld apart).
template <int MR, int NP>
struct PartialF32 {
  static void run(const float* A, index_t lda, const std::uint8_t* P, index_t pb, index_t kc, const float* init,
                  index_t ldi, float* out, index_t ld) {
    __m512 acc[MR][NP];
    accumulate_f32<MR, NP>(A, lda, P, pb, kc, acc, init, ldi);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < NP; ++j) _mm512_store_ps(out + i * ld + j * 16, acc[i][j]);
  }
};
using PartialFn = void (*)(const float*, index_t, const std::uint8_t*, index_t, index_t, const float*, index_t, float*,
                           index_t);

// The last k-block of a full MR x NP tile, finished in registers.
using LastFn = void (*)(const float*, index_t, const std::uint8_t*, index_t, index_t, const float*, index_t,
                        const TileDst&);
template <Act A, OutType O>
void last_f32(const float* Am, index_t lda, const std::uint8_t* P, index_t pb, index_t kc, const float* init,
              index_t ldi, const TileDst& d) {
  __m512 acc[F32Traits::MR][F32Traits::NP];
  accumulate_f32<F32Traits::MR, F32Traits::NP>(Am, lda, P, pb, kc, acc, init, ldi);
  finish_f_regs<A, O, F32Traits::MR, F32Traits::NP>(acc, d);
}
template <Act A>
LastFn last_for_out(OutType o) {
  switch (o) {
    case OutType::f32: return &last_f32<A, OutType::f32>;
    case OutType::bf16: return &last_f32<A, OutType::bf16>;
    case OutType::u8: return &last_f32<A, OutType::u8>;
    case OutType::s8: return &last_f32<A, OutType::s8>;
    case OutType::s32: return nullptr;  // rejected by the front (check_gemm)
  }
  return nullptr;
}
LastFn last_for(const EpiResolved& e) {
  switch (e.act) {
    case Act::none: return last_for_out<Act::none>(e.out);
    case Act::relu: return last_for_out<Act::relu>(e.out);
    case Act::gelu_erf: return last_for_out<Act::gelu_erf>(e.out);
    case Act::gelu_tanh: return last_for_out<Act::gelu_tanh>(e.out);
  }
  return nullptr;
}

// This thread's partial-sum buffer, kept between calls (no page faults per call).
float* partial_buffer(std::size_t floats) {
  struct Buf {
    float* p = nullptr;
    std::size_t n = 0;
    ~Buf() { ::operator delete(p, std::align_val_t(64)); }
  };
  thread_local Buf b;
  if (b.n < floats) {
    ::operator delete(b.p, std::align_val_t(64));
    b.p = static_cast<float*>(::operator new(floats * sizeof(float), std::align_val_t(64)));
    b.n = floats;
  }
  return b.p;
}

struct KbCtx {
  const float* A;
  index_t lda;
  const PackedWeights* W;
  const EpiResolved* e;
  void* C;
  index_t ldc;
  FusedFns<float, float> plan;
  LastFn last;
  TaskGrid g;
  index_t M, K, N, P;
};

void kb_task(void* vctx, std::int64_t t) {
  constexpr int MR = F32Traits::MR, NP = F32Traits::NP;
  static const MicroTable<PartialFn, PartialF32, MR, NP> partial;
  const KbCtx& c = *static_cast<const KbCtx*>(vctx);
  const index_t p0 = (t / c.g.n_mb) * c.g.GP, p1 = p0 + c.g.GP < c.P ? p0 + c.g.GP : c.P;
  const index_t m0 = (t % c.g.n_mb) * c.g.MB, m1 = m0 + c.g.MB < c.M ? m0 + c.g.MB : c.M;
  const index_t pb = c.W->panel_bytes();
  const index_t ld = (p1 - p0) * 16;
  float* buf = partial_buffer(static_cast<std::size_t>((m1 - m0) * ld));
  alignas(64) float tile[MR * kTileLd];
  for (index_t kb = 0; kb < c.K; kb += kKc) {
    const index_t kc = c.K - kb < kKc ? c.K - kb : kKc;
    const bool first = kb == 0, last = kb + kc == c.K;
    for (index_t p = p0; p < p1; p += NP) {
      const int np = static_cast<int>(p1 - p < NP ? p1 - p : NP);
      const index_t n0 = p * 16;
      const int cols = static_cast<int>(c.N - n0 < np * 16 ? c.N - n0 : np * 16);
      const std::uint8_t* panel = c.W->panel(p) + kb * 64;
      for (index_t m = m0; m < m1; m += MR) {
        const int mr = static_cast<int>(m1 - m < MR ? m1 - m : MR);
        const float* Am = c.A + m * c.lda + kb;
        float* sums = buf + (m - m0) * ld + (p - p0) * 16;
        const float* init = first ? nullptr : sums;
        if (!last) {
          partial.get(mr, np)(Am, c.lda, panel, pb, kc, init, ld, sums, ld);
          continue;
        }
        const TileDst d{c.e, c.C, c.ldc, m, n0, cols, nullptr};
        if (mr == MR && np == NP) {
          c.last(Am, c.lda, panel, pb, kc, init, ld, d);
        } else {
          partial.get(mr, np)(Am, c.lda, panel, pb, kc, init, ld, tile, kTileLd);
          c.plan.edge(tile, mr, np, d);
        }
      }
    }
  }
}

void gemm_f32_kblocked(const GemmArgs& g) {
  const PackedWeights& W = *g.W;
  const index_t M = g.M, K = W.K(), N = W.N(), P = W.panels();
  KbCtx c{static_cast<const float*>(g.A), g.lda, &W, g.e, g.C, g.ldc, F32Traits::plan(*g.e), last_for(*g.e),
          task_grid(M, kKc, P, W.panel_bytes(), sizeof(float), F32Traits::MR, F32Traits::NP, gemm_threads(M, N, K),
                    kMbMax),
          M, K, N, P};
  parallel_tasks(c.g.ntasks, c.g.nt, &kb_task, &c);
}

}  // namespace

void gemm_f32(const GemmArgs& g) {
  if (g.M >= kMinRows && g.W->K() >= kMinK) gemm_f32_kblocked(g);
  else run_gemm<F32Traits>(g);
}
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
