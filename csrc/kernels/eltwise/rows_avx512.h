// Row kernels with AVX-512 intrinsics: the functions of rows_generic.h, same
// results (quantize/requantize/dequantize/convert bit for bit; the float math
// to rounding, as it uses FMA). Tails use masked loads and stores. Include
// inside the avx512 namespace after vmath_avx512.h. Internal linkage (see math.h).
namespace {

// Per-row quantization constants: zp (int) and the float clamp bounds qmin - zp, qmax - zp.
template <bool U8>
struct QBounds {
  __m512i zp;
  __m512 lo, hi;
  explicit QBounds(__m512i z)
      : zp(z),
        lo(_mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_set1_epi32(U8 ? 0 : -128), z))),
        hi(_mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_set1_epi32(U8 ? 255 : 127), z))) {}
};

inline __m512i load_zp(const std::int32_t* zp, index_t i, __mmask16 m) {
  return zp ? _mm512_maskz_loadu_epi32(m, zp + i) : _mm512_setzero_si512();
}

// Quantize-like rows share one loop: f(i, mask) returns the scaled float lanes
// for elements [i, i+16) and the parameters come per row (PC=false) or per element.
template <bool U8, bool PC, class F>
inline void quant_loop(index_t n, const float* scale, const std::int32_t* zp, void* qv, F scaled) {
  auto* q = static_cast<std::uint8_t*>(qv);
  if (!PC) {
    const QBounds<U8> b(_mm512_set1_epi32(zp ? zp[0] : 0));
    const __m512 s = _mm512_set1_ps(scale[0]);
    index_t i = 0;
    for (; i + 64 <= n; i += 64) {  // four independent divisions in flight
      const __m128i a = quant_v(scaled(i, s, 0xffff), b.lo, b.hi, b.zp);
      const __m128i c = quant_v(scaled(i + 16, s, 0xffff), b.lo, b.hi, b.zp);
      const __m128i d = quant_v(scaled(i + 32, s, 0xffff), b.lo, b.hi, b.zp);
      const __m128i e = quant_v(scaled(i + 48, s, 0xffff), b.lo, b.hi, b.zp);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i), a);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i + 16), c);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i + 32), d);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i + 48), e);
    }
    for (; i < n; i += 16) {
      const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xffff) : tail_mask(n - i);
      _mm_mask_storeu_epi8(q + i, m, quant_v(scaled(i, s, m), b.lo, b.hi, b.zp));
    }
  } else {
    for (index_t i = 0; i < n; i += 16) {
      const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xffff) : tail_mask(n - i);
      const QBounds<U8> b(load_zp(zp, i, m));
      const __m512 s = _mm512_mask_loadu_ps(_mm512_set1_ps(1.f), m, scale + i);
      _mm_mask_storeu_epi8(q + i, m, quant_v(scaled(i, s, m), b.lo, b.hi, b.zp));
    }
  }
}

// x / scale with the IEEE division ONNX QuantizeLinear specifies (x * (1/scale) rounds differently).
template <bool U8, bool PC>
void quantize_row(const float* x, index_t n, const float* scale, const std::int32_t* zp, void* q) {
  quant_loop<U8, PC>(n, scale, zp, q, [x](index_t i, __m512 s, __mmask16 m) {
    return _mm512_div_ps(_mm512_maskz_loadu_ps(m, x + i), s);
  });
}

void quantize_u8_mul_row(const float* x, index_t n, float inv, std::int32_t zp, std::uint8_t* q) {
  quant_loop<true, false>(n, &inv, &zp, q, [x](index_t i, __m512 s, __mmask16 m) {
    return _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), s);
  });
}

template <bool U8, bool PC>
void requantize_row(const std::int32_t* x, index_t n, const float* scale, const std::int32_t* zp, void* q) {
  quant_loop<U8, PC>(n, scale, zp, q, [x](index_t i, __m512 s, __mmask16 m) {
    const __m512 f = _mm512_cvt_roundepi32_ps(_mm512_maskz_loadu_epi32(m, x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return _mm512_mul_ps(f, s);
  });
}

template <bool U8, bool PC>
void dequantize_row(const void* qv, index_t n, const float* scale, const std::int32_t* zp, float* y) {
  const auto* q = static_cast<const std::uint8_t*>(qv);
  const __m512i z1 = _mm512_set1_epi32(zp && !PC ? zp[0] : 0);
  const __m512 s1 = _mm512_set1_ps(PC ? 1.f : scale[0]);
  for (index_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xffff) : tail_mask(n - i);
    const __m128i b = _mm_maskz_loadu_epi8(m, q + i);
    const __m512i v = U8 ? _mm512_cvtepu8_epi32(b) : _mm512_cvtepi8_epi32(b);
    const __m512i z = PC ? load_zp(zp, i, m) : z1;
    const __m512 s = PC ? _mm512_maskz_loadu_ps(m, scale + i) : s1;
    _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(v, z)), s));
  }
}

template <class F>
inline void map_row(const float* x, index_t n, float* y, F f) {
  index_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 a = f(_mm512_loadu_ps(x + i)), b = f(_mm512_loadu_ps(x + i + 16));
    _mm512_storeu_ps(y + i, a);
    _mm512_storeu_ps(y + i + 16, b);
  }
  for (; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xffff) : tail_mask(n - i);
    _mm512_mask_storeu_ps(y + i, m, f(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

void unary_row(UnaryOp op, const float* x, index_t n, float* y) {
  switch (op) {
    case UnaryOp::erf: map_row(x, n, y, [](__m512 v) { return erf_v(v); }); break;
    case UnaryOp::tanh: map_row(x, n, y, [](__m512 v) { return tanh_v(v); }); break;
    case UnaryOp::gelu_erf: map_row(x, n, y, [](__m512 v) { return gelu_erf_v(v); }); break;
    case UnaryOp::gelu_tanh: map_row(x, n, y, [](__m512 v) { return gelu_tanh_v(v); }); break;
  }
}

void softmax_masked_row(const float* x, const float* mask, index_t n, float* y) { softmax_row_v(x, mask, n, y); }

void layernorm_row(const float* x, const float* res, const float* g, const float* b, float eps, index_t N, float* y,
                   float* sum_out, const QuantOut& qo, std::uint8_t* qrow) {
  // Four accumulators per pass: the row's dependency chain (sum -> mean ->
  // deviations -> variance -> y), not the op count, bounds a 384-wide row.
  // Pass 1: s = x (+ residual), kept in sum_out or y when there is a residual; its sum.
  const float* s = x;
  float* t = sum_out ? sum_out : y;
  __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
  index_t i = 0;
  for (; i + 64 <= N; i += 64)
    for (int k = 0; k < 4; ++k) {
      __m512 u = _mm512_loadu_ps(x + i + 16 * k);
      if (res) {
        u = _mm512_add_ps(u, _mm512_loadu_ps(res + i + 16 * k));
        _mm512_storeu_ps(t + i + 16 * k, u);
      }
      acc[k] = _mm512_add_ps(acc[k], u);
    }
  for (int k = 0; i < N; i += 16, k = (k + 1) & 3) {
    const __mmask16 m = N - i >= 16 ? static_cast<__mmask16>(0xffff) : tail_mask(N - i);
    __m512 u = _mm512_maskz_loadu_ps(m, x + i);
    if (res) {
      u = _mm512_add_ps(u, _mm512_maskz_loadu_ps(m, res + i));
      _mm512_mask_storeu_ps(t + i, m, u);
    }
    acc[k] = _mm512_add_ps(acc[k], u);
  }
  if (res) s = t;
  auto total = [&acc] {
    const float r = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
    for (auto& a : acc) a = _mm512_setzero_ps();
    return r;
  };
  const float mean = total() / static_cast<float>(N);
  // Pass 2: the variance from deviations (two passes: no cancellation for large means).
  const __m512 vm = _mm512_set1_ps(mean);
  for (i = 0; i + 64 <= N; i += 64)
    for (int k = 0; k < 4; ++k) {
      const __m512 u = _mm512_sub_ps(_mm512_loadu_ps(s + i + 16 * k), vm);
      acc[k] = _mm512_fmadd_ps(u, u, acc[k]);
    }
  for (int k = 0; i < N; i += 16, k = (k + 1) & 3) {
    const __mmask16 m = N - i >= 16 ? static_cast<__mmask16>(0xffff) : tail_mask(N - i);
    const __m512 u = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, s + i), vm);
    acc[k] = _mm512_fmadd_ps(u, u, acc[k]);
  }
  const float var = total() / static_cast<float>(N);
  const __m512 vinv = _mm512_set1_ps(1.f / std::sqrt(var + eps));
  // Pass 3: y = (s - mean) * inv * gamma + beta, and its u8 copy.
  const QBounds<true> qb(_mm512_set1_epi32(qo.zero_point));
  const __m512 qs = _mm512_set1_ps(qo.scale);
  for (i = 0; i < N; i += 16) {
    const __mmask16 m = N - i >= 16 ? static_cast<__mmask16>(0xffff) : tail_mask(N - i);
    const __m512 u = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s + i), vm), vinv);
    const __m512 gv = _mm512_maskz_loadu_ps(m, g + i);
    const __m512 yv = b ? _mm512_fmadd_ps(u, gv, _mm512_maskz_loadu_ps(m, b + i)) : _mm512_mul_ps(u, gv);
    _mm512_mask_storeu_ps(y + i, m, yv);
    if (qrow) _mm_mask_storeu_epi8(qrow + i, m, quant_v(_mm512_div_ps(yv, qs), qb.lo, qb.hi, qb.zp));
  }
}

void to_bf16_row(const float* x, index_t n, std::uint16_t* y) {
  index_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i a = to_bf16_v(_mm512_loadu_ps(x + i)), b = to_bf16_v(_mm512_loadu_ps(x + i + 16));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), a);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i + 16), b);
  }
  for (; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xffff) : tail_mask(n - i);
    _mm256_mask_storeu_epi16(y + i, m, to_bf16_v(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

void from_bf16_row(const std::uint16_t* x, index_t n, float* y) {
  for (index_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xffff) : tail_mask(n - i);
    const __m512i v = _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, x + i)), 16);
    _mm512_mask_storeu_ps(y + i, m, _mm512_castsi512_ps(v));
  }
}

// A row's range (it includes 0) and whether every element is finite (fpclass: NaN or +-inf), in one read.
bool range_row(const float* x, index_t n, float* lo, float* hi) {
  constexpr int kNonFinite = 0x01 | 0x80 | 0x08 | 0x10;  // QNaN, SNaN, +inf, -inf
  __m512 l0 = _mm512_setzero_ps(), h0 = l0, l1 = l0, h1 = l0;
  __mmask16 bad = 0;
  index_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 a = _mm512_loadu_ps(x + i), b = _mm512_loadu_ps(x + i + 16);
    l0 = _mm512_min_ps(l0, a);
    h0 = _mm512_max_ps(h0, a);
    l1 = _mm512_min_ps(l1, b);
    h1 = _mm512_max_ps(h1, b);
    bad |= _mm512_fpclass_ps_mask(a, kNonFinite) | _mm512_fpclass_ps_mask(b, kNonFinite);
  }
  for (; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xffff) : tail_mask(n - i);
    const __m512 a = _mm512_maskz_loadu_ps(m, x + i);  // masked lanes are 0: inside the range
    l0 = _mm512_min_ps(l0, a);
    h0 = _mm512_max_ps(h0, a);
    bad |= _mm512_mask_fpclass_ps_mask(m, a, kNonFinite);
  }
  *lo = _mm512_reduce_min_ps(_mm512_min_ps(l0, l1));
  *hi = _mm512_reduce_max_ps(_mm512_max_ps(h0, h1));
  return bad == 0;
}

// The range alone: range_row's read (one loop for both; the finite flag costs one fpclass a vector).
void minmax_row(const float* x, index_t n, float* lo, float* hi) { (void)range_row(x, n, lo, hi); }

}  // namespace
