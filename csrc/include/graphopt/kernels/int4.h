// Weight-only int4 matrix multiply in onnxruntime's MatMulNBits layout (bits=4):
//   y[m, n] = sum_k x[m, k] * (q[n, k] - zp[n, b]) * scale[n, b] + bias[n],   b = k / block
// q: uint8 [N, ceil(K/block), block/2], two values per byte (element 2j in the low nibble);
// scale: float [N * ceil(K/block)]; zp: uint8 [N * ceil(ceil(K/block)/2)] packed the same way
// (null: 8, the symmetric default). The weights are read where they are (a memory-mapped
// file works): the fp32 paths pack or copy nothing.
#pragma once
#include <cstdint>
#include <vector>

#include "graphopt/status.h"
#include "graphopt/tensor_view.h"

namespace graphopt::kernels {

// The weights repacked for the int8-activation path (AVX-512 VNNI): per group of 16 columns and
// K-block, block/8 runs of 64 bytes, byte 4c+j holding (q - 8) of column c at k0+j (low nibble)
// and k0+4+j (high nibble); per (group, block) 16 scales / 16, 16 int32 offsets -2048 * sum(q - 8)
// (so a dot product with u8 = int8 + 128 activations starts at its exact signed value) and, with
// zero points, 16 floats (8 - zp) * scale. About the size of the MatMulNBits tensors.
struct Int4Packed {
  index_t K = 0, N = 0, block = 0, nb = 0, groups = 0;
  bool zp = false;
  std::vector<std::uint8_t> w;
  std::vector<float> s16, zs;
  std::vector<std::int32_t> comp;
  std::size_t nbytes() const { return w.size() + 4 * (s16.size() + zs.size() + comp.size()); }
};

struct Int4Weights {
  const std::uint8_t* q = nullptr;
  const float* scale = nullptr;
  const std::uint8_t* zp = nullptr;  // optional
  index_t K = 0, N = 0, block = 32;
  // Quantize the activations to int8 (symmetric, a scale per row and K-block) when M >= int4_q8_min_rows() and the
  // ISA has an int8 path (the scalar reference, AVX-512 VNNI, which reads `packed`).
  bool q8 = false;
  const Int4Packed* packed = nullptr;
};

// Columns [n0, n1) of y [M, N] (row stride N) for all M rows of x [M, K]; single-threaded
// (the runtime splits columns over its pool). With w.q8 (and M >= int4_q8_min_rows()) x is
// quantized to int8 (a scale per row and K-block) and VNNI dot products run on the packed nibbles. Otherwise, in fp32:
// M <= 4 runs the decode path (dequantize in registers, one pass over the weights), larger M
// dequantizes 16-column panels and runs a 4x4 register-tiled kernel on them.
Status int4_matmul(const float* x, index_t M, const Int4Weights& w, const float* bias, float* y, index_t n0, index_t n1);

// Rows from which int4_matmul takes the int8-activation path (measured: benchmarks/int4_kernel.py).
index_t int4_q8_min_rows();
// Does the int8-activation path at the current ISA cap read Int4Weights::packed?
bool int4_q8_needs_pack();
// Size `p` for `w` (zeroed), then fill column groups [g0, g1) (disjoint ranges may run in parallel).
void int4_pack_init(const Int4Weights& w, Int4Packed* p);
void int4_pack_groups(const Int4Weights& w, index_t g0, index_t g1, Int4Packed* p);

// The ISA int4_matmul resolves to at the current cap (for summaries and tests).
const char* int4_isa();

}  // namespace graphopt::kernels
