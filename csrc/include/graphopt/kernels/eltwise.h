// Element-wise and normalisation kernels (fp32 compute). Large inputs are split
// into tasks of >= 16K elements (whole rows for LayerNorm/softmax) and run on
// the caller-participating pool (common/thread_pool.h) with up to
// omp_get_max_threads() threads; inputs under 64K elements run on the caller.
// All arrays are dense row-major; functions return a non-ok Status on bad arguments.
#pragma once
#include <cstdint>

#include "graphopt/status.h"
#include "graphopt/tensor_view.h"

namespace graphopt::kernels {

// Quantization parameters along one axis: x viewed as [outer, C, inner];
// n_param is 1 (per-tensor) or C (per-channel on that axis).
struct QuantAxis {
  index_t outer = 1, C = 1, inner = 1;
  const float* scale = nullptr;
  const std::int32_t* zero_point = nullptr;  // may be null (all zero)
  index_t n_param = 1;
};

// q = saturate(round_half_even(x / scale) + zero_point) as u8 (is_u8) or s8.
Status quantize(const float* x, const QuantAxis& ax, bool is_u8, void* q);
// y = (q - zero_point) * scale.
Status dequantize(const void* q, bool is_u8, const QuantAxis& ax, float* y);
// int32 accumulators to 8 bits: q = saturate(round_half_even(float(x) * scale) + zero_point),
// where scale is the combined multiplier (e.g. a_scale * w_scale / out_scale).
Status requantize(const std::int32_t* x, const QuantAxis& ax, bool is_u8, void* q);

// The range of x widened to include 0 (what asymmetric dynamic quantization needs):
// lo = min(0, min x), hi = max(0, max x).
Status minmax(const float* x, index_t n, float* lo, float* hi);

// Dynamic per-tensor u8 quantization in two vectorised passes (range, then quantize):
//   lo, hi = minmax(x); scale = (hi - lo) / 255 (1 when that is not > 0);
//   zero_point = clamp(nearbyint(-lo / scale), 0, 255); q = quantize(x, scale, zero_point).
// lo and hi may be null.
Status quantize_dynamic_u8(const float* x, index_t n, std::uint8_t* q, float* scale, std::int32_t* zero_point,
                           float* lo = nullptr, float* hi = nullptr);

// Dynamic u8 quantization of each row of x [rows, n] on its own grid, reading each row from memory
// once (the range and a finite check in one pass, then the quantization while the row is in L1):
//   lo, hi = minmax(x_r); scale[r], zero_point[r] as quantize_dynamic_u8's;
//   q_r = saturate(round_half_even(x_r * (1 / scale[r])) + zero_point[r]).
// The product with the reciprocal (not ONNX's division: the grid is the runtime's own choice) is
// what makes the pass cheap; it moves a value by at most one step only at exact rounding ties.
// A row holding a NaN or an infinity gets scale[r] = NaN (its q row and zero point are then
// meaningless; the caller reports it). Rows are independent: the result does not depend on threads.
Status quantize_rows_dynamic_u8(const float* x, index_t rows, index_t n, std::uint8_t* q, float* scale,
                                std::int32_t* zero_point);

// LayerNorm over the last dimension N of a [rows, N] array:
//   s = x (+ residual);  y = (s - mean(s)) / sqrt(var(s) + eps) * gamma + beta.
// residual, beta and sum_out may be null; sum_out receives s (SkipLayerNorm's second output).
Status layernorm(const float* x, const float* residual, const float* gamma, const float* beta, float eps,
                 index_t rows, index_t N, float* y, float* sum_out);

// layernorm() that also writes q = saturate(round_half_even(y / q_scale) + q_zero_point) as u8,
// in the same pass (bit-identical to quantize() applied to y afterwards). y must not be null.
Status layernorm_quantize(const float* x, const float* residual, const float* gamma, const float* beta, float eps,
                          index_t rows, index_t N, float* y, float* sum_out, float q_scale, std::int32_t q_zero_point,
                          std::uint8_t* q);

// layernorm() that also writes each output row quantized on its own dynamic grid, as
// quantize_rows_dynamic_u8 would from y (bit for bit), while the row is in L1.
Status layernorm_quantize_dynamic(const float* x, const float* residual, const float* gamma, const float* beta, float eps,
                                  index_t rows, index_t N, float* y, float* sum_out, std::uint8_t* q, float* row_scale,
                                  std::int32_t* row_zero_point);

// Softmax over the last dimension of [rows, N], with an optional additive mask of
// [mask_rows, N] where rows % mask_rows == 0; row r uses mask row r / (rows / mask_rows).
// Entries whose masked value is -inf get probability 0; a fully masked row is all 0.
Status softmax(const float* x, const float* mask, index_t mask_rows, index_t rows, index_t N, float* y);

// GELU, exact (erf) or tanh approximation; y may alias x.
Status gelu(const float* x, index_t n, bool tanh_approx, float* y);
// erf and tanh in float (max abs error over all floats 6.4e-8 and 5.6e-8, about 1 ulp of 1); y may alias x.
Status erf(const float* x, index_t n, float* y);
Status tanh(const float* x, index_t n, float* y);

// fp32 <-> bf16 (round to nearest even).
Status f32_to_bf16(const float* x, index_t n, bf16_t* y);
Status bf16_to_f32(const bf16_t* x, index_t n, float* y);

}  // namespace graphopt::kernels
