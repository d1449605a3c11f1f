// Internal interface between the GEMM front (gemm.cpp, ISA-neutral) and the
// per-ISA translation units. Declarations and trivially scalar helpers only.
#pragma once
#include <cstdint>

#include "graphopt/kernels/gemm.h"

namespace graphopt::kernels {

// The epilogue of one call, built in O(1) by the front (gemm.cpp). Per-column
// int8 terms come from the packed weights: the AVX-512 kernels combine them
// with a_zp/a_scale per 16-column panel; the scalar/AVX2 epilogues expand them
// into scale/coff arrays first (with_columns in driver.h).
struct EpiResolved {
  Act act = Act::none;
  OutType out = OutType::f32;
  float out_scale = 1.f;
  std::int32_t out_zp = 0;
  const float* bias = nullptr;          // N entries, or null (adds +0.f like a zero bias)
  const float* out_mul = nullptr;       // N entries, or null: act(y) * out_mul[n] before the store
  float a_scale = 1.f;                  // int8
  std::int32_t a_zp = 0;                // int8
  const float* wscale = nullptr;        // int8: w_scale[n], N entries
  const std::int32_t* wterm = nullptr;  // int8: K*w_zp[n] - colsum[n]
  const std::int32_t* wzp = nullptr;    // int8: w_zp[n]
  bool need_rowsum = false;             // int8: any w_zp != 0
  // int8, both or neither: per-row a_scale / a_zp (row m of the call), replacing a_scale / a_zp.
  const float* row_scale = nullptr;
  const std::int32_t* row_zp = nullptr;
  // Expanded per column (set by with_columns): a_scale * w_scale[n], a_zp * wterm[n], bias or 0.
  const float* scale = nullptr;
  const std::int32_t* coff = nullptr;
};

struct GemmArgs {
  const void* A = nullptr;
  index_t M = 0, lda = 0;
  const PackedWeights* W = nullptr;
  const EpiResolved* e = nullptr;
  void* C = nullptr;
  index_t ldc = 0;
};

using GemmFn = void (*)(const GemmArgs&);

// Cache sizes in bytes (sysconf, with defaults), read once.
struct CacheInfo { index_t l1d, l2, l3; };
const CacheInfo& cache_info();

// Threads a GEMM of this size should use (<= omp_get_max_threads()).
int gemm_threads(index_t M, index_t N, index_t K);

#define GRAPHOPT_GEMM_DECLS \
  void gemm_s8(const GemmArgs&);   \
  void gemm_bf16(const GemmArgs&); \
  void gemm_f32(const GemmArgs&);  \
  double peak_gops(int kind, double seconds);

// Not every namespace defines every function; the front only references the ones that exist.
namespace ref { GRAPHOPT_GEMM_DECLS }
namespace avx2 { GRAPHOPT_GEMM_DECLS }
namespace avx512 { GRAPHOPT_GEMM_DECLS }
namespace avx512_vnni { GRAPHOPT_GEMM_DECLS }
namespace avx512_bf16 { GRAPHOPT_GEMM_DECLS }
namespace amx {
GRAPHOPT_GEMM_DECLS
double stage_seconds(const PackedWeights& W, index_t M, bool stores, int reps);
}
#undef GRAPHOPT_GEMM_DECLS

// The 4x1-block sparse int8 GEMM (csrc/kernels/sparse): same arguments and epilogue as
// gemm_s8 on W.sparse() weights; and the ISA level it runs at now.
void sparse_gemm_s8(const GemmArgs& g);
Isa sparse_isa();

enum PeakKind : int { kPeakInt8Vnni = 0, kPeakInt8Avx2 = 1, kPeakBf16 = 2, kPeakF32Avx512 = 3, kPeakF32Avx2 = 4,
                       kPeakInt8Amx = 5, kPeakBf16Amx = 6 };

// Byte offset of element (k, c) (c = column inside the panel, 0..15) in a panel.
inline index_t panel_offset(PackLayout l, index_t k, index_t c) {
  switch (l) {
    case PackLayout::s8_k4: return (k >> 2) * 64 + c * 4 + (k & 3);
    case PackLayout::s16_k2: return ((k >> 1) * 32 + c * 2 + (k & 1)) * 2;
    case PackLayout::bf16_k2: return ((k >> 1) * 32 + c * 2 + (k & 1)) * 2;
    case PackLayout::f32_k1: return (k * 16 + c) * 4;
  }
  return 0;
}

}  // namespace graphopt::kernels
