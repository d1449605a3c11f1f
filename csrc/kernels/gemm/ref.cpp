// Scalar reference GEMMs: always built, no ISA flags. They read every packed
// layout and use the same blocking/epilogue driver as the SIMD paths, so they
// are also the oracle the tests compare the SIMD paths against.
#include "driver.h"

namespace graphopt::kernels::ref {
namespace {

template <PackLayout L>
inline std::int32_t load_w_int(const std::uint8_t* panel, index_t k, index_t c) {
  const std::uint8_t* p = panel + panel_offset(L, k, c);
  if constexpr (L == PackLayout::s8_k4) return static_cast<std::int8_t>(*p);
  else { std::int16_t v; std::memcpy(&v, p, 2); return v; }
}

template <PackLayout L>
struct S8 {
  using AType = std::uint8_t;
  using AccT = std::int32_t;
  static constexpr int MR = 4, NP = 1, NP_SMALL = 1;
  static void micro(int mr, int np, const std::uint8_t* A, index_t lda, const std::uint8_t* panel,
                    index_t pb, index_t K, std::int32_t* tile) {
    for (int i = 0; i < mr; ++i)
      for (int j = 0; j < np * 16; ++j) {
        const std::uint8_t* P = panel + (j / 16) * pb;
        std::int32_t s = 0;
        for (index_t k = 0; k < K; ++k) s += static_cast<std::int32_t>(A[i * lda + k]) * load_w_int<L>(P, k, j % 16);
        tile[i * kTileLd + j] = s;
      }
  }
};

template <class AT, PackLayout L>
struct F {
  using AType = AT;
  using AccT = float;
  static constexpr int MR = 4, NP = 1, NP_SMALL = 1;
  static float a_at(const AT* A, index_t i) {
    if constexpr (sizeof(AT) == 2) return bf16_to_f32(A[i]);
    else return A[i];
  }
  static float w_at(const std::uint8_t* P, index_t k, index_t c) {
    const std::uint8_t* p = P + panel_offset(L, k, c);
    if constexpr (L == PackLayout::bf16_k2) { std::uint16_t h; std::memcpy(&h, p, 2); return bf16_to_f32(h); }
    else { float f; std::memcpy(&f, p, 4); return f; }
  }
  static void micro(int mr, int np, const AT* A, index_t lda, const std::uint8_t* panel, index_t pb,
                    index_t K, float* tile) {
    for (int i = 0; i < mr; ++i)
      for (int j = 0; j < np * 16; ++j) {
        const std::uint8_t* P = panel + (j / 16) * pb;
        float s = 0.f;
        for (index_t k = 0; k < K; ++k) s += a_at(A, i * lda + k) * w_at(P, k, j % 16);
        tile[i * kTileLd + j] = s;
      }
  }
};

}  // namespace

void gemm_s8(const GemmArgs& g) {
  if (g.W->layout() == PackLayout::s8_k4) run_gemm<S8<PackLayout::s8_k4>>(g);
  else run_gemm<S8<PackLayout::s16_k2>>(g);
}
void gemm_bf16(const GemmArgs& g) { run_gemm<F<std::uint16_t, PackLayout::bf16_k2>>(g); }
void gemm_f32(const GemmArgs& g) { run_gemm<F<float, PackLayout::f32_k1>>(g); }

}  // namespace graphopt::kernels::ref
