// Fused attention written once as plain loops vectorised under each ISA TU's
// flags (include inside `namespace graphopt::kernels::<isa> {`).
//
// Per (batch, head), in parallel: K is transposed into an fp32 [D, Sk] block
// and V widened into fp32 [Sk, D] once; each query row then computes its
// scores as a sum of D vector AXPYs over Sk (vectorised over keys), adds the
// mask, runs softmax in place, and accumulates P x V as Sk AXPYs over D.
// bf16 and s8 inputs are widened to fp32 on load; nothing of size Sq x Sk
// is materialised.

namespace {

template <class T>
inline float widen(T v, float s) {
  if constexpr (std::is_same<T, float>::value) return v;
  else if constexpr (std::is_same<T, std::uint16_t>::value) return bf16_to_f32(v);
  else return static_cast<float>(v) * s;
}

template <class T>
void attention_t(const AttentionArgs& a) {
  const index_t B = a.B, H = a.H, Sq = a.Sq, Sk = a.Sk, D = a.D;
  const T* Q = static_cast<const T*>(a.q);
  const T* K = static_cast<const T*>(a.k);
  const T* V = static_cast<const T*>(a.v);
  const bool s8 = std::is_same<T, std::int8_t>::value;
  const float qs = (s8 ? a.q_scale : 1.f) * a.scale, ks = s8 ? a.k_scale : 1.f, vs = s8 ? a.v_scale : 1.f;
  const index_t BH = B * H;
  const bool par = BH > 1 && static_cast<double>(BH) * Sq * Sk * D >= 65536.0;
#pragma omp parallel if (par)
  {
    const std::size_t need = static_cast<std::size_t>(2 * Sk * D + Sk + 2 * D);
    float* buf = static_cast<float*>(::operator new(need * sizeof(float)));
    float* kt = buf;             // [D, Sk]
    float* vf = kt + Sk * D;     // [Sk, D]
    float* sc = vf + Sk * D;     // [Sk]
    float* qr = sc + Sk;         // [D]
    float* orow = qr + D;        // [D]
#pragma omp for schedule(static)
    for (index_t bh = 0; bh < BH; ++bh) {
      const index_t b = bh / H;
      const T* k = K + bh * Sk * D;
      const T* v = V + bh * Sk * D;
      for (index_t j = 0; j < Sk; ++j)
        for (index_t d = 0; d < D; ++d) kt[d * Sk + j] = widen(k[j * D + d], ks);
      for (index_t t = 0; t < Sk * D; ++t) vf[t] = widen(v[t], vs);
      for (index_t i = 0; i < Sq; ++i) {
        const T* q = Q + (bh * Sq + i) * D;
        for (index_t d = 0; d < D; ++d) qr[d] = widen(q[d], 1.f) * qs;
        for (index_t j = 0; j < Sk; ++j) sc[j] = 0.f;
        for (index_t d = 0; d < D; ++d) {
          const float qd = qr[d];
          const float* __restrict kr = kt + d * Sk;
          float* __restrict s = sc;
          for (index_t j = 0; j < Sk; ++j) s[j] += qd * kr[j];
        }
        if (a.mask) {
          const float* __restrict m = a.mask + ((a.mask_b > 1 ? b : 0) * a.mask_q + (a.mask_q > 1 ? i : 0)) * Sk;
          for (index_t j = 0; j < Sk; ++j) sc[j] += m[j];
        }
        softmax_row(sc, Sk);
        for (index_t d = 0; d < D; ++d) orow[d] = 0.f;
        for (index_t j = 0; j < Sk; ++j) {
          const float p = sc[j];
          const float* __restrict vr = vf + j * D;
          float* __restrict o = orow;
          for (index_t d = 0; d < D; ++d) o[d] += p * vr[d];
        }
        const index_t off = (bh * Sq + i) * D;
        if (a.out_bf16) {
          std::uint16_t* o = static_cast<std::uint16_t*>(a.out) + off;
          for (index_t d = 0; d < D; ++d) o[d] = f32_to_bf16(orow[d]);
        } else {
          float* o = static_cast<float*>(a.out) + off;
          for (index_t d = 0; d < D; ++d) o[d] = orow[d];
        }
      }
    }
    ::operator delete(buf);
  }
}

}  // namespace

void attention(const AttentionArgs& a) {
  switch (a.type) {
    case AttnType::f32: attention_t<float>(a); break;
    case AttnType::bf16: attention_t<std::uint16_t>(a); break;
    case AttnType::s8: attention_t<std::int8_t>(a); break;
  }
}
