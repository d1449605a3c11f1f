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

#include "../common/vmath_avx512.h"
#include "task.h"

namespace graphopt::kernels {
namespace {

constexpr index_t kQb = 32;  // queries per block (two zmm panels)
constexpr int kKeyRows = 12; // keys per score micro-tile: 12 x 2 zmm accumulators

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

// Adds a full [Sq, Sk] mask (mask_q > 1) to the transposed scores of nq queries.
inline void add_query_mask(float* st, index_t L, const float* m, index_t Sk, index_t nq) {
  for (index_t i = 0; i < nq; ++i)
    for (index_t j = 0; j < L; ++j) st[j * kQb + i] += m[i * Sk + j];
}

// Column softmax numerators of st [L, kQb] in place (first NQ panels); inv[i] = os / sum_i.
// A query whose keys are all -inf gets max 0, exps of 0 and inv 0: a zero output row.
template <int NQ>
void softmax_cols(float* st, index_t L, float os, float* inv) {
  __m512 mx[NQ], sum[NQ];
  for (int n = 0; n < NQ; ++n) { mx[n] = _mm512_set1_ps(-INFINITY); sum[n] = _mm512_setzero_ps(); }
  for (index_t j = 0; j < L; ++j)
    for (int n = 0; n < NQ; ++n) mx[n] = _mm512_max_ps(mx[n], _mm512_load_ps(st + j * kQb + 16 * n));
  for (int n = 0; n < NQ; ++n)
    mx[n] = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(mx[n], _mm512_set1_ps(-INFINITY), _CMP_NEQ_OQ), mx[n]);
  for (index_t j = 0; j < L; ++j)
    for (int n = 0; n < NQ; ++n) {
      const __m512 e = exp_v(_mm512_sub_ps(_mm512_load_ps(st + j * kQb + 16 * n), mx[n]));
      _mm512_store_ps(st + j * kQb + 16 * n, e);
      sum[n] = _mm512_add_ps(sum[n], e);
    }
  for (int n = 0; n < NQ; ++n) {
    const __mmask16 pos = _mm512_cmp_ps_mask(sum[n], _mm512_setzero_ps(), _CMP_GT_OQ);
    _mm512_store_ps(inv + 16 * n, _mm512_maskz_div_ps(pos, _mm512_set1_ps(os), sum[n]));
  }
}

// Stores 16 (or `tail`) outputs y at o, as fp32 or bf16.
inline void store_out(void* o, index_t off, __m512 y, __mmask16 tail, bool bf16) {
  if (bf16) _mm256_mask_storeu_epi16(static_cast<std::uint16_t*>(o) + off, tail, to_bf16_v(y));
  else _mm512_mask_storeu_ps(static_cast<float*>(o) + off, tail, y);
}

// Output row pointer offset (elements) of query row i of the task's head.
inline index_t out_off(const AttentionArgs& a, const AttnTask& tk, index_t i) {
  return tk.b * a.out_st.batch + tk.h * a.out_st.head + i * a.out_st.seq;
}

}  // namespace
}  // namespace graphopt::kernels
