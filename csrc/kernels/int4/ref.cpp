// Scalar reference of the int4 matmul (dequantize each weight, accumulate in float).
#include <vector>

#include "int4_internal.h"

namespace graphopt::kernels::ref {

void int4_matmul(const Int4Job& j) {
  const Int4Weights& w = j.w;
  const index_t nb = (w.K + w.block - 1) / w.block, blob = w.block / 2;
  std::vector<float> col(static_cast<std::size_t>(w.K));
  for (index_t n = j.n0; n < j.n1; ++n) {
    for (index_t b = 0; b < nb; ++b) {
      const std::uint8_t* src = w.q + (n * nb + b) * blob;
      const float s = w.scale[n * nb + b];
      const int z = int4_zp(w, n, b);
      for (index_t k = b * w.block; k < w.K && k < (b + 1) * w.block; ++k) {
        const index_t i = k - b * w.block;
        const int v = (i & 1) ? (src[i / 2] >> 4) : (src[i / 2] & 0x0F);
        col[static_cast<std::size_t>(k)] = static_cast<float>(v - z) * s;
      }
    }
    for (index_t m = 0; m < j.M; ++m) {
      const float* xr = j.x + m * w.K;
      float acc = 0.f;
      for (index_t k = 0; k < w.K; ++k) acc += xr[k] * col[static_cast<std::size_t>(k)];
      j.y[m * w.N + n] = acc + (j.bias ? j.bias[n] : 0.f);
    }
  }
}

}  // namespace graphopt::kernels::ref
