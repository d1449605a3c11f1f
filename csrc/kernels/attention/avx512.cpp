// Fused attention with AVX-512F, fp32 products (blocking in block_avx512.h). fp32 K and V
// are read in place through their strides; bf16 and int8 inputs (when the bf16 kernel is not
// available) are widened once per task. Flags set per file in CMakeLists.txt.
#include "block_avx512.h"

namespace graphopt::kernels::avx512 {
namespace {

// st[r][0..16*NQ) = (K[r] . qt[:, panel]) * cs (+ key mask km[r]) for MK keys.
template <int MK, int NQ>
struct Scores {
  static void run(const float* K, index_t ks, const float* qt, index_t D, __m512 cs, const float* km, float* st, float* mx) {
    __m512 acc[MK][NQ];
#pragma GCC unroll 12
    for (int r = 0; r < MK; ++r)
#pragma GCC unroll 2
      for (int n = 0; n < NQ; ++n) acc[r][n] = _mm512_setzero_ps();
    for (index_t d = 0; d < D; ++d) {
      __m512 q[NQ];
#pragma GCC unroll 2
      for (int n = 0; n < NQ; ++n) q[n] = _mm512_load_ps(qt + d * kQb + 16 * n);
#pragma GCC unroll 12
      for (int r = 0; r < MK; ++r) {
        const __m512 kb = _mm512_set1_ps(K[r * ks + d]);
#pragma GCC unroll 2
        for (int n = 0; n < NQ; ++n) acc[r][n] = _mm512_fmadd_ps(kb, q[n], acc[r][n]);
      }
    }
    store_scores(acc, cs, km, st, mx);
  }
};

// out rows r < MR, panels n < NP: (sum_j pt[j][r] V[j][16n..]) * inv[r]; the last panel masked by tail.
template <int MR, int NP>
struct PV {
  static void run(const float* pt, const float* V, index_t vs, index_t L, __mmask16 tail, const float* inv,
                  void* out, index_t off, index_t ostr, bool bf16) {
    __m512 acc[MR][NP];
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
      for (int n = 0; n < NP; ++n) acc[r][n] = _mm512_setzero_ps();
    for (index_t j = 0; j < L; ++j) {
      __m512 v[NP];
#pragma GCC unroll 4
      for (int n = 0; n < NP; ++n)
        v[n] = n + 1 < NP ? _mm512_loadu_ps(V + j * vs + 16 * n) : _mm512_maskz_loadu_ps(tail, V + j * vs + 16 * n);
#pragma GCC unroll 12
      for (int r = 0; r < MR; ++r) {
        const __m512 pb = _mm512_set1_ps(pt[j * kQb + r]);
#pragma GCC unroll 4
        for (int n = 0; n < NP; ++n) acc[r][n] = _mm512_fmadd_ps(pb, v[n], acc[r][n]);
      }
    }
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r) {
      const __m512 s = _mm512_set1_ps(inv[r]);
#pragma GCC unroll 4
      for (int n = 0; n < NP; ++n)
        store_out(out, off + r * ostr + 16 * n, _mm512_mul_ps(acc[r][n], s), n + 1 < NP ? __mmask16(0xffff) : tail, bf16);
    }
  }
};

template <int NQ>
void scores_block(const float* K, index_t ks, const float* qt, index_t D, index_t L, float cs, const float* km,
                  float* st, float* mx, NextRows& nx) {
  const __m512 c = _mm512_set1_ps(cs * kLog2e);
  reset_max(mx);
  for (index_t j = 0; j < L; j += kKeyRows) {
    nx.step();
    ByRows<Scores, kKeyRows, NQ>::run(static_cast<int>(L - j < kKeyRows ? L - j : kKeyRows), K + j * ks, ks, qt, D, c,
                                       km ? km + j : nullptr, st + j * kQb, mx);
  }
}

template <int NP>
void pv_block(const float* st, const float* V, index_t vs, index_t L, __mmask16 tail, const float* inv, void* out,
              index_t off, index_t ostr, bool bf16, index_t nq) {
  constexpr int MR = pv_rows(NP);
  for (index_t i = 0; i < nq; i += MR)
    ByRows<PV, MR, NP>::run(static_cast<int>(nq - i < MR ? nq - i : MR), st + i, V, vs, L, tail, inv + i, out,
                            off + i * ostr, ostr, bf16);
}

template <class T>
void task_t(const AttnPlan& p, std::int64_t t) {
  const AttentionArgs& a = p.a;
  const AttnTask tk = attn_task(p, t);
  const index_t D = a.D, L = tk.L, Sk = a.Sk;
  constexpr bool widen = !std::is_same<T, float>::value;
  Carve c;
  const std::size_t o_s = c.take<float>(L * kQb), o_q = c.take<float>(D * kQb), o_i = c.take<float>(2 * kQb),
                    o_k = c.take<float>(widen ? L * D : 0), o_v = c.take<float>(widen ? L * D : 0);
  auto* base = static_cast<unsigned char*>(attn_scratch(c.off));
  float* st = reinterpret_cast<float*>(base + o_s);
  float* qt = reinterpret_cast<float*>(base + o_q);
  float* inv = reinterpret_cast<float*>(base + o_i);
  float* mx = inv + kQb;
  const T* Kin = head_of<T>(a.k, a.k_st, tk.b, kv_head(a, tk.h));
  const T* Vin = head_of<T>(a.v, a.v_st, tk.b, kv_head(a, tk.h));
  const T* Q = head_of<T>(a.q, a.q_st, tk.b, tk.h);
  NextRows next;
  next.init<T>(p, t);
  const float* K;
  const float* V;
  index_t ks, vs;
  if constexpr (widen) {
    float* kf = reinterpret_cast<float*>(base + o_k);
    float* vf = reinterpret_cast<float*>(base + o_v);
    for (index_t j = 0; j < L; ++j)
      for (index_t d = 0; d < D; ++d) {
        kf[j * D + d] = raw_f32(Kin[j * a.k_st.seq + d]);
        vf[j * D + d] = raw_f32(Vin[j * a.v_st.seq + d]);
      }
    K = kf; V = vf; ks = vs = D;
  } else {
    K = Kin; V = Vin; ks = a.k_st.seq; vs = a.v_st.seq;
  }
  const float cs = logit_scale(a), os = out_scale(a);
  const float* mrow = mask_of(a, tk.b, tk.h);
  const float* km = a.mask_q == 1 ? mrow : nullptr;
  const index_t panels = (D + 15) / 16;
  const __mmask16 tail = static_cast<__mmask16>(0xffffu >> ((16 - D % 16) % 16));
  for (index_t i0 = tk.r0; i0 < tk.r1; i0 += kQb) {
    const index_t nq = tk.r1 - i0 < kQb ? tk.r1 - i0 : kQb;
    const index_t Lb = block_keys(p, tk, i0, nq);  // causal: this block's last key
    transpose_rows(nq, D, qt, [&](index_t i, index_t c0) {
      return _mm512_castps_si512(load16(Q + (i0 + i) * a.q_st.seq + c0, first(D - c0)));
    });
    if (nq > 16) scores_block<2>(K, ks, qt, D, Lb, cs, km, st, mx, next);
    else scores_block<1>(K, ks, qt, D, Lb, cs, km, st, mx, next);
    const bool full = mrow && a.mask_q > 1;
    if (full) add_query_mask(st, Lb, mrow + i0 * Sk, Sk, nq);
    // numerators back into st, in place
    auto keep = [st, Lb](index_t j, int n, __m512 e0, __m512 e1) {
      _mm512_store_ps(st + j * kQb + 16 * n, e0);
      if (j + 1 < Lb) _mm512_store_ps(st + (j + 1) * kQb + 16 * n, e1);
    };
    if (nq > 16) softmax_cols<2, 5>(st, Lb, full ? nullptr : mx, os, inv, keep);
    else softmax_cols<1, 5>(st, Lb, full ? nullptr : mx, os, inv, keep);
    // Output panels in groups of up to 4 (24 accumulators), the last group masked at D.
    const index_t off = out_off(a, tk, i0);
    for_panel_groups(panels, tail, [&](auto np, index_t g, __mmask16 tl) {
      pv_block<decltype(np)::value>(st, V + 16 * g, vs, Lb, tl, inv, a.out, off + 16 * g, a.out_st.seq, a.out_bf16, nq);
    });
  }
}

template <class T>
void run_t(const AttnPlan& p) {
  run_attention_tasks(p, [](void* ctx, std::int64_t t) { task_t<T>(*static_cast<const AttnPlan*>(ctx), t); },
                      const_cast<AttnPlan*>(&p));
}

}  // namespace

void attention(const AttnPlan& p) {
  switch (p.a.type) {
    case AttnType::f32: run_t<float>(p); break;
    case AttnType::bf16: run_t<std::uint16_t>(p); break;
    case AttnType::s8: run_t<std::int8_t>(p); break;
  }
}

}  // namespace graphopt::kernels::avx512
