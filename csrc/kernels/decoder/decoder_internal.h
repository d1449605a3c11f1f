// Internal interface between the decoder-kernel front (decoder.cpp) and ISA TUs.
#pragma once
#include "graphopt/kernels/decoder.h"

namespace graphopt::kernels {

struct RMSNormJob { const float* x; const float* res; const float* gamma; float eps; index_t rows, N; float* y; float* sum_out; };
struct SiluJob { const float* x; index_t rows, I, ld; float* y; };  // ld: row stride of x; I == ld for plain SiLU
struct RotaryJob { const float* x; const float* cos; const float* sin; index_t rows, D; float* y; };

#define GRAPHOPT_DECODER_DECLS         \
  void rmsnorm(const RMSNormJob&);     \
  void silu(const SiluJob&);           \
  void silu_mul(const SiluJob&);       \
  void rotary(const RotaryJob&);

namespace ref { GRAPHOPT_DECODER_DECLS }
namespace avx512 { GRAPHOPT_DECODER_DECLS }
#undef GRAPHOPT_DECODER_DECLS

}  // namespace graphopt::kernels
