// Row kernels as plain loops, vectorised by the compiler under the including
// TU's flags (ref: none, avx2: -mavx2 -mfma), in namespace `generic`: the ref
// TU uses them all, the avx2 TU those rows_avx2.h does not replace.
// rows_avx512.h has the same functions with intrinsics. Include inside the ISA
// namespace, after math.h and rowops.h. Internal linkage (see math.h).
namespace {
namespace generic {

template <bool U8>
using QType = typename std::conditional<U8, std::uint8_t, std::int8_t>::type;

// saturate(round_half_even(v) + zp), v already scaled; NaN -> the low bound.
template <bool U8>
inline QType<U8> quant1(float v, float fzp) {
  const float lo = U8 ? 0.f : -128.f, hi = U8 ? 255.f : 127.f;
  v = !(v >= -4194304.f) ? -4194304.f : (v > 4194304.f ? 4194304.f : v);
  v = round_even(v) + fzp;
  v = v < lo ? lo : (v > hi ? hi : v);
  return static_cast<QType<U8>>(static_cast<std::int32_t>(v));
}

// PC: per-element parameters scale[i], zp[i] (per-channel on the last axis); zp may be null.
template <bool U8, bool PC>
void quantize_row(const float* __restrict x, index_t n, const float* scale, const std::int32_t* zp, void* qv) {
  QType<U8>* __restrict q = static_cast<QType<U8>*>(qv);
  if (PC) {
    for (index_t i = 0; i < n; ++i) q[i] = quant1<U8>(x[i] / scale[i], zp ? static_cast<float>(zp[i]) : 0.f);
  } else {
    const float s = scale[0], fzp = zp ? static_cast<float>(zp[0]) : 0.f;
    for (index_t i = 0; i < n; ++i) q[i] = quant1<U8>(x[i] / s, fzp);
  }
}

template <bool U8, bool PC>
void requantize_row(const std::int32_t* __restrict x, index_t n, const float* scale, const std::int32_t* zp, void* qv) {
  QType<U8>* __restrict q = static_cast<QType<U8>*>(qv);
  if (PC) {
    for (index_t i = 0; i < n; ++i)
      q[i] = quant1<U8>(static_cast<float>(x[i]) * scale[i], zp ? static_cast<float>(zp[i]) : 0.f);
  } else {
    const float s = scale[0], fzp = zp ? static_cast<float>(zp[0]) : 0.f;
    for (index_t i = 0; i < n; ++i) q[i] = quant1<U8>(static_cast<float>(x[i]) * s, fzp);
  }
}

template <bool U8, bool PC>
void dequantize_row(const void* qv, index_t n, const float* scale, const std::int32_t* zp, float* __restrict y) {
  const QType<U8>* __restrict q = static_cast<const QType<U8>*>(qv);
  if (PC) {
    for (index_t i = 0; i < n; ++i) y[i] = static_cast<float>(static_cast<std::int32_t>(q[i]) - (zp ? zp[i] : 0)) * scale[i];
  } else {
    const float s = scale[0];
    const std::int32_t z = zp ? zp[0] : 0;
    for (index_t i = 0; i < n; ++i) y[i] = static_cast<float>(static_cast<std::int32_t>(q[i]) - z) * s;
  }
}

void unary_row(UnaryOp op, const float* __restrict x, index_t n, float* __restrict y) {
  switch (op) {
    case UnaryOp::erf: for (index_t i = 0; i < n; ++i) y[i] = erf_f(x[i]); break;
    case UnaryOp::tanh: for (index_t i = 0; i < n; ++i) y[i] = tanh_f(x[i]); break;
    case UnaryOp::gelu_erf: for (index_t i = 0; i < n; ++i) y[i] = gelu_erf_f(x[i]); break;
    case UnaryOp::gelu_tanh: for (index_t i = 0; i < n; ++i) y[i] = gelu_tanh_f(x[i]); break;
  }
}

// y = softmax(x + mask) over one row; mask may be null; y may alias x.
void softmax_masked_row(const float* x, const float* __restrict mask, index_t n, float* y) {
  if (mask) {
    for (index_t i = 0; i < n; ++i) y[i] = x[i] + mask[i];
  } else if (y != x) {
    for (index_t i = 0; i < n; ++i) y[i] = x[i];
  }
  softmax_row(y, n);
}

// One LayerNorm row (see eltwise.h); y may alias x only without a residual.
void layernorm_row(const float* __restrict x, const float* __restrict res, const float* __restrict g,
                   const float* __restrict b, float eps, index_t N, float* y, float* sum_out, const QuantOut& qo,
                   std::uint8_t* qrow) {
  const float* s = x;
  if (res) {
    float* t = sum_out ? sum_out : y;
    for (index_t i = 0; i < N; ++i) t[i] = x[i] + res[i];
    s = t;
  }
  const float mean = row_sum(s, N) / static_cast<float>(N);
  const float var = row_sq_dev(s, N, mean) / static_cast<float>(N);
  const float inv = 1.f / std::sqrt(var + eps);
  if (b) {
    for (index_t i = 0; i < N; ++i) y[i] = (s[i] - mean) * inv * g[i] + b[i];
  } else {
    for (index_t i = 0; i < N; ++i) y[i] = (s[i] - mean) * inv * g[i];
  }
  if (qrow) quantize_row<true, false>(y, N, &qo.scale, &qo.zero_point, qrow);
}

void to_bf16_row(const float* __restrict x, index_t n, std::uint16_t* __restrict y) {
  for (index_t i = 0; i < n; ++i) y[i] = f32_to_bf16(x[i]);
}
void from_bf16_row(const std::uint16_t* __restrict x, index_t n, float* __restrict y) {
  for (index_t i = 0; i < n; ++i) y[i] = bf16_to_f32(x[i]);
}

// lo = min(0, x...), hi = max(0, x...) (16 independent lanes) and whether every element is finite, in one
// read of the row.
bool range_row(const float* __restrict x, index_t n, float* lo, float* hi) {
  float l[16] = {0}, h[16] = {0};
  int bad = 0;
  index_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) {
      const float v = x[i + j];
      l[j] = v < l[j] ? v : l[j];
      h[j] = v > h[j] ? v : h[j];
      bad |= !(std::fabs(v) <= 3.402823466e38f);
    }
  float mn = 0.f, mx = 0.f;
  for (int j = 0; j < 16; ++j) { mn = l[j] < mn ? l[j] : mn; mx = h[j] > mx ? h[j] : mx; }
  for (; i < n; ++i) {
    mn = x[i] < mn ? x[i] : mn;
    mx = x[i] > mx ? x[i] : mx;
    bad |= !(std::fabs(x[i]) <= 3.402823466e38f);
  }
  *lo = mn;
  *hi = mx;
  return bad == 0;
}

// The range alone: range_row's loop (one loop for both).
void minmax_row(const float* __restrict x, index_t n, float* lo, float* hi) { (void)range_row(x, n, lo, hi); }

// q = saturate(round_half_even(x * inv) + zp) as u8 (a dynamic grid's row: see quantize_rows_dynamic_u8).
void quantize_u8_mul_row(const float* __restrict x, index_t n, float inv, std::int32_t zp, std::uint8_t* __restrict q) {
  const float fzp = static_cast<float>(zp);
  for (index_t i = 0; i < n; ++i) q[i] = quant1<true>(x[i] * inv, fzp);
}

}  // namespace generic
}  // namespace
