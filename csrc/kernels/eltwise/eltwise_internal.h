// Internal interface between the element-wise front (eltwise.cpp) and ISA TUs.
#pragma once
#include <cmath>

#include "graphopt/kernels/eltwise.h"

namespace graphopt::kernels {

enum class UnaryOp { erf, tanh, gelu_erf, gelu_tanh };

// Optional u8 copy of a LayerNorm output: q = saturate(round_half_even(y / scale) + zero_point), or,
// with row_scale/row_zp, each row on its own dynamic grid (quantize_rows_dynamic_u8's).
struct QuantOut {
  std::uint8_t* q;
  float scale;
  std::int32_t zero_point;
  float* row_scale = nullptr;
  std::int32_t* row_zp = nullptr;
};

// The dynamic u8 grid of a range [lo, hi] that includes 0: scale = (hi - lo) / 255 (1 when that is
// not > 0), zero_point = clamp(nearbyint(-lo / scale), 0, 255). One home for the per-tensor and
// the per-row paths.
inline void dynamic_u8_grid(float lo, float hi, float* scale, std::int32_t* zero_point) {
  float sc = (hi - lo) / 255.f;
  if (!(sc > 0.f)) sc = 1.f;  // all-zero (or non-finite) range: any scale represents it
  const float z = std::nearbyint(-lo / sc);  // clamp in float first: a NaN range (NaN in x) gives 0, not UB
  *scale = sc;
  *zero_point = z >= 0.f ? (z <= 255.f ? static_cast<std::int32_t>(z) : 255) : 0;
}

struct QuantJob { const float* x; void* q; QuantAxis ax; bool is_u8; };
struct DequantJob { const void* q; float* y; QuantAxis ax; bool is_u8; };
struct RequantJob { const std::int32_t* x; void* q; QuantAxis ax; bool is_u8; };
struct LayerNormJob { const float* x; const float* res; const float* gamma; const float* beta; float eps; index_t rows, N; float* y; float* sum_out; QuantOut qo; };
struct SoftmaxJob { const float* x; const float* mask; index_t mask_rows, rows, N; float* y; };
struct UnaryJob { const float* x; float* y; index_t n; UnaryOp op; };
struct CvtJob { const void* x; void* y; index_t n; bool to_bf16; };
struct MinMaxJob { const float* x; index_t n; float* lo; float* hi; };
struct DynRowsJob { const float* x; index_t rows, n; std::uint8_t* q; float* scale; std::int32_t* zp; };

#define GRAPHOPT_ELTWISE_DECLS                \
  void quantize(const QuantJob&);             \
  void dequantize(const DequantJob&);         \
  void requantize(const RequantJob&);         \
  void layernorm(const LayerNormJob&);        \
  void softmax(const SoftmaxJob&);            \
  void unary(const UnaryJob&);                \
  void convert(const CvtJob&);                \
  void minmax(const MinMaxJob&);             \
  void quantize_rows_dynamic(const DynRowsJob&);

namespace ref { GRAPHOPT_ELTWISE_DECLS }
namespace avx2 { GRAPHOPT_ELTWISE_DECLS }
namespace avx512 { GRAPHOPT_ELTWISE_DECLS }
#undef GRAPHOPT_ELTWISE_DECLS

}  // namespace graphopt::kernels
