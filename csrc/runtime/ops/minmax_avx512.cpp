// AVX-512 range scan for dynamic int8 quantization (this TU alone is built with -mavx512f;
// callers check may_use(Isa::avx512) first).
#include <immintrin.h>

#include <algorithm>

#include "graphopt/tensor_view.h"

namespace graphopt::runtime::avx512 {

void minmax(const float* x, index_t n, float* lo, float* hi) {
  __m512 l0 = _mm512_setzero_ps(), h0 = _mm512_setzero_ps(), l1 = l0, h1 = h0;  // range includes 0
  index_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 a = _mm512_loadu_ps(x + i), b = _mm512_loadu_ps(x + i + 16);
    l0 = _mm512_min_ps(l0, a);
    h0 = _mm512_max_ps(h0, a);
    l1 = _mm512_min_ps(l1, b);
    h1 = _mm512_max_ps(h1, b);
  }
  float mn = _mm512_reduce_min_ps(_mm512_min_ps(l0, l1)), mx = _mm512_reduce_max_ps(_mm512_max_ps(h0, h1));
  for (; i < n; ++i) { mn = std::min(mn, x[i]); mx = std::max(mx, x[i]); }
  *lo = mn;
  *hi = mx;
}

}  // namespace graphopt::runtime::avx512
