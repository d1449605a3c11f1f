// Decoder (LLaMA-style) kernels, fp32: RMSNorm (+ residual), SiLU and the
// SiLU-gated product of a packed gate|up GEMM output, and rotate-half rotary
// embedding. Single-threaded row kernels: the runtime ops split rows over the
// pool. AVX-512 with a scalar reference, chosen at run time (graphopt/dispatch.h).
#pragma once
#include <cstdint>

#include "graphopt/status.h"
#include "graphopt/tensor_view.h"

namespace graphopt::kernels {

// RMSNorm over the last dimension N of a [rows, N] array:
//   s = x (+ residual);  y = s / sqrt(mean(s^2) + eps) * gamma.
// residual and sum_out may be null; sum_out receives s (SkipRMSNorm's second output).
// y may alias x; sum_out may alias x or residual.
Status rmsnorm(const float* x, const float* residual, const float* gamma, float eps, index_t rows, index_t N,
               float* y, float* sum_out);

// y = x * sigmoid(x) over n elements; y may alias x.
Status silu(const float* x, index_t n, float* y);

// SiLU-gated product of [rows, 2I] rows laid out as (gate | up):
//   y[r, i] = silu(gu[r, i]) * gu[r, I + i], y is [rows, I].
Status silu_mul(const float* gu, index_t rows, index_t I, float* y);

// Rotate-half rotary embedding of [rows, D] rows (D even, h = D / 2):
//   y[:h] = x[:h] * cos[:h] - x[h:] * sin[:h];  y[h:] = x[h:] * cos[h:] + x[:h] * sin[h:].
// cos and sin are [rows, D], row-aligned with x. y must not alias x.
Status rotary(const float* x, const float* cos, const float* sin, index_t rows, index_t D, float* y);

}  // namespace graphopt::kernels
