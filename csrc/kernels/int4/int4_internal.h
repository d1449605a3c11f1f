// Internal interface between the int4 front (int4.cpp) and its ISA translation units.
#pragma once
#include "graphopt/kernels/int4.h"

namespace graphopt::kernels {

struct Int4Job {
  const float* x;
  index_t M;
  Int4Weights w;
  const float* bias;
  float* y;
  index_t n0, n1;
};

namespace ref { void int4_matmul(const Int4Job&); }
namespace avx512 { void int4_matmul(const Int4Job&); }

// Zero point of column n, block b (8 when the weights have none).
inline int int4_zp(const Int4Weights& w, index_t n, index_t b) {
  if (!w.zp) return 8;
  const index_t nb = (w.K + w.block - 1) / w.block;
  const std::uint8_t v = w.zp[n * ((nb + 1) / 2) + b / 2];
  return (b & 1) ? (v >> 4) : (v & 0x0F);
}

}  // namespace graphopt::kernels
