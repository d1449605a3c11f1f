// Row reductions and softmax shared by the element-wise and attention kernels.
// Reductions use 16 independent lanes so they vectorise without -ffast-math.
// Internal linkage (anonymous namespace): one copy per ISA TU.
#pragma once
#include <cmath>

#include "graphopt/tensor_view.h"
#include "math.h"

namespace graphopt::kernels {
namespace {

inline float row_sum(const float* __restrict x, index_t n) {
  float acc[16] = {0};
  index_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int l = 0; l < 16; ++l) acc[l] += x[i + l];
  float s = 0.f;
  for (int l = 0; l < 16; ++l) s += acc[l];
  for (; i < n; ++i) s += x[i];
  return s;
}

inline float row_sq_dev(const float* __restrict x, index_t n, float mean) {
  float acc[16] = {0};
  index_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int l = 0; l < 16; ++l) { const float d = x[i + l] - mean; acc[l] += d * d; }
  float s = 0.f;
  for (int l = 0; l < 16; ++l) s += acc[l];
  for (; i < n; ++i) { const float d = x[i] - mean; s += d * d; }
  return s;
}

inline float row_max(const float* __restrict x, index_t n) {
  float acc[16];
  for (int l = 0; l < 16; ++l) acc[l] = -INFINITY;
  index_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int l = 0; l < 16; ++l) acc[l] = x[i + l] > acc[l] ? x[i + l] : acc[l];
  float m = -INFINITY;
  for (int l = 0; l < 16; ++l) m = acc[l] > m ? acc[l] : m;
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

// In place: y = softmax(y) over n entries; -inf entries -> 0, all -inf -> all 0.
inline void softmax_row(float* __restrict y, index_t n) {
  const float m = row_max(y, n);
  if (!(m > -INFINITY)) {
    for (index_t j = 0; j < n; ++j) y[j] = 0.f;
    return;
  }
  for (index_t j = 0; j < n; ++j) y[j] = exp_f(y[j] - m);
  const float s = row_sum(y, n);
  const float inv = 1.f / s;
  for (index_t j = 0; j < n; ++j) y[j] *= inv;
}

}  // namespace
}  // namespace graphopt::kernels
