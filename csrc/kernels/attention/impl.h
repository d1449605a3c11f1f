// Fused attention as plain loops: the scalar reference (ref.cpp; include inside
// `namespace graphopt::kernels::<isa> {`). Same blocking and semantics as the vector kernels
// (avx2.cpp, block_avx512.h), in 16-query blocks: per task, K and V are widened once to fp32;
// per query block, Q is transposed to [D, 16], the scores are built transposed (S^T [L, 16]:
// keys by rows, queries across the lanes, so the column softmax is element-wise over rows),
// and P V is accumulated per query with the 1/sum applied at the store. fp32 products at
// every precision.

namespace {

constexpr index_t kQb = 16;

template <class T>
void task_t(const AttnPlan& p, std::int64_t t) {
  const AttentionArgs& a = p.a;
  const AttnTask tk = attn_task(p, t);
  const index_t D = a.D, L = tk.L, Sk = a.Sk;
  Carve c;
  const std::size_t o_k = c.take<float>(L * D), o_v = c.take<float>(L * D), o_q = c.take<float>(D * kQb),
                    o_s = c.take<float>(L * kQb), o_o = c.take<float>(D);
  auto* base = static_cast<unsigned char*>(attn_scratch(c.off));
  float* kf = reinterpret_cast<float*>(base + o_k);
  float* vf = reinterpret_cast<float*>(base + o_v);
  float* qt = reinterpret_cast<float*>(base + o_q);
  float* st = reinterpret_cast<float*>(base + o_s);
  float* orow = reinterpret_cast<float*>(base + o_o);
  const T* K = head_of<T>(a.k, a.k_st, tk.b, kv_head(a, tk.h));
  const T* V = head_of<T>(a.v, a.v_st, tk.b, kv_head(a, tk.h));
  const T* Q = head_of<T>(a.q, a.q_st, tk.b, tk.h);
  for (index_t j = 0; j < L; ++j)
    for (index_t d = 0; d < D; ++d) {
      kf[j * D + d] = raw_f32(K[j * a.k_st.seq + d]);
      vf[j * D + d] = raw_f32(V[j * a.v_st.seq + d]);
    }
  const float cs = logit_scale(a), os = out_scale(a);
  const float* mrow = mask_of(a, tk.b, tk.h);
  for (index_t i0 = tk.r0; i0 < tk.r1; i0 += kQb) {
    const index_t nq = tk.r1 - i0 < kQb ? tk.r1 - i0 : kQb;
    const index_t Lb = block_keys(p, tk, i0, nq);  // causal: this block's last key
    for (index_t x = 0; x < D * kQb; ++x) qt[x] = 0.f;
    for (index_t i = 0; i < nq; ++i)
      for (index_t d = 0; d < D; ++d) qt[d * kQb + i] = raw_f32(Q[(i0 + i) * a.q_st.seq + d]);
    for (index_t j = 0; j < Lb; ++j) {
      float acc[kQb] = {0};
      for (index_t d = 0; d < D; ++d) {
        const float kd = kf[j * D + d];
        for (index_t i = 0; i < kQb; ++i) acc[i] += kd * qt[d * kQb + i];
      }
      float* s = st + j * kQb;
      for (index_t i = 0; i < kQb; ++i) s[i] = acc[i] * cs;
      if (mrow && a.mask_q == 1)
        for (index_t i = 0; i < kQb; ++i) s[i] += mrow[j];
      else if (mrow)
        for (index_t i = 0; i < nq; ++i) s[i] += mrow[(i0 + i) * Sk + j];
    }
    // Column softmax numerators; a query whose keys are all -inf gets max 0, so every
    // exp is 0, the sum is 0 and the row is written as zeros.
    float mx[kQb], sum[kQb] = {0};
    for (index_t i = 0; i < kQb; ++i) mx[i] = -INFINITY;
    for (index_t j = 0; j < Lb; ++j)
      for (index_t i = 0; i < kQb; ++i) mx[i] = st[j * kQb + i] > mx[i] ? st[j * kQb + i] : mx[i];
    for (index_t i = 0; i < kQb; ++i) mx[i] = mx[i] > -INFINITY ? mx[i] : 0.f;
    for (index_t j = 0; j < Lb; ++j)
      for (index_t i = 0; i < kQb; ++i) {
        const float e = exp_f(st[j * kQb + i] - mx[i]);
        st[j * kQb + i] = e;
        sum[i] += e;
      }
    for (index_t i = 0; i < nq; ++i) {
      for (index_t d = 0; d < D; ++d) orow[d] = 0.f;
      for (index_t j = 0; j < Lb; ++j) {
        const float pj = st[j * kQb + i];
        const float* __restrict vr = vf + j * D;
        float* __restrict o = orow;
        for (index_t d = 0; d < D; ++d) o[d] += pj * vr[d];
      }
      const float inv = sum[i] > 0.f ? os / sum[i] : 0.f;
      const index_t off = tk.b * a.out_st.batch + tk.h * a.out_st.head + (i0 + i) * a.out_st.seq;
      if (a.out_bf16) {
        std::uint16_t* o = static_cast<std::uint16_t*>(a.out) + off;
        for (index_t d = 0; d < D; ++d) o[d] = f32_to_bf16(orow[d] * inv);
      } else {
        float* o = static_cast<float*>(a.out) + off;
        for (index_t d = 0; d < D; ++d) o[d] = orow[d] * inv;
      }
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
