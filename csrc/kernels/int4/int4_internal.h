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

namespace ref {
void int4_matmul(const Int4Job&);
// The int8-activation path's reference (reads the MatMulNBits layout; what AVX-512 VNNI computes,
// in the same order: bit for bit equal).
void int4_matmul_q8(const Int4Job&);
}  // namespace ref
namespace avx512 { void int4_matmul(const Int4Job&); }
namespace avx512_vnni { void int4_matmul_q8(const Int4Job&); }  // reads j.w.packed

// Zero point of column n, block b (8 when the weights have none).
inline int int4_zp(const Int4Weights& w, index_t n, index_t b) {
  if (!w.zp) return 8;
  const index_t nb = (w.K + w.block - 1) / w.block;
  const std::uint8_t v = w.zp[n * ((nb + 1) / 2) + b / 2];
  return (b & 1) ? (v >> 4) : (v & 0x0F);
}

// Code of column n at k (0..15) in the MatMulNBits layout.
inline int int4_code(const Int4Weights& w, index_t n, index_t k) {
  const index_t nb = (w.K + w.block - 1) / w.block, b = k / w.block, i = k - b * w.block;
  const std::uint8_t v = w.q[(n * nb + b) * (w.block / 2) + i / 2];
  return (i & 1) ? (v >> 4) : (v & 0x0F);
}

}  // namespace graphopt::kernels
