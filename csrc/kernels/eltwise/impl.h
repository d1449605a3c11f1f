// Element-wise kernels written once as plain loops that the compiler
// vectorises under each ISA TU's flags. Include inside exactly one
// `namespace graphopt::kernels::<isa> {` block per TU, after the std headers.
//
// Reductions use 16 independent lanes so they vectorise without
// -ffast-math (which the build never uses: rounding must stay IEEE).

namespace {

constexpr index_t kChunk = 1 << 14;  // elements per parallel task
constexpr double kParallelMin = 1 << 15;

template <bool U8>
void quantize_row(const float* __restrict x, index_t n, float scale, std::int32_t zp, void* qv) {
  const float lo = U8 ? 0.f : -128.f, hi = U8 ? 255.f : 127.f;
  const float fzp = static_cast<float>(zp);
  using Q = typename std::conditional<U8, std::uint8_t, std::int8_t>::type;
  Q* __restrict q = static_cast<Q*>(qv);
  for (index_t i = 0; i < n; ++i) {
    float v = x[i] / scale;
    v = !(v >= -4194304.f) ? -4194304.f : (v > 4194304.f ? 4194304.f : v);
    v = round_even(v) + fzp;
    v = v < lo ? lo : (v > hi ? hi : v);
    q[i] = static_cast<Q>(static_cast<std::int32_t>(v));
  }
}

template <bool U8>
void requantize_row(const std::int32_t* __restrict x, index_t n, float scale, std::int32_t zp, void* qv) {
  const float lo = U8 ? 0.f : -128.f, hi = U8 ? 255.f : 127.f;
  const float fzp = static_cast<float>(zp);
  using Q = typename std::conditional<U8, std::uint8_t, std::int8_t>::type;
  Q* __restrict q = static_cast<Q*>(qv);
  for (index_t i = 0; i < n; ++i) {
    float v = static_cast<float>(x[i]) * scale;
    v = !(v >= -4194304.f) ? -4194304.f : (v > 4194304.f ? 4194304.f : v);
    v = round_even(v) + fzp;
    v = v < lo ? lo : (v > hi ? hi : v);
    q[i] = static_cast<Q>(static_cast<std::int32_t>(v));
  }
}

template <bool U8>
void dequantize_row(const void* qv, index_t n, float scale, std::int32_t zp, float* __restrict y) {
  using Q = typename std::conditional<U8, std::uint8_t, std::int8_t>::type;
  const Q* __restrict q = static_cast<const Q*>(qv);
  for (index_t i = 0; i < n; ++i) y[i] = static_cast<float>(static_cast<std::int32_t>(q[i]) - zp) * scale;
}

// Runs f(row, begin, end) over [rows, inner] split into chunks, in parallel when large.
template <class F>
void for_chunks(index_t rows, index_t inner, F f) {
  const index_t per_row = (inner + kChunk - 1) / kChunk;
  const index_t tasks = rows * per_row;
  const bool par = static_cast<double>(rows) * static_cast<double>(inner) >= kParallelMin && tasks > 1;
#pragma omp parallel for schedule(static) if (par)
  for (index_t t = 0; t < tasks; ++t) {
    const index_t r = t / per_row, c0 = (t % per_row) * kChunk;
    const index_t c1 = c0 + kChunk < inner ? c0 + kChunk : inner;
    f(r, c0, c1);
  }
}

}  // namespace

void quantize(const QuantJob& j) {
  const QuantAxis& a = j.ax;
  const std::size_t esz = 1;
  for_chunks(a.outer * a.C, a.inner, [&](index_t r, index_t c0, index_t c1) {
    const index_t c = r % a.C, p = a.n_param == 1 ? 0 : c;
    const std::int32_t zp = a.zero_point ? a.zero_point[p] : 0;
    const index_t off = r * a.inner + c0;
    void* dst = static_cast<std::uint8_t*>(j.q) + off * esz;
    if (j.is_u8) quantize_row<true>(j.x + off, c1 - c0, a.scale[p], zp, dst);
    else quantize_row<false>(j.x + off, c1 - c0, a.scale[p], zp, dst);
  });
}

void dequantize(const DequantJob& j) {
  const QuantAxis& a = j.ax;
  for_chunks(a.outer * a.C, a.inner, [&](index_t r, index_t c0, index_t c1) {
    const index_t c = r % a.C, p = a.n_param == 1 ? 0 : c;
    const std::int32_t zp = a.zero_point ? a.zero_point[p] : 0;
    const index_t off = r * a.inner + c0;
    const void* src = static_cast<const std::uint8_t*>(j.q) + off;
    if (j.is_u8) dequantize_row<true>(src, c1 - c0, a.scale[p], zp, j.y + off);
    else dequantize_row<false>(src, c1 - c0, a.scale[p], zp, j.y + off);
  });
}

void requantize(const RequantJob& j) {
  const QuantAxis& a = j.ax;
  for_chunks(a.outer * a.C, a.inner, [&](index_t r, index_t c0, index_t c1) {
    const index_t c = r % a.C, p = a.n_param == 1 ? 0 : c;
    const std::int32_t zp = a.zero_point ? a.zero_point[p] : 0;
    const index_t off = r * a.inner + c0;
    void* dst = static_cast<std::uint8_t*>(j.q) + off;
    if (j.is_u8) requantize_row<true>(j.x + off, c1 - c0, a.scale[p], zp, dst);
    else requantize_row<false>(j.x + off, c1 - c0, a.scale[p], zp, dst);
  });
}

void layernorm(const LayerNormJob& j) {
  const index_t N = j.N;
  const bool par = static_cast<double>(j.rows) * static_cast<double>(N) >= kParallelMin && j.rows > 1;
#pragma omp parallel for schedule(static) if (par)
  for (index_t r = 0; r < j.rows; ++r) {
    const float* __restrict x = j.x + r * N;
    float* y = j.y + r * N;  // may alias s (residual without sum_out)
    const float* s = x;
    if (j.res) {
      const float* __restrict rr = j.res + r * N;
      float* t = j.sum_out ? j.sum_out + r * N : y;
      for (index_t i = 0; i < N; ++i) t[i] = x[i] + rr[i];
      s = t;
    }
    const float mean = row_sum(s, N) / static_cast<float>(N);
    const float var = row_sq_dev(s, N, mean) / static_cast<float>(N);
    const float inv = 1.f / std::sqrt(var + j.eps);
    const float* __restrict g = j.gamma;
    if (j.beta) {
      const float* __restrict b = j.beta;
      for (index_t i = 0; i < N; ++i) y[i] = (s[i] - mean) * inv * g[i] + b[i];
    } else {
      for (index_t i = 0; i < N; ++i) y[i] = (s[i] - mean) * inv * g[i];
    }
  }
}

void softmax(const SoftmaxJob& j) {
  const index_t N = j.N, group = j.mask ? j.rows / j.mask_rows : 1;
  const bool par = static_cast<double>(j.rows) * static_cast<double>(N) >= kParallelMin && j.rows > 1;
#pragma omp parallel for schedule(static) if (par)
  for (index_t r = 0; r < j.rows; ++r) {
    const float* __restrict x = j.x + r * N;
    float* __restrict y = j.y + r * N;
    if (j.mask) {
      const float* __restrict m = j.mask + (r / group) * N;
      for (index_t i = 0; i < N; ++i) y[i] = x[i] + m[i];
    } else if (y != x) {
      for (index_t i = 0; i < N; ++i) y[i] = x[i];
    }
    softmax_row(y, N);
  }
}

void gelu(const GeluJob& j) {
  for_chunks(1, j.n, [&](index_t, index_t c0, index_t c1) {
    const float* __restrict x = j.x + c0;
    float* __restrict y = j.y + c0;
    const index_t n = c1 - c0;
    if (j.tanh_approx) for (index_t i = 0; i < n; ++i) y[i] = gelu_tanh_f(x[i]);
    else for (index_t i = 0; i < n; ++i) y[i] = gelu_erf_f(x[i]);
  });
}

void convert(const CvtJob& j) {
  for_chunks(1, j.n, [&](index_t, index_t c0, index_t c1) {
    const index_t n = c1 - c0;
    if (j.to_bf16) {
      const float* __restrict x = static_cast<const float*>(j.x) + c0;
      std::uint16_t* __restrict y = static_cast<std::uint16_t*>(j.y) + c0;
      for (index_t i = 0; i < n; ++i) y[i] = f32_to_bf16(x[i]);
    } else {
      const std::uint16_t* __restrict x = static_cast<const std::uint16_t*>(j.x) + c0;
      float* __restrict y = static_cast<float*>(j.y) + c0;
      for (index_t i = 0; i < n; ++i) y[i] = bf16_to_f32(x[i]);
    }
  });
}
