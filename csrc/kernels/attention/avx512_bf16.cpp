// Fused attention with AVX512-BF16: both products with vdpbf16ps (pairs of bf16, fp32
// accumulation), softmax in fp32 (blocking in block_avx512.h). Built with the AVX-512 flags
// plus -mavx512bf16 (CMakeLists.txt).
//
// vdpbf16ps consumes pairs along the reduction: for S^T = K Q^T the pairs run along d (K rows
// as bf16, each pair one 32-bit broadcast; Q^T block as [D/2][32 queries][2]); for O = P V
// they run along the keys (P^T as [L/2][32][2], V as [L/2][D][2], packed once per task).
// int8 values are exact in bf16, so int8 inputs lose nothing before the products.
#include "block_avx512.h"

namespace graphopt::kernels::avx512_bf16 {
namespace {

inline __m256i bf16x16(__m512 x) { return (__m256i)_mm512_cvtneps_pbh(x); }
// 32 bf16: lo's 16 values, then hi's.
inline __m512i bf16x32(__m512 lo, __m512 hi) { return (__m512i)_mm512_cvtne2ps_pbh(hi, lo); }
// Lane i = (lo[i], hi[i]) as one bf16 pair.
inline __m512i pairs(__m512 lo, __m512 hi) {
  const __m512i zip = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5,
                                       20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  return _mm512_permutexvar_epi16(zip, bf16x32(lo, hi));
}

template <int MK, int NQ>
struct Scores {
  // st[r][0..16*NQ) = (K[r] . Q[:, panel]) * cs (+ key mask km[r]); K rows bf16 (ks in elements,
  // Dh pairs each), qt [Dh][kQb] pairs.
  static void run(const std::uint16_t* K, index_t ks, const std::uint32_t* qt, index_t Dh, __m512 cs,
                  const float* km, float* st, float* mx) {
    __m512 acc[MK][NQ];
#pragma GCC unroll 12
    for (int r = 0; r < MK; ++r)
#pragma GCC unroll 2
      for (int n = 0; n < NQ; ++n) acc[r][n] = _mm512_setzero_ps();
    for (index_t d = 0; d < Dh; ++d) {
      __m512bh q[NQ];
#pragma GCC unroll 2
      for (int n = 0; n < NQ; ++n) q[n] = (__m512bh)_mm512_load_si512(qt + d * kQb + 16 * n);
#pragma GCC unroll 12
      for (int r = 0; r < MK; ++r) {
        std::int32_t x;
        std::memcpy(&x, K + r * ks + 2 * d, 4);
        const __m512bh kb = (__m512bh)_mm512_set1_epi32(x);
#pragma GCC unroll 2
        for (int n = 0; n < NQ; ++n) acc[r][n] = _mm512_dpbf16_ps(acc[r][n], kb, q[n]);
      }
    }
    store_scores(acc, cs, km, st, mx);
  }
};

template <int MR, int NP>
struct PV {
  // out rows r < MR: (sum_j P[r][j] V[j][16n..]) * inv[r]; pt [Lh][kQb] pairs, vp [Lh][vld] pairs.
  static void run(const std::uint32_t* pt, const std::uint32_t* vp, index_t vld, index_t Lh, __mmask16 tail,
                  const float* inv, void* out, index_t off, index_t ostr, bool bf16) {
    __m512 acc[MR][NP];
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
      for (int n = 0; n < NP; ++n) acc[r][n] = _mm512_setzero_ps();
    for (index_t j = 0; j < Lh; ++j) {
      __m512bh v[NP];
#pragma GCC unroll 4
      for (int n = 0; n < NP; ++n) v[n] = (__m512bh)_mm512_load_si512(vp + j * vld + 16 * n);
#pragma GCC unroll 12
      for (int r = 0; r < MR; ++r) {
        const __m512bh pb = (__m512bh)_mm512_set1_epi32(static_cast<int>(pt[j * kQb + r]));
#pragma GCC unroll 4
        for (int n = 0; n < NP; ++n) acc[r][n] = _mm512_dpbf16_ps(acc[r][n], pb, v[n]);
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
void scores_block(const std::uint16_t* K, index_t ks, const std::uint32_t* qt, index_t Dh, index_t L, float cs,
                  const float* km, float* st, float* mx, NextRows& nx) {
  const __m512 c = _mm512_set1_ps(cs * kLog2e);
  reset_max(mx);
  for (index_t j = 0; j < L; j += kKeyRows) {
    nx.step();
    ByRows<Scores, kKeyRows, NQ>::run(static_cast<int>(L - j < kKeyRows ? L - j : kKeyRows), K + j * ks, ks, qt, Dh,
                                       c, km ? km + j : nullptr, st + j * kQb, mx);
  }
}

template <int NP>
void pv_block(const std::uint32_t* pt, const std::uint32_t* vp, index_t vld, index_t Lh, __mmask16 tail,
              const float* inv, void* out, index_t off, index_t ostr, bool bf16, index_t nq) {
  constexpr int MR = pv_rows(NP);
  for (index_t i = 0; i < nq; i += MR)
    ByRows<PV, MR, NP>::run(static_cast<int>(nq - i < MR ? nq - i : MR), pt + i, vp, vld, Lh, tail, inv + i, out,
                            off + i * ostr, ostr, bf16);
}

template <class T>
void task_t(const AttnPlan& p, std::int64_t t) {
  const AttentionArgs& a = p.a;
  const AttnTask tk = attn_task(p, t);
  const index_t D = a.D, L = tk.L, Sk = a.Sk;
  const index_t Dh = (D + 1) / 2, Lh = (L + 1) / 2, panels = (D + 15) / 16, vld = panels * 16;
  // bf16 K rows with an even D are used in place; anything else is converted (and padded to
  // an even length, so the last pair never reads past a row).
  const bool k_in_place = std::is_same<T, std::uint16_t>::value && D % 2 == 0;
  Carve c;
  const std::size_t o_s = c.take<float>(L * kQb), o_i = c.take<float>(2 * kQb), o_q = c.take<std::uint32_t>(Dh * kQb),
                    o_p = c.take<std::uint32_t>(Lh * kQb), o_v = c.take<std::uint32_t>(Lh * vld),
                    o_k = c.take<std::uint16_t>(k_in_place ? 0 : L * 2 * Dh);
  auto* base = static_cast<unsigned char*>(attn_scratch(c.off));
  float* st = reinterpret_cast<float*>(base + o_s);
  float* inv = reinterpret_cast<float*>(base + o_i);
  float* mx = inv + kQb;
  auto* qt = reinterpret_cast<std::uint32_t*>(base + o_q);
  auto* pt = reinterpret_cast<std::uint32_t*>(base + o_p);
  auto* vp = reinterpret_cast<std::uint32_t*>(base + o_v);
  const T* Kin = head_of<T>(a.k, a.k_st, tk.b, kv_head(a, tk.h));
  const T* Vin = head_of<T>(a.v, a.v_st, tk.b, kv_head(a, tk.h));
  const T* Q = head_of<T>(a.q, a.q_st, tk.b, tk.h);
  NextRows next;
  next.init<T>(p, t);
  const std::uint16_t* K;
  index_t ks;
  if (k_in_place) {
    K = reinterpret_cast<const std::uint16_t*>(Kin);
    ks = a.k_st.seq;
  } else {
    auto* kb = reinterpret_cast<std::uint16_t*>(base + o_k);
    for (index_t j = 0; j < L; ++j)
      for (index_t d = 0; d < 2 * Dh; d += 16)  // the odd-D pad lane is loaded as 0
        _mm256_mask_storeu_epi16(kb + j * 2 * Dh + d, first(2 * Dh - d),
                                 bf16x16(load16(Kin + j * a.k_st.seq + d, first(D - d))));
    K = kb;
    ks = 2 * Dh;
  }
  for (index_t j = 0; j < L; j += 2)
    for (index_t d = 0; d < vld; d += 16) {
      const __mmask16 m = first(D - d);
      const __m512 lo = load16(Vin + j * a.v_st.seq + d, m);
      const __m512 hi = j + 1 < L ? load16(Vin + (j + 1) * a.v_st.seq + d, m) : _mm512_setzero_ps();
      _mm512_store_si512(vp + (j / 2) * vld + d, pairs(lo, hi));
    }
  const float cs = logit_scale(a), os = out_scale(a);
  const float* mrow = mask_of(a, tk.b, tk.h);
  const float* km = a.mask_q == 1 ? mrow : nullptr;
  const __mmask16 tail = static_cast<__mmask16>(0xffffu >> ((16 - D % 16) % 16));
  for (index_t i0 = tk.r0; i0 < tk.r1; i0 += kQb) {
    const index_t nq = tk.r1 - i0 < kQb ? tk.r1 - i0 : kQb;
    const index_t Lb = block_keys(p, tk, i0, nq);  // causal: this block's last key
    const index_t Lbh = (Lb + 1) / 2;
    // Q^T pairs: qt[p][i] = (q[i][2p], q[i][2p+1])
    transpose_rows(nq, Dh, qt, [&](index_t i, index_t c0) {
      const T* q = Q + (i0 + i) * a.q_st.seq + 2 * c0;
      return bf16x32(load16(q, first(D - 2 * c0)), load16(q + 16, first(D - 2 * c0 - 16)));
    });
    if (nq > 16) scores_block<2>(K, ks, qt, Dh, Lb, cs, km, st, mx, next);
    else scores_block<1>(K, ks, qt, Dh, Lb, cs, km, st, mx, next);
    const bool full = mrow && a.mask_q > 1;
    if (full) add_query_mask(st, Lb, mrow + i0 * Sk, Sk, nq);
    // numerators straight to P^T pairs: pt[j/2][i] = (p[j][i], p[j+1][i])
    auto pack = [pt](index_t j, int n, __m512 e0, __m512 e1) {
      _mm512_store_si512(pt + (j / 2) * kQb + 16 * n, pairs(e0, e1));
    };
    if (nq > 16) softmax_cols<2, 3>(st, Lb, full ? nullptr : mx, os, inv, pack);
    else softmax_cols<1, 3>(st, Lb, full ? nullptr : mx, os, inv, pack);
    const index_t off = out_off(a, tk, i0);
    for_panel_groups(panels, tail, [&](auto np, index_t g, __mmask16 tl) {
      pv_block<decltype(np)::value>(pt, vp + 16 * g, vld, Lbh, tl, inv, a.out, off + 16 * g, a.out_st.seq, a.out_bf16, nq);
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

}  // namespace graphopt::kernels::avx512_bf16
