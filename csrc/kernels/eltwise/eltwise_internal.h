// Internal interface between the element-wise front (eltwise.cpp) and ISA TUs.
#pragma once
#include "graphopt/kernels/eltwise.h"

namespace graphopt::kernels {

enum class UnaryOp { erf, tanh, gelu_erf, gelu_tanh };

// Optional u8 copy of a LayerNorm output: q = saturate(round_half_even(y / scale) + zero_point).
struct QuantOut { std::uint8_t* q; float scale; std::int32_t zero_point; };

struct QuantJob { const float* x; void* q; QuantAxis ax; bool is_u8; };
struct DequantJob { const void* q; float* y; QuantAxis ax; bool is_u8; };
struct RequantJob { const std::int32_t* x; void* q; QuantAxis ax; bool is_u8; };
struct LayerNormJob { const float* x; const float* res; const float* gamma; const float* beta; float eps; index_t rows, N; float* y; float* sum_out; QuantOut qo; };
struct SoftmaxJob { const float* x; const float* mask; index_t mask_rows, rows, N; float* y; };
struct UnaryJob { const float* x; float* y; index_t n; UnaryOp op; };
struct CvtJob { const void* x; void* y; index_t n; bool to_bf16; };
struct MinMaxJob { const float* x; index_t n; float* lo; float* hi; };

#define GRAPHOPT_ELTWISE_DECLS                \
  void quantize(const QuantJob&);             \
  void dequantize(const DequantJob&);         \
  void requantize(const RequantJob&);         \
  void layernorm(const LayerNormJob&);        \
  void softmax(const SoftmaxJob&);            \
  void unary(const UnaryJob&);                \
  void convert(const CvtJob&);                \
  void minmax(const MinMaxJob&);

namespace ref { GRAPHOPT_ELTWISE_DECLS }
namespace avx2 { GRAPHOPT_ELTWISE_DECLS }
namespace avx512 { GRAPHOPT_ELTWISE_DECLS }
#undef GRAPHOPT_ELTWISE_DECLS

}  // namespace graphopt::kernels
