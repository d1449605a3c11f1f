// GEMM kernels: C[M,N] = epilogue(A[M,K] x W[K,N]) with W pre-packed once.
//
// The packed layout is a sequence of 16-column panels. Inside a panel, K is
// split into groups of g consecutive k, and each group is 64 bytes:
//   s8_k4   : int8, g=4, [k/4][col 0..15][k%4]      (VNNI vpdpbusd, AMX tdpbusd B tiles)
//   s16_k2  : int16, g=2, [k/2][col 0..15][k%2]     (AVX2 vpmaddwd, widened exact int8 path)
//   bf16_k2 : bf16, g=2, [k/2][col 0..15][k%2]      (vdpbf16ps)
//   f32_k1  : fp32, g=1, [k][col 0..15]             (FMA)
// K is zero-padded to a multiple of g, N to a multiple of 16, so micro-kernels
// never read past the buffer. The scalar reference reads every layout.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "graphopt/isa.h"
#include "graphopt/status.h"
#include "graphopt/tensor_view.h"

namespace graphopt::kernels {

enum class PackLayout : int { s8_k4 = 0, s16_k2 = 1, bf16_k2 = 2, f32_k1 = 3 };
enum class Act : int { none = 0, relu = 1, gelu_erf = 2, gelu_tanh = 3 };
enum class OutType : int { s32 = 0, f32 = 1, bf16 = 2, u8 = 3, s8 = 4 };

const char* layout_name(PackLayout l);
int layout_group(PackLayout l);        // g: k per 64-byte group
int layout_elem_bytes(PackLayout l);   // bytes per packed element

// 64-byte aligned byte buffer.
struct AlignedBuffer {
  AlignedBuffer() = default;
  // zero = false leaves the bytes undefined (a packer that writes every byte itself).
  explicit AlignedBuffer(std::size_t bytes, bool zero = true);
  std::uint8_t* data() const { return ptr_.get(); }
  std::size_t size() const { return size_; }

 private:
  struct Free { void operator()(std::uint8_t* p) const; };
  std::unique_ptr<std::uint8_t, Free> ptr_;
  std::size_t size_ = 0;
};

// int8 weights with 4x1 block sparsity (csrc/kernels/sparse): only the blocks of 4
// consecutive k of one column n that hold a nonzero are kept, column by column.
struct SparseBlocks {
  index_t KG = 0;                      // k-groups: ceil(K / 4)
  std::vector<std::int32_t> col_ptr;   // N + 1: column n's blocks are [col_ptr[n], col_ptr[n + 1])
  std::vector<std::int32_t> off;       // per block: k-group * 64 (its byte offset in a packed A tile)
  std::vector<std::int32_t> val;       // per block: the s8 weights of k = 4g..4g+3, little-endian
  std::size_t nbytes() const { return (col_ptr.size() + off.size() + val.size()) * sizeof(std::int32_t); }
};

// Weights packed once, held by the plan (or by Python) and reused every call.
class PackedWeights {
 public:
  PackLayout layout() const { return layout_; }
  index_t K() const { return K_; }
  index_t N() const { return N_; }
  index_t Kp() const { return Kp_; }           // K padded to the group size
  index_t panels() const { return (N_ + 15) / 16; }
  index_t panel_bytes() const { return Kp_ / layout_group(layout_) * 64; }
  const std::uint8_t* panel(index_t p) const { return buf_.data() + p * panel_bytes(); }
  std::size_t nbytes() const { return buf_.size() + (sparse_ ? sparse_->nbytes() : 0); }
  // int8 weights packed by pack_s8_sparse: 4x1 blocks and no dense panels (gemm_s8 then runs
  // the sparse kernel, bit-identical to the dense one); null otherwise.
  const SparseBlocks* sparse() const { return sparse_.get(); }

  // int8 only: per-column sum over k of the raw s8 weights (zero-point compensation),
  // weight scales (1 or N) and weight zero points (1 or N, expanded to N here).
  const std::vector<std::int32_t>& col_sum() const { return col_sum_; }
  const std::vector<float>& scale() const { return scale_; }
  const std::vector<std::int32_t>& zero_point() const { return zp_; }
  // The same per column, ready for the epilogue: scale expanded to N entries and
  // K*w_zp[n] - col_sum[n] (times a_zp, the activation zero-point correction).
  const std::vector<float>& col_scale() const { return col_scale_; }
  const std::vector<std::int32_t>& col_term() const { return col_term_; }
  bool per_channel() const { return scale_.size() > 1; }
  bool has_zero_point() const { return has_zp_; }

  // Pack B given as [K,N] (transposed=false, ld=N) or [N,K] (transposed=true, ld=K).
  // layout is chosen from the ISA in effect now (isa_selected()) unless given.
  static Status pack_s8(const std::int8_t* B, index_t K, index_t N, bool transposed,
                        const float* scale, index_t n_scale, const std::int32_t* zp, index_t n_zp,
                        PackedWeights* out);
  static Status pack_s8(const std::int8_t* B, index_t K, index_t N, bool transposed,
                        const float* scale, index_t n_scale, const std::int32_t* zp, index_t n_zp,
                        PackLayout layout, PackedWeights* out);
  // The same int8 weights as 4x1 blocks (only the blocks holding a nonzero are stored).
  static Status pack_s8_sparse(const std::int8_t* B, index_t K, index_t N, bool transposed,
                               const float* scale, index_t n_scale, const std::int32_t* zp, index_t n_zp,
                               PackedWeights* out);
  static Status pack_bf16(const bf16_t* B, index_t K, index_t N, bool transposed, PackedWeights* out);
  static Status pack_bf16_from_f32(const float* B, index_t K, index_t N, bool transposed, PackedWeights* out);
  static Status pack_f32(const float* B, index_t K, index_t N, bool transposed, PackedWeights* out);
  // The same from rows `ld` elements apart (ld >= N, or >= K when transposed: a column slice of a
  // larger, possibly memory-mapped weight packs without a contiguous copy first), on up to
  // `threads` threads of the kernels' pool. [K, N] sources are read row by row, front to back.
  static Status pack_f32(const float* B, index_t K, index_t N, index_t ld, bool transposed, int threads,
                         PackedWeights* out);
  static Status pack_bf16_from_f32(const float* B, index_t K, index_t N, index_t ld, bool transposed, int threads,
                                   PackedWeights* out);

  // Element (k, n) of the packed weights as stored (for tests and the reference).
  float at_f32(index_t k, index_t n) const;
  std::int32_t at_s8(index_t k, index_t n) const;

 private:
  PackLayout layout_ = PackLayout::f32_k1;
  index_t K_ = 0, N_ = 0, Kp_ = 0;
  AlignedBuffer buf_;
  std::vector<std::int32_t> col_sum_, zp_, col_term_;
  std::vector<float> scale_, col_scale_;
  bool has_zp_ = false;
  std::shared_ptr<const SparseBlocks> sparse_;
  void alloc(PackLayout l, index_t K, index_t N, bool zero = true);
};

// Fused epilogue, applied to each accumulator tile while it is hot in cache:
//   int8:  v = acc - a_zp*colsum[n] - w_zp[n]*rowsum_a[m] + K*a_zp*w_zp[n]   (exact int32)
//          out s32: v;  otherwise y = float(v) * (a_scale*w_scale[n]) + bias[n]
//          (a_row_scale/a_row_zp given: a_scale, a_zp of row m are a_row_scale[m], a_row_zp[m],
//          dynamically quantized activations with one grid per row)
//   float: y = acc + bias[n]
//   then y = act(y) and stored as f32, bf16 (round-to-nearest-even) or
//   u8/s8 = saturate(round_half_even(y / out_scale) + out_zp).
struct Epilogue {
  const float* bias = nullptr;   // length N or null
  Act act = Act::none;
  OutType out = OutType::f32;
  float out_scale = 1.f;         // requantized outputs only
  std::int32_t out_zp = 0;
  // Length N or null: the activated output is multiplied by out_mul[n] (one fp32 rounding, as a
  // following Mul by a per-channel constant) before it is stored or requantized.
  const float* out_mul = nullptr;
  float a_scale = 1.f;           // int8 GEMM only
  std::int32_t a_zp = 0;         // int8 GEMM only
  // int8 GEMM only, both or neither: per-row activation grids (M entries each, zero points in
  // [0, 255]) replacing a_scale / a_zp.
  const float* a_row_scale = nullptr;
  const std::int32_t* a_row_zp = nullptr;
};

// A: M x K (lda >= K) u8 / bf16 / fp32; C: M x N with ldc (in elements of the output type).
// Threads: up to omp_get_max_threads() (graphopt.set_num_threads), via the caller-participating
// pool in csrc/kernels/common/thread_pool.h. Safe to call concurrently from several threads.
// int8: K must be <= 33025 so the int32 accumulation is exact for any inputs.
Status gemm_s8(const std::uint8_t* A, index_t M, index_t lda, const PackedWeights& W,
               const Epilogue& e, void* C, index_t ldc);
Status gemm_bf16(const bf16_t* A, index_t M, index_t lda, const PackedWeights& W,
                 const Epilogue& e, void* C, index_t ldc);
Status gemm_f32(const float* A, index_t M, index_t lda, const PackedWeights& W,
                const Epilogue& e, void* C, index_t ldc);

// Which ISA level a GEMM on W would run at now (depends on W's layout and the cap).
Isa gemm_isa(const PackedWeights& W);

// Measured single-core peak of a register-resident loop, in GOPS (1 MAC = 2 ops).
// kind: "int8_vnni", "int8_avx2", "bf16", "fp32_avx512", "fp32_avx2". Returns 0 if unavailable.
double peak_gops(const char* kind, double seconds);

// Kernel accounting (benchmarks/amx_gemm.py): seconds per call of the AMX GEMM's block loop on W
// (s8_k4 or bf16_k2) with M zero rows, at the GEMM's thread count, up to the tile products
// (stores = false) or the tile stores too; no A copy, no epilogue. Mean of reps calls; 0 without AMX.
double amx_stage_seconds(const PackedWeights& W, index_t M, bool stores, int reps);

}  // namespace graphopt::kernels
