// Element-wise kernel drivers: split the work into tasks and call the row
// kernels of the including TU (ref: rows_generic.h; avx2: rows_avx2.h over
// rows_generic.h; avx512: rows_avx512.h). Include inside exactly one
// `namespace graphopt::kernels::<isa> {` block per TU, after the row kernels.
//
// Parallelism: the caller-participating pool (common/thread_pool.h), not an
// OpenMP region, whose closing barrier stalls on a descheduled thread when
// the machine is shared. Tasks hold >= kTask elements, and inputs under
// kParallelMin run on the caller alone: waking a worker costs more than a
// MiniLM-sized (128 x 384) row op.

namespace {

constexpr index_t kTask = 1 << 14;         // elements per task (at least; whole rows where rows are atomic)
constexpr index_t kParallelMin = 1 << 16;  // total elements below which everything runs on the caller

template <class F>
void run_tasks(index_t ntasks, index_t total, const F& f) {
  const int threads = total >= kParallelMin && ntasks > 1 ? omp_get_max_threads() : 1;
  if (threads <= 1) {
    for (index_t t = 0; t < ntasks; ++t) f(t);
    return;
  }
  parallel_tasks(ntasks, threads, [](void* ctx, std::int64_t t) { (*static_cast<const F*>(ctx))(t); },
                 const_cast<F*>(&f));
}

// f(r, c0, c1) over the pieces of a [rows, len] grid: long rows split into
// column chunks, short rows grouped so each task holds >= kTask elements.
template <class F>
void for_grid(index_t rows, index_t len, const F& f) {
  if (rows <= 0 || len <= 0) return;
  const index_t total = rows * len;
  if (len >= kTask) {
    const index_t per_row = (len + kTask - 1) / kTask;
    run_tasks(rows * per_row, total, [&](index_t t) {
      const index_t r = t / per_row, c0 = (t % per_row) * kTask;
      f(r, c0, c0 + kTask < len ? c0 + kTask : len);
    });
  } else {
    const index_t rpt = kTask / len;  // >= 1
    run_tasks((rows + rpt - 1) / rpt, total, [&](index_t t) {
      const index_t r1 = (t + 1) * rpt < rows ? (t + 1) * rpt : rows;
      for (index_t r = t * rpt; r < r1; ++r) f(r, index_t{0}, len);
    });
  }
}

// The three quantization kernels walk x as [outer, C, inner] the same way:
// per-tensor -> one long row; per-channel with inner == 1 (the last axis) ->
// rows of C elements with per-element parameters; otherwise rows of `inner`
// elements sharing channel c's parameters. row(off, n, scale*, zp*, per_element).
template <class Row>
void for_quant_axis(const QuantAxis& a, const Row& row) {
  const std::int32_t* zp = a.zero_point;
  if (a.n_param == 1) {
    for_grid(1, a.outer * a.C * a.inner, [&](index_t, index_t c0, index_t c1) { row(c0, c1 - c0, a.scale, zp, false); });
  } else if (a.inner == 1) {
    for_grid(a.outer, a.C, [&](index_t r, index_t c0, index_t c1) {
      row(r * a.C + c0, c1 - c0, a.scale + c0, zp ? zp + c0 : nullptr, true);
    });
  } else {
    for_grid(a.outer * a.C, a.inner, [&](index_t r, index_t c0, index_t c1) {
      const index_t c = r % a.C;
      row(r * a.inner + c0, c1 - c0, a.scale + c, zp ? zp + c : nullptr, false);
    });
  }
}

}  // namespace

void quantize(const QuantJob& j) {
  auto* q = static_cast<std::uint8_t*>(j.q);
  for_quant_axis(j.ax, [&](index_t off, index_t n, const float* s, const std::int32_t* z, bool pe) {
    if (j.is_u8) (pe ? quantize_row<true, true> : quantize_row<true, false>)(j.x + off, n, s, z, q + off);
    else (pe ? quantize_row<false, true> : quantize_row<false, false>)(j.x + off, n, s, z, q + off);
  });
}

void requantize(const RequantJob& j) {
  auto* q = static_cast<std::uint8_t*>(j.q);
  for_quant_axis(j.ax, [&](index_t off, index_t n, const float* s, const std::int32_t* z, bool pe) {
    if (j.is_u8) (pe ? requantize_row<true, true> : requantize_row<true, false>)(j.x + off, n, s, z, q + off);
    else (pe ? requantize_row<false, true> : requantize_row<false, false>)(j.x + off, n, s, z, q + off);
  });
}

void dequantize(const DequantJob& j) {
  const auto* q = static_cast<const std::uint8_t*>(j.q);
  for_quant_axis(j.ax, [&](index_t off, index_t n, const float* s, const std::int32_t* z, bool pe) {
    if (j.is_u8) (pe ? dequantize_row<true, true> : dequantize_row<true, false>)(q + off, n, s, z, j.y + off);
    else (pe ? dequantize_row<false, true> : dequantize_row<false, false>)(q + off, n, s, z, j.y + off);
  });
}

// One row on its own dynamic u8 grid: the range and the finite check in one read, then the
// quantization while the row is in L1. A row with a NaN or an infinity gets scale NaN.
inline void dynamic_row(const float* x, index_t n, std::uint8_t* q, float* scale, std::int32_t* zp) {
  float lo = 0.f, hi = 0.f, sc = 1.f;
  std::int32_t z = 0;
  const bool finite = range_row(x, n, &lo, &hi);
  dynamic_u8_grid(lo, hi, &sc, &z);
  quantize_u8_mul_row(x, n, 1.f / sc, z, q);
  *scale = finite ? sc : std::nanf("");
  *zp = z;
}

void quantize_rows_dynamic(const DynRowsJob& j) {
  for_grid(j.rows, j.n < kTask ? j.n : kTask, [&](index_t r, index_t, index_t) {  // rows are atomic
    dynamic_row(j.x + r * j.n, j.n, j.q + r * j.n, j.scale + r, j.zp + r);
  });
}

void layernorm(const LayerNormJob& j) {
  const index_t N = j.N;
  for_grid(j.rows, N < kTask ? N : kTask, [&](index_t r, index_t, index_t) {  // rows are atomic
    const index_t o = r * N;
    // The rows write s to sum_out only when they compute it (with a residual); without one s is
    // x itself, and sum_out must still receive it (eltwise.h): never leave the output unwritten.
    if (!j.res && j.sum_out && j.sum_out != j.x)
      for (index_t i = 0; i < N; ++i) j.sum_out[o + i] = j.x[o + i];
    const bool dyn = j.qo.row_scale != nullptr;
    layernorm_row(j.x + o, j.res ? j.res + o : nullptr, j.gamma, j.beta, j.eps, N, j.y + o,
                  j.sum_out ? j.sum_out + o : nullptr, j.qo, j.qo.q && !dyn ? j.qo.q + o : nullptr);
    if (dyn) dynamic_row(j.y + o, N, j.qo.q + o, j.qo.row_scale + r, j.qo.row_zp + r);
  });
}

void softmax(const SoftmaxJob& j) {
  const index_t N = j.N, group = j.mask ? j.rows / j.mask_rows : 1;
  for_grid(j.rows, N < kTask ? N : kTask, [&](index_t r, index_t, index_t) {  // rows are atomic
    softmax_masked_row(j.x + r * N, j.mask ? j.mask + (r / group) * N : nullptr, N, j.y + r * N);
  });
}

void unary(const UnaryJob& j) {
  for_grid(1, j.n, [&](index_t, index_t c0, index_t c1) { unary_row(j.op, j.x + c0, c1 - c0, j.y + c0); });
}

void convert(const CvtJob& j) {
  for_grid(1, j.n, [&](index_t, index_t c0, index_t c1) {
    if (j.to_bf16) to_bf16_row(static_cast<const float*>(j.x) + c0, c1 - c0, static_cast<std::uint16_t*>(j.y) + c0);
    else from_bf16_row(static_cast<const std::uint16_t*>(j.x) + c0, c1 - c0, static_cast<float*>(j.y) + c0);
  });
}

void minmax(const MinMaxJob& j) {
  // Fixed partition (at most 64 parts) so the per-part results need no lock.
  const index_t parts = j.n >= kParallelMin ? (j.n + kTask - 1) / kTask < 64 ? (j.n + kTask - 1) / kTask : 64 : 1;
  const index_t size = (j.n + parts - 1) / parts;
  float lo[64], hi[64];
  run_tasks(parts, j.n, [&](index_t t) {
    const index_t b = t * size, e = b + size < j.n ? b + size : j.n;
    lo[t] = hi[t] = 0.f;
    if (b < e) minmax_row(j.x + b, e - b, &lo[t], &hi[t]);
  });
  float l = 0.f, h = 0.f;
  for (index_t t = 0; t < parts; ++t) {
    l = lo[t] < l ? lo[t] : l;
    h = hi[t] > h ? hi[t] : h;
  }
  *j.lo = l;
  *j.hi = h;
}
