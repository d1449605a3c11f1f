// AVX2 row kernels where GCC's auto-vectorisation falls short (table lookups,
// float -> 8-bit narrowing): quantize/requantize per tensor, erf/tanh/GELU,
// softmax, and LayerNorm's u8 copy. The rest (and per-element parameters) use
// rows_generic.h. Same results as the other paths (quantization bit for bit).
// Include inside the avx2 namespace after rows_generic.h and vmath_avx2.h.
namespace {

using generic::dequantize_row;
using generic::from_bf16_row;
using generic::range_row;
using generic::to_bf16_row;

inline __m256i tail_mask8(index_t r) { return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(r)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)); }

// Per-element parameters (per-channel on the last axis): 8 lanes at a time, scalar tail.
template <bool U8, class F>
inline index_t quant_loop8_pc(index_t n, const float* scale, const std::int32_t* zp, void* qv, F scaled) {
  auto* q = static_cast<std::uint8_t*>(qv);
  index_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256i v[4];
    for (int k = 0; k < 4; ++k) {
      const index_t j = i + 8 * k;
      const __m256i z = zp ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(zp + j)) : _mm256_setzero_si256();
      const __m256 lo = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_set1_epi32(U8 ? 0 : -128), z));
      const __m256 hi = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_set1_epi32(U8 ? 255 : 127), z));
      v[k] = quant_v(scaled(j, _mm256_loadu_ps(scale + j)), lo, hi, z);
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i), narrow32<U8>(v[0], v[1], v[2], v[3]));
  }
  return i;
}

// Quantize-like rows: scaled(i) gives the 8 scaled float lanes of [i, i+8); 32 at a time, scalar tail.
template <bool U8, class F, class Tail>
inline void quant_loop8(index_t n, float scale, std::int32_t zp, void* qv, F scaled, Tail tail) {
  auto* q = static_cast<std::uint8_t*>(qv);
  const __m256i z = _mm256_set1_epi32(zp);
  const __m256 lo = _mm256_set1_ps(static_cast<float>((U8 ? 0 : -128) - zp));
  const __m256 hi = _mm256_set1_ps(static_cast<float>((U8 ? 255 : 127) - zp));
  const __m256 s = _mm256_set1_ps(scale);
  index_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i a = quant_v(scaled(i, s), lo, hi, z), b = quant_v(scaled(i + 8, s), lo, hi, z);
    const __m256i c = quant_v(scaled(i + 16, s), lo, hi, z), d = quant_v(scaled(i + 24, s), lo, hi, z);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i), narrow32<U8>(a, b, c, d));
  }
  if (i < n) tail(i);
}

template <bool U8, bool PC>
void quantize_row(const float* x, index_t n, const float* scale, const std::int32_t* zp, void* q) {
  if (PC) {
    const index_t i = quant_loop8_pc<U8>(n, scale, zp, q, [x](index_t j, __m256 s) { return _mm256_div_ps(_mm256_loadu_ps(x + j), s); });
    return generic::quantize_row<U8, true>(x + i, n - i, scale + i, zp ? zp + i : nullptr, static_cast<std::uint8_t*>(q) + i);
  }
  const std::int32_t z = zp ? zp[0] : 0;
  quant_loop8<U8>(n, scale[0], z, q, [x](index_t i, __m256 s) { return _mm256_div_ps(_mm256_loadu_ps(x + i), s); },
                  [&](index_t i) { generic::quantize_row<U8, false>(x + i, n - i, scale, zp, static_cast<std::uint8_t*>(q) + i); });
}

void quantize_u8_mul_row(const float* x, index_t n, float inv, std::int32_t zp, std::uint8_t* q) {
  quant_loop8<true>(n, inv, zp, q, [x](index_t i, __m256 s) { return _mm256_mul_ps(_mm256_loadu_ps(x + i), s); },
                    [&](index_t i) { generic::quantize_u8_mul_row(x + i, n - i, inv, zp, q + i); });
}

template <bool U8, bool PC>
void requantize_row(const std::int32_t* x, index_t n, const float* scale, const std::int32_t* zp, void* q) {
  if (PC) {
    const index_t i = quant_loop8_pc<U8>(n, scale, zp, q, [x](index_t j, __m256 s) {
      return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + j))), s);
    });
    return generic::requantize_row<U8, true>(x + i, n - i, scale + i, zp ? zp + i : nullptr, static_cast<std::uint8_t*>(q) + i);
  }
  const std::int32_t z = zp ? zp[0] : 0;
  quant_loop8<U8>(n, scale[0], z, q, [x](index_t i, __m256 s) {
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i))), s);
  }, [&](index_t i) { generic::requantize_row<U8, false>(x + i, n - i, scale, zp, static_cast<std::uint8_t*>(q) + i); });
}

template <class F>
inline void map_row8(const float* x, index_t n, float* y, F f) {
  index_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, f(_mm256_loadu_ps(x + i)));
  if (i < n) {
    const __m256i m = tail_mask8(n - i);
    _mm256_maskstore_ps(y + i, m, f(_mm256_maskload_ps(x + i, m)));
  }
}

void unary_row(UnaryOp op, const float* x, index_t n, float* y) {
  switch (op) {
    case UnaryOp::erf: map_row8(x, n, y, [](__m256 v) { return erf_v(v); }); break;
    case UnaryOp::tanh: map_row8(x, n, y, [](__m256 v) { return tanh_v(v); }); break;
    case UnaryOp::gelu_erf: map_row8(x, n, y, [](__m256 v) { return gelu_erf_v(v); }); break;
    case UnaryOp::gelu_tanh: map_row8(x, n, y, [](__m256 v) { return gelu_tanh_v(v); }); break;
  }
}

inline float hmax8(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}
inline float hmin8(__m256 v) {
  __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_min_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_min_ss(m, _mm_movehdup_ps(m)));
}
inline float hsum8(__m256 v) {
  __m128 m = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_add_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_add_ss(m, _mm_movehdup_ps(m)));
}

// As softmax_row_v (rowops.h) for 8 lanes; masked loads/stores only in the tail
// (the masked-off lanes are -inf in the max and 0 in the sum).
void softmax_masked_row(const float* x, const float* mask, index_t n, float* y) {
  const __m256 ninf = _mm256_set1_ps(-INFINITY);
  const index_t nv = n / 8 * 8;
  const __m256i tm = tail_mask8(n - nv);
  __m256 mx = ninf;
  for (index_t i = 0; i < nv; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    if (mask) v = _mm256_add_ps(v, _mm256_loadu_ps(mask + i));
    _mm256_storeu_ps(y + i, v);
    mx = _mm256_max_ps(mx, v);
  }
  if (nv < n) {
    __m256 v = _mm256_maskload_ps(x + nv, tm);
    if (mask) v = _mm256_add_ps(v, _mm256_maskload_ps(mask + nv, tm));
    _mm256_maskstore_ps(y + nv, tm, v);
    mx = _mm256_max_ps(mx, _mm256_blendv_ps(ninf, v, _mm256_castsi256_ps(tm)));
  }
  const float rmax = hmax8(mx);
  if (!(rmax > -INFINITY)) {
    for (index_t i = 0; i < n; ++i) y[i] = 0.f;
    return;
  }
  const __m256 vmax = _mm256_set1_ps(rmax);
  __m256 a0 = _mm256_setzero_ps(), a1 = a0;
  index_t i = 0;
  for (; i + 16 <= nv; i += 16) {
    const __m256 e0 = exp_fast_v(_mm256_sub_ps(_mm256_loadu_ps(y + i), vmax));
    const __m256 e1 = exp_fast_v(_mm256_sub_ps(_mm256_loadu_ps(y + i + 8), vmax));
    _mm256_storeu_ps(y + i, e0);
    _mm256_storeu_ps(y + i + 8, e1);
    a0 = _mm256_add_ps(a0, e0);
    a1 = _mm256_add_ps(a1, e1);
  }
  for (; i < nv; i += 8) {
    const __m256 e = exp_fast_v(_mm256_sub_ps(_mm256_loadu_ps(y + i), vmax));
    _mm256_storeu_ps(y + i, e);
    a0 = _mm256_add_ps(a0, e);
  }
  if (nv < n) {
    const __m256 e = _mm256_and_ps(exp_fast_v(_mm256_sub_ps(_mm256_maskload_ps(y + nv, tm), vmax)), _mm256_castsi256_ps(tm));
    _mm256_maskstore_ps(y + nv, tm, e);
    a1 = _mm256_add_ps(a1, e);
  }
  const __m256 inv = _mm256_set1_ps(1.f / hsum8(_mm256_add_ps(a0, a1)));
  map_row8(y, n, y, [inv](__m256 v) { return _mm256_mul_ps(v, inv); });
}

void minmax_row(const float* x, index_t n, float* lo, float* hi) {
  __m256 l0 = _mm256_setzero_ps(), h0 = l0, l1 = l0, h1 = l0;  // the range includes 0
  index_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
    l0 = _mm256_min_ps(l0, a);
    h0 = _mm256_max_ps(h0, a);
    l1 = _mm256_min_ps(l1, b);
    h1 = _mm256_max_ps(h1, b);
  }
  float mn = hmin8(_mm256_min_ps(l0, l1)), mx = hmax8(_mm256_max_ps(h0, h1));
  for (; i < n; ++i) { mn = x[i] < mn ? x[i] : mn; mx = x[i] > mx ? x[i] : mx; }
  *lo = mn;
  *hi = mx;
}

// As layernorm_row in rows_avx512.h: four accumulators per pass. Masked loads and
// stores only in the tails (vmaskmovps stores are microcoded and slow on AMD).
void layernorm_row(const float* x, const float* res, const float* g, const float* b, float eps, index_t N, float* y,
                   float* sum_out, const QuantOut& qo, std::uint8_t* qrow) {
  const float* s = x;
  float* t = sum_out ? sum_out : y;
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  index_t i = 0;
  for (; i + 32 <= N; i += 32)
    for (int k = 0; k < 4; ++k) {
      __m256 u = _mm256_loadu_ps(x + i + 8 * k);
      if (res) {
        u = _mm256_add_ps(u, _mm256_loadu_ps(res + i + 8 * k));
        _mm256_storeu_ps(t + i + 8 * k, u);
      }
      acc[k] = _mm256_add_ps(acc[k], u);
    }
  for (int k = 0; i < N; i += 8, k = (k + 1) & 3) {
    const __m256i m = tail_mask8(N - i);
    __m256 u = _mm256_maskload_ps(x + i, m);
    if (res) {
      u = _mm256_add_ps(u, _mm256_maskload_ps(res + i, m));
      _mm256_maskstore_ps(t + i, m, u);
    }
    acc[k] = _mm256_add_ps(acc[k], u);
  }
  if (res) s = t;
  auto total = [&acc] {
    const float r = hsum8(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    for (auto& a : acc) a = _mm256_setzero_ps();
    return r;
  };
  const float mean = total() / static_cast<float>(N);
  const __m256 vm = _mm256_set1_ps(mean);
  for (i = 0; i + 32 <= N; i += 32)
    for (int k = 0; k < 4; ++k) {
      const __m256 u = _mm256_sub_ps(_mm256_loadu_ps(s + i + 8 * k), vm);
      acc[k] = _mm256_fmadd_ps(u, u, acc[k]);
    }
  for (int k = 0; i < N; i += 8, k = (k + 1) & 3) {
    const __m256i m = tail_mask8(N - i);
    const __m256 u = _mm256_and_ps(_mm256_sub_ps(_mm256_maskload_ps(s + i, m), vm), _mm256_castsi256_ps(m));
    acc[k] = _mm256_fmadd_ps(u, u, acc[k]);
  }
  const float var = total() / static_cast<float>(N);
  const __m256 vinv = _mm256_set1_ps(1.f / std::sqrt(var + eps));
  for (i = 0; i + 8 <= N; i += 8) {
    const __m256 u = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(s + i), vm), vinv);
    const __m256 gv = _mm256_loadu_ps(g + i);
    _mm256_storeu_ps(y + i, b ? _mm256_fmadd_ps(u, gv, _mm256_loadu_ps(b + i)) : _mm256_mul_ps(u, gv));
  }
  if (i < N) {
    const __m256i m = tail_mask8(N - i);
    const __m256 u = _mm256_mul_ps(_mm256_sub_ps(_mm256_maskload_ps(s + i, m), vm), vinv);
    const __m256 gv = _mm256_maskload_ps(g + i, m);
    _mm256_maskstore_ps(y + i, m, b ? _mm256_fmadd_ps(u, gv, _mm256_maskload_ps(b + i, m)) : _mm256_mul_ps(u, gv));
  }
  if (qrow) quantize_row<true, false>(y, N, &qo.scale, &qo.zero_point, qrow);
}

}  // namespace
