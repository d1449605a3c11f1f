// AVX-512 pieces shared by the fp32 (avx512.cpp) and bf16 (avx512_bf16.cpp) attention
// kernels. Include only from TUs built with the AVX-512 flags; internal linkage (see math.h).
//
// Blocking (per task = one head and a range of query rows; per block of 32 queries):
//   S^T [L, 32] = K Q^T      keys by rows, the 32 queries across two zmm lanes, so K is
//                            read in place (one broadcast per key and d) and only the
//                            small Q block is transposed;
//   column softmax           element-wise over rows (max, exp, sum), 1/sum kept per query;
//   O [32, D] = P V          one broadcast of P^T[j][i] per query row, V rows read as
//                            vectors; 1/sum (and the int8 V scale) applied at the store.
// The score block of one query block (L x 128 bytes) stays in L1/L2 between the passes.
#pragma once
#include <immintrin.h>

#include <cmath>
#include <type_traits>

#include "../common/vmath_avx512.h"  // to_bf16_v
#include "task.h"

namespace graphopt::kernels {
namespace {

constexpr index_t kQb = 32;  // queries per block (two zmm panels)
constexpr int kKeyRows = 12; // keys per score micro-tile: 12 x 2 zmm accumulators
constexpr float kLog2e = 1.44269504088896341f;

// A mask value in base 2 (scaled by log2(e)). Finite masks below -FLT_MAX / log2(e) -- the
// dtype-minimum masks transformers builds (torch.finfo.min, and sums of two) -- would overflow to
// -inf when scaled, so a query whose every key is masked that way summed to 0 (a zero row)
// where the reference (ref.cpp, onnxruntime) spreads it evenly over the equally masked keys.
// They are clamped to the most negative value that scales finitely; -inf stays -inf.
inline float mask_log2(float m) {
  constexpr float kMin = -2.35e38f;  // * log2(e) = -3.39e38 > -FLT_MAX
  return (m < kMin && m != -INFINITY ? kMin : m) * kLog2e;
}

// Calls F<M, N>::run(args...) for the runtime m in [1, M] (micro-kernel remainders).
template <template <int, int> class F, int M, int N>
struct ByRows {
  template <class... A>
  static void run(int m, A... args) {
    if (m >= M) F<M, N>::run(args...);
    else if constexpr (M > 1) ByRows<F, M - 1, N>::run(m, args...);
  }
};

// Rows of P V per micro-tile for `np` output panels (<= 24 accumulators).
constexpr int pv_rows(int np) { return np <= 2 ? 12 : np == 3 ? 8 : 6; }

// Output columns in groups of up to 4 panels of 16, the last panel masked by `tail`:
// f(std::integral_constant<int, NP>, first panel of the group, mask of its last panel).
template <class F>
inline void for_panel_groups(index_t panels, __mmask16 tail, F&& f) {
  for (index_t g = 0; g < panels; g += 4) {
    const int np = static_cast<int>(panels - g < 4 ? panels - g : 4);
    const __mmask16 tl = g + np == panels ? tail : __mmask16(0xffff);
    switch (np) {
      case 1: f(std::integral_constant<int, 1>{}, g, tl); break;
      case 2: f(std::integral_constant<int, 2>{}, g, tl); break;
      case 3: f(std::integral_constant<int, 3>{}, g, tl); break;
      default: f(std::integral_constant<int, 4>{}, g, tl); break;
    }
  }
}

inline __mmask16 first(index_t n) {
  return n >= 16 ? __mmask16(0xffff) : n <= 0 ? __mmask16(0) : static_cast<__mmask16>((1u << n) - 1);
}

// 16 values of a row as fp32 (raw int8 values for s8), the lanes outside `m` zero.
inline __m512 load16(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
inline __m512 load16(const std::uint16_t* p, __mmask16 m) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}
inline __m512 load16(const std::int8_t* p, __mmask16 m) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, p)));
}

// r[i] lane j -> r[j] lane i for 16 x 16 32-bit lanes: pairs of rows interleaved by 32 then
// 64 bits (4 x 4 blocks inside each 128-bit quarter), then the quarters exchanged.
inline void transpose16(__m512i (&r)[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {  // r[i + e], quarter q: rows i..i+3 of column 4q + e
    r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int e = 0; e < 4; ++e) {
    const __m512i x0 = _mm512_shuffle_i32x4(r[e], r[4 + e], 0x44), x1 = _mm512_shuffle_i32x4(r[e], r[4 + e], 0xee);
    const __m512i x2 = _mm512_shuffle_i32x4(r[8 + e], r[12 + e], 0x44), x3 = _mm512_shuffle_i32x4(r[8 + e], r[12 + e], 0xee);
    t[e] = _mm512_shuffle_i32x4(x0, x2, 0x88);
    t[4 + e] = _mm512_shuffle_i32x4(x0, x2, 0xdd);
    t[8 + e] = _mm512_shuffle_i32x4(x1, x3, 0x88);
    t[12 + e] = _mm512_shuffle_i32x4(x1, x3, 0xdd);
  }
  for (int i = 0; i < 16; ++i) r[i] = t[i];
}

// The Q block transposed: dst[c * kQb + i] = row(i, c) for c < n 32-bit columns and i < nq
// queries (lanes of rows past nq are zero). row(i, c0) gives columns c0..c0+15 of query i.
template <class RowFn>
inline void transpose_rows(index_t nq, index_t n, void* dst, RowFn row) {
  auto* o = static_cast<std::uint32_t*>(dst);
  for (index_t h = 0; h * 16 < nq; ++h)
    for (index_t c0 = 0; c0 < n; c0 += 16) {
      __m512i r[16];
      for (int i = 0; i < 16; ++i) r[i] = h * 16 + i < nq ? row(h * 16 + i, c0) : _mm512_setzero_si512();
      transpose16(r);
      const index_t m = n - c0 < 16 ? n - c0 : 16;
      for (index_t c = 0; c < m; ++c) _mm512_store_si512(o + (c0 + c) * kQb + 16 * h, r[c]);
    }
}

// Adds a full [Sq, Sk] mask (mask_q > 1, in base 2) to the transposed scores of nq queries.
inline void add_query_mask(float* st, index_t L, const float* m, index_t Sk, index_t nq) {
  for (index_t i = 0; i < nq; ++i)
    for (index_t j = 0; j < L; ++j) st[j * kQb + i] += mask_log2(m[i * Sk + j]);
}

// The scores are kept in base 2 (scaled by log2(e) together with the logit scale, the mask
// likewise), so a softmax numerator is 2^t with t = score - max <= 0 (or -inf), split into
// n = round(t) and f in [-1/2, 1/2]; 2^f by a minimax polynomial (relative error
// 2.3e-7 at degree 5; 7.5e-5 at degree 3, for bf16 products, where P is then rounded to bf16's
// 2^-9 anyway); scalef applies 2^n. Below 2^-126 (and for -inf) the result is exactly 0, so a
// query whose keys are all -inf sums to 0. Cheaper than exp_v (no range clamps or integer
// exponent assembly are needed for t <= 0).
template <int DEG>
inline __m512 exp2_nonpos(__m512 t) {
  const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(t, n);
  __m512 p;
  if constexpr (DEG == 5) {
    p = _mm512_fmadd_ps(_mm512_set1_ps(0.001327644451521337f), f, _mm512_set1_ps(0.00967553723603487f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.05550713464617729f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.24022120237350464f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.6931469440460205f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0000001192092896f));
  } else {
    static_assert(DEG == 3, "degree 3 or 5");
    p = _mm512_fmadd_ps(_mm512_set1_ps(0.05517132207751274f), f, _mm512_set1_ps(0.24261054396629333f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.6932609677314758f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.9999281167984009f));
  }
  const __mmask16 live = _mm512_cmp_ps_mask(t, _mm512_set1_ps(-126.f), _CMP_GT_OQ);
  return _mm512_maskz_scalef_ps(live, p, n);
}

// Column softmax numerators of st [L, kQb] (first NQ panels, base-2 scores), handed to
// sink(j, n, e_j, e_j+1) two key rows at a time (e_L = 0 past an odd L); inv[i] = os / sum_i
// (0 for an all -inf query). mx: the column maxima if the score pass kept them, else null.
template <int NQ, int DEG, class Sink>
void softmax_cols(const float* st, index_t L, const float* mx_in, float os, float* inv, Sink sink) {
  __m512 mx[NQ], sum[NQ];
  for (int n = 0; n < NQ; ++n) sum[n] = _mm512_setzero_ps();
  if (mx_in) {
    for (int n = 0; n < NQ; ++n) mx[n] = _mm512_load_ps(mx_in + 16 * n);
  } else {
    for (int n = 0; n < NQ; ++n) mx[n] = _mm512_set1_ps(-INFINITY);
    for (index_t j = 0; j < L; ++j)
      for (int n = 0; n < NQ; ++n) mx[n] = _mm512_max_ps(mx[n], _mm512_load_ps(st + j * kQb + 16 * n));
  }
  // an all -inf column: max 0, so its exps are exactly 0
  for (int n = 0; n < NQ; ++n)
    mx[n] = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(mx[n], _mm512_set1_ps(-INFINITY), _CMP_NEQ_OQ), mx[n]);
  for (index_t j = 0; j < L; j += 2)
    for (int n = 0; n < NQ; ++n) {
      const __m512 e0 = exp2_nonpos<DEG>(_mm512_sub_ps(_mm512_load_ps(st + j * kQb + 16 * n), mx[n]));
      const __m512 e1 = j + 1 < L ? exp2_nonpos<DEG>(_mm512_sub_ps(_mm512_load_ps(st + (j + 1) * kQb + 16 * n), mx[n]))
                                  : _mm512_setzero_ps();
      sum[n] = _mm512_add_ps(sum[n], _mm512_add_ps(e0, e1));
      sink(j, n, e0, e1);
    }
  for (int n = 0; n < NQ; ++n) {
    const __mmask16 pos = _mm512_cmp_ps_mask(sum[n], _mm512_setzero_ps(), _CMP_GT_OQ);
    _mm512_store_ps(inv + 16 * n, _mm512_maskz_div_ps(pos, _mm512_set1_ps(os), sum[n]));
  }
}

// Stores acc * cs + km (the key mask, base 2) as score rows and folds them into the column maxima.
template <int MK, int NQ>
inline void store_scores(__m512 (&acc)[MK][NQ], __m512 cs, const float* km, float* st, float* mx) {
  __m512 m[NQ];
#pragma GCC unroll 2
  for (int n = 0; n < NQ; ++n) m[n] = _mm512_load_ps(mx + 16 * n);
#pragma GCC unroll 12
  for (int r = 0; r < MK; ++r) {
    const __m512 mb = km ? _mm512_set1_ps(mask_log2(km[r])) : _mm512_setzero_ps();
#pragma GCC unroll 2
    for (int n = 0; n < NQ; ++n) {
      const __m512 y = _mm512_fmadd_ps(acc[r][n], cs, mb);
      _mm512_store_ps(st + r * kQb + 16 * n, y);
      m[n] = _mm512_max_ps(m[n], y);
    }
  }
#pragma GCC unroll 2
  for (int n = 0; n < NQ; ++n) _mm512_store_ps(mx + 16 * n, m[n]);
}

inline void reset_max(float* mx) {
  for (int n = 0; n < 2; ++n) _mm512_store_ps(mx + 16 * n, _mm512_set1_ps(-INFINITY));
}

// Stores 16 (or `tail`) outputs y at o, as fp32 or bf16.
inline void store_out(void* o, index_t off, __m512 y, __mmask16 tail, bool bf16) {
  if (bf16) _mm256_mask_storeu_epi16(static_cast<std::uint16_t*>(o) + off, tail, to_bf16_v(y));
  else _mm512_mask_storeu_ps(static_cast<float*>(o) + off, tail, y);
}

// Prefetches the K, V and Q rows of task t + 1 (the task this thread most likely runs next,
// always so on one thread) into L2 while task t computes, a few rows per score micro-tile so
// the misses overlap with the arithmetic. Rows of a head in [B, S, H*D] or packed QKV layouts
// lie kilobytes apart, which the hardware prefetchers do not follow: without this, a batch
// that does not fit in L2 waits on its cache misses one at a time.
struct NextRows {
  const char* base[3] = {nullptr, nullptr, nullptr};
  index_t stride[3] = {0, 0, 0}, rows[3] = {0, 0, 0};
  index_t bytes = 0, per_step = 0;
  int op = 3;
  index_t row = 0;

  template <class T>
  void init(const AttnPlan& p, std::int64_t t) {
    if (t + 1 >= p.tasks()) return;
    const AttentionArgs& a = p.a;
    const AttnTask cur = attn_task(p, t), nx = attn_task(p, t + 1);
    const index_t e = static_cast<index_t>(sizeof(T));
    const T* q = head_of<T>(a.q, a.q_st, nx.b, nx.h) + nx.r0 * a.q_st.seq;
    base[0] = reinterpret_cast<const char*>(head_of<T>(a.k, a.k_st, nx.b, kv_head(a, nx.h)));
    base[1] = reinterpret_cast<const char*>(head_of<T>(a.v, a.v_st, nx.b, kv_head(a, nx.h)));
    base[2] = reinterpret_cast<const char*>(q);
    stride[0] = a.k_st.seq * e; stride[1] = a.v_st.seq * e; stride[2] = a.q_st.seq * e;
    rows[0] = rows[1] = nx.L; rows[2] = nx.r1 - nx.r0;
    bytes = a.D * e;
    const index_t steps = ((cur.r1 - cur.r0 + kQb - 1) / kQb) * ((cur.L + kKeyRows - 1) / kKeyRows);
    per_step = (rows[0] + rows[1] + rows[2] + steps - 1) / steps;
    op = 0;
  }
  void step() {
    for (index_t n = per_step; n > 0 && op < 3; --n) {
      const char* r = base[op] + row * stride[op];
      for (index_t o = 0; o < bytes; o += 64) _mm_prefetch(r + o, _MM_HINT_T1);
      if (++row == rows[op]) { row = 0; ++op; }
    }
  }
};

// Output row pointer offset (elements) of query row i of the task's head.
inline index_t out_off(const AttentionArgs& a, const AttnTask& tk, index_t i) {
  return tk.b * a.out_st.batch + tk.h * a.out_st.head + i * a.out_st.seq;
}

}  // namespace
}  // namespace graphopt::kernels
