// Weight-only int4 matrix multiply in onnxruntime's MatMulNBits layout (bits=4):
//   y[m, n] = sum_k x[m, k] * (q[n, k] - zp[n, b]) * scale[n, b] + bias[n],   b = k / block
// q: uint8 [N, ceil(K/block), block/2], two values per byte (element 2j in the low nibble);
// scale: float [N * ceil(K/block)]; zp: uint8 [N * ceil(ceil(K/block)/2)] packed the same way
// (null: 8, the symmetric default). The weights are read where they are (a memory-mapped
// file works): nothing is packed or copied at compile time.
#pragma once
#include <cstdint>

#include "graphopt/status.h"
#include "graphopt/tensor_view.h"

namespace graphopt::kernels {

struct Int4Weights {
  const std::uint8_t* q = nullptr;
  const float* scale = nullptr;
  const std::uint8_t* zp = nullptr;  // optional
  index_t K = 0, N = 0, block = 32;
};

// Columns [n0, n1) of y [M, N] (row stride N) for all M rows of x [M, K]; single-threaded
// (the runtime splits columns over its pool). M <= 4 runs the decode path (dequantize in
// registers, one pass over the weights); larger M dequantizes 16-column panels and runs a
// 4x4 register-tiled kernel on them.
Status int4_matmul(const float* x, index_t M, const Int4Weights& w, const float* bias, float* y, index_t n0, index_t n1);

// The ISA int4_matmul resolves to at the current cap (for summaries and tests).
const char* int4_isa();

}  // namespace graphopt::kernels
