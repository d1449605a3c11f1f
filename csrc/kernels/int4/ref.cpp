// Scalar reference of the int4 matmul (dequantize each weight, accumulate in float).
#include <algorithm>
#include <cmath>
#include <limits>
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

namespace graphopt::kernels::ref {

// Per row and K-block b: scale sx = max|x| over the block / 127, codes round-to-nearest-even(x * 127 /
// max) in [-127, 127] (a NaN anywhere in the row makes all of the row's scales NaN). Per block the exact
// integer sum I = sum (q - 8) * xq is scaled in fp32 by the block's weight scale times sx, and with zero
// points the column's (8 - zp) * scale times the block's code sum * sx is added: y = acc + bias.
void int4_matmul_q8(const Int4Job& j) {
  const Int4Weights& w = j.w;
  const index_t K = w.K, nb = (K + w.block - 1) / w.block;
  std::vector<int> xq(static_cast<std::size_t>(j.M * K));
  std::vector<float> sx(static_cast<std::size_t>(j.M * nb)), xs(static_cast<std::size_t>(j.M * nb));
  for (index_t m = 0; m < j.M; ++m) {
    bool nan = false;
    for (index_t b = 0; b < nb; ++b) {
      const index_t k0 = b * w.block, k1 = std::min(K, (b + 1) * w.block);
      float amax = 0.f;
      for (index_t k = k0; k < k1; ++k) {
        amax = std::max(amax, std::fabs(j.x[m * K + k]));
        nan = nan || std::isnan(j.x[m * K + k]);
      }
      const float inv = amax > 0.f ? 127.f / amax : 0.f, sb = amax / 127.f;
      int sum = 0;
      for (index_t k = k0; k < k1; ++k) {
        const int v = static_cast<int>(std::nearbyint(j.x[m * K + k] * inv));
        xq[static_cast<std::size_t>(m * K + k)] = v;
        sum += v;
      }
      sx[static_cast<std::size_t>(m * nb + b)] = sb;
      xs[static_cast<std::size_t>(m * nb + b)] = static_cast<float>(sum) * sb;
    }
    if (nan)  // a NaN row gives NaN outputs
      for (index_t b = 0; b < nb; ++b) sx[static_cast<std::size_t>(m * nb + b)] = std::numeric_limits<float>::quiet_NaN();
  }
  for (index_t n = j.n0; n < j.n1; ++n)
    for (index_t m = 0; m < j.M; ++m) {
      float acc = 0.f;
      for (index_t b = 0; b < nb; ++b) {
        int dot = 0;
        for (index_t k = b * w.block; k < K && k < (b + 1) * w.block; ++k)
          dot += (int4_code(w, n, k) - 8) * xq[static_cast<std::size_t>(m * K + k)];
        const float s = w.scale[n * nb + b];
        acc = std::fma(static_cast<float>(dot), s * sx[static_cast<std::size_t>(m * nb + b)], acc);
        if (w.zp) acc = std::fma(static_cast<float>(8 - int4_zp(w, n, b)) * s, xs[static_cast<std::size_t>(m * nb + b)], acc);
      }
      j.y[m * w.N + n] = j.bias ? acc + j.bias[n] : acc;
    }
}

}  // namespace graphopt::kernels::ref
