// Fused attention with AVX2 + FMA, fp32 products: the blocking of the AVX-512 kernel (see
// block_avx512.h) at 8 lanes and 16 registers. Per query block of 16: S^T [L, 16] = K Q^T
// (keys by rows, 6 keys x 2 ymm per micro-tile, K read in place), a column softmax in base 2,
// then O = P V in 6 rows x 16 d micro-tiles with 1/sum applied at the store. bf16 and int8
// inputs are widened to fp32 once per task. Flags set per file in CMakeLists.txt.
#include <immintrin.h>

#include <cmath>

#include "task.h"

namespace graphopt::kernels::avx2 {
namespace {

constexpr index_t kQb = 16;   // queries per block (two ymm)
constexpr int kKeyRows = 6;   // keys per score micro-tile (12 accumulators)
constexpr int kPvRows = 6;    // query rows per P V micro-tile (6 x 2 accumulators)
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

template <template <int> class F, int M>
struct ByRows {
  template <class... A>
  static void run(int m, A... args) {
    if (m >= M) F<M>::run(args...);
    else if constexpr (M > 1) ByRows<F, M - 1>::run(m, args...);
  }
};

// 2^t for t <= 0 (or -inf): n = round(t), 2^f by the degree-5 minimax polynomial of the AVX-512
// kernel, 2^n assembled in the exponent field; 0 below 2^-126.
inline __m256 exp2_nonpos(__m256 t) {
  const __m256 n = _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 live = _mm256_cmp_ps(t, _mm256_set1_ps(-126.f), _CMP_GT_OQ);
  const __m256 f = _mm256_sub_ps(t, n);
  __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(0.001327644451521337f), f, _mm256_set1_ps(0.00967553723603487f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(0.05550713464617729f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(0.24022120237350464f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(0.6931469440460205f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0000001192092896f));
  // n is clamped so dead lanes (t <= -126, -inf, NaN from -inf - -inf) build a valid scale
  const __m256 nc = _mm256_max_ps(n, _mm256_set1_ps(-126.f));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(nc), _mm256_set1_epi32(127)), 23);
  return _mm256_and_ps(live, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

// st[r][0..16) = (K[r] . qt[:, i]) * cs + km[r] (base 2) for MK keys; folds the column maxima into mx.
template <int MK>
struct Scores {
  static void run(const float* K, index_t ks, const float* qt, index_t D, __m256 cs, const float* km, float* st,
                  float* mx) {
    __m256 acc[MK][2];
#pragma GCC unroll 6
    for (int r = 0; r < MK; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (index_t d = 0; d < D; ++d) {
      const __m256 q0 = _mm256_load_ps(qt + d * kQb), q1 = _mm256_load_ps(qt + d * kQb + 8);
#pragma GCC unroll 6
      for (int r = 0; r < MK; ++r) {
        const __m256 kb = _mm256_broadcast_ss(K + r * ks + d);
        acc[r][0] = _mm256_fmadd_ps(kb, q0, acc[r][0]);
        acc[r][1] = _mm256_fmadd_ps(kb, q1, acc[r][1]);
      }
    }
    __m256 m0 = _mm256_load_ps(mx), m1 = _mm256_load_ps(mx + 8);
#pragma GCC unroll 6
    for (int r = 0; r < MK; ++r) {
      const __m256 mb = _mm256_set1_ps(km ? mask_log2(km[r]) : 0.f);
      const __m256 y0 = _mm256_fmadd_ps(acc[r][0], cs, mb), y1 = _mm256_fmadd_ps(acc[r][1], cs, mb);
      _mm256_store_ps(st + r * kQb, y0);
      _mm256_store_ps(st + r * kQb + 8, y1);
      m0 = _mm256_max_ps(m0, y0);
      m1 = _mm256_max_ps(m1, y1);
    }
    _mm256_store_ps(mx, m0);
    _mm256_store_ps(mx + 8, m1);
  }
};

inline __m256i lanes_below(index_t n) {  // all-ones in lanes < n (maskload/maskstore)
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n < 8 ? n : 8)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// out rows r < MR, d in [0, 16): (sum_j pt[j][r] V[j][d]) * inv[r]; m0/m1 mask the d lanes.
template <int MR>
struct PV {
  static void run(const float* pt, const float* V, index_t vs, index_t L, __m256i m0, __m256i m1, index_t nd,
                  const float* inv, void* out, index_t off, index_t ostr, bool bf16) {
    __m256 acc[MR][2];
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (index_t j = 0; j < L; ++j) {
      const __m256 v0 = _mm256_maskload_ps(V + j * vs, m0), v1 = _mm256_maskload_ps(V + j * vs + 8, m1);
#pragma GCC unroll 6
      for (int r = 0; r < MR; ++r) {
        const __m256 p = _mm256_broadcast_ss(pt + j * kQb + r);
        acc[r][0] = _mm256_fmadd_ps(p, v0, acc[r][0]);
        acc[r][1] = _mm256_fmadd_ps(p, v1, acc[r][1]);
      }
    }
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r) {
      const __m256 s = _mm256_set1_ps(inv[r]);
      const __m256 y0 = _mm256_mul_ps(acc[r][0], s), y1 = _mm256_mul_ps(acc[r][1], s);
      if (bf16) {
        alignas(32) float y[16];
        _mm256_store_ps(y, y0);
        _mm256_store_ps(y + 8, y1);
        std::uint16_t* o = static_cast<std::uint16_t*>(out) + off + r * ostr;
        for (index_t d = 0; d < nd; ++d) o[d] = f32_to_bf16(y[d]);
      } else {
        float* o = static_cast<float*>(out) + off + r * ostr;
        _mm256_maskstore_ps(o, m0, y0);
        _mm256_maskstore_ps(o + 8, m1, y1);
      }
    }
  }
};

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
  const __m256 cs = _mm256_set1_ps(logit_scale(a) * kLog2e);
  const float os = out_scale(a);
  const float* mrow = mask_of(a, tk.b, tk.h);
  const float* km = a.mask_q == 1 ? mrow : nullptr;
  for (index_t i0 = tk.r0; i0 < tk.r1; i0 += kQb) {
    const index_t nq = tk.r1 - i0 < kQb ? tk.r1 - i0 : kQb;
    const index_t Lb = block_keys(p, tk, i0, nq);  // causal: this block's last key
    for (index_t x = 0; x < D * kQb; x += 8) _mm256_store_ps(qt + x, _mm256_setzero_ps());
    for (index_t i = 0; i < nq; ++i)
      for (index_t d = 0; d < D; ++d) qt[d * kQb + i] = raw_f32(Q[(i0 + i) * a.q_st.seq + d]);
    _mm256_store_ps(mx, _mm256_set1_ps(-INFINITY));
    _mm256_store_ps(mx + 8, _mm256_set1_ps(-INFINITY));
    for (index_t j = 0; j < Lb; j += kKeyRows)
      ByRows<Scores, kKeyRows>::run(static_cast<int>(Lb - j < kKeyRows ? Lb - j : kKeyRows), K + j * ks, ks, qt, D, cs,
                                     km ? km + j : nullptr, st + j * kQb, mx);
    __m256 mx0 = _mm256_load_ps(mx), mx1 = _mm256_load_ps(mx + 8);
    if (mrow && a.mask_q > 1) {  // a full [Sq, Sk] mask: added here, maxima recomputed
      mx0 = mx1 = _mm256_set1_ps(-INFINITY);
      for (index_t j = 0; j < Lb; ++j) {
        for (index_t i = 0; i < nq; ++i) st[j * kQb + i] += mask_log2(mrow[(i0 + i) * Sk + j]);
        mx0 = _mm256_max_ps(mx0, _mm256_load_ps(st + j * kQb));
        mx1 = _mm256_max_ps(mx1, _mm256_load_ps(st + j * kQb + 8));
      }
    }
    // an all -inf column: max 0, so its exps are exactly 0 and its row is written as zeros
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    mx0 = _mm256_and_ps(_mm256_cmp_ps(mx0, ninf, _CMP_NEQ_OQ), mx0);
    mx1 = _mm256_and_ps(_mm256_cmp_ps(mx1, ninf, _CMP_NEQ_OQ), mx1);
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    for (index_t j = 0; j < Lb; ++j) {
      const __m256 e0 = exp2_nonpos(_mm256_sub_ps(_mm256_load_ps(st + j * kQb), mx0));
      const __m256 e1 = exp2_nonpos(_mm256_sub_ps(_mm256_load_ps(st + j * kQb + 8), mx1));
      _mm256_store_ps(st + j * kQb, e0);
      _mm256_store_ps(st + j * kQb + 8, e1);
      s0 = _mm256_add_ps(s0, e0);
      s1 = _mm256_add_ps(s1, e1);
    }
    const __m256 zero = _mm256_setzero_ps(), o = _mm256_set1_ps(os);
    _mm256_store_ps(inv, _mm256_and_ps(_mm256_cmp_ps(s0, zero, _CMP_GT_OQ), _mm256_div_ps(o, s0)));
    _mm256_store_ps(inv + 8, _mm256_and_ps(_mm256_cmp_ps(s1, zero, _CMP_GT_OQ), _mm256_div_ps(o, s1)));
    const index_t off = tk.b * a.out_st.batch + tk.h * a.out_st.head + i0 * a.out_st.seq;
    for (index_t d0 = 0; d0 < D; d0 += 16) {
      const index_t nd = D - d0 < 16 ? D - d0 : 16;
      const __m256i m0 = lanes_below(nd), m1 = lanes_below(nd - 8);
      for (index_t i = 0; i < nq; i += kPvRows)
        ByRows<PV, kPvRows>::run(static_cast<int>(nq - i < kPvRows ? nq - i : kPvRows), st + i, V + d0, vs, Lb, m0, m1,
                                 nd, inv + i, a.out, off + i * a.out_st.seq + d0, a.out_st.seq, a.out_bf16);
    }
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

}  // namespace graphopt::kernels::avx2
