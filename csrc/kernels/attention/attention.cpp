// Attention front: argument checks, padding-key detection, task split and ISA
// dispatch (ISA-neutral TU).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "../common/thread_pool.h"
#include "attention_internal.h"
#include "graphopt/dispatch.h"

namespace graphopt::kernels {
namespace {

// Below this many multiply-adds a second thread costs more than it saves.
constexpr double kParMinMacs = 1 << 17;
// Query rows per block in the ISA kernels; chunks are multiples of it.
constexpr index_t kRowBlock = 32;

std::string dims(index_t a, index_t b, index_t c) {
  return "[" + std::to_string(a) + ", " + std::to_string(b) + ", " + std::to_string(c) + "]";
}

// Keys used by query row i of batch row b: up to its last key above -5000 in any head of the mask.
// A query row with no such key keeps every key (its softmax then runs over all of them, as
// without skipping), so the skip never changes a result beyond exp underflow.
index_t row_keys(const AttentionArgs& a, index_t b, index_t i) {
  const float* m = a.mask + (a.mask_b > 1 ? b : 0) * a.mask_h * a.mask_q * a.Sk + (a.mask_q > 1 ? i : 0) * a.Sk;
  index_t last = 0;
  for (index_t h = 0; h < a.mask_h; ++h) {
    const float* r = m + h * a.mask_q * a.Sk;
    index_t j = a.Sk;
    while (j > 0 && !(r[j - 1] > -5000.f)) --j;
    if (j == 0) return a.Sk;
    last = std::max(last, j);
  }
  return last;
}

// Keys used by batch row b (padding skipped): the most any of its query rows uses.
index_t keys_used(const AttentionArgs& a, index_t b) {
  if (!a.mask) return a.Sk;
  index_t last = 0;
  for (index_t i = 0; i < a.mask_q; ++i) last = std::max(last, row_keys(a, b, i));
  return last;
}

// Causal attention as a materialised [mask_b, mask_h, Sq, Sk] mask: the given mask (if any)
// broadcast over queries, with causal_fill past the shifted diagonal (and before the sliding
// window). Every ISA kernel already takes a full per-query mask, so causal runs on each path with
// one code path to verify; the per-row key bounds (row_keys) then stop each query block at its
// diagonal, so the masked upper triangle is not computed.
void causal_mask(AttentionArgs& a, std::vector<float>& buf) {
  const index_t mb = a.mask ? a.mask_b : 1, mh = a.mask ? a.mask_h : 1, Sq = a.Sq, Sk = a.Sk;
  buf.assign(static_cast<std::size_t>(mb * mh * Sq * Sk), 0.f);
  const index_t shift = Sk - Sq;
  const float fill = a.causal_fill;
  for (index_t bh = 0; bh < mb * mh; ++bh)
    for (index_t i = 0; i < Sq; ++i) {
      float* r = buf.data() + (bh * Sq + i) * Sk;
      if (a.mask) {
        const float* src = a.mask + (bh * a.mask_q + (a.mask_q > 1 ? i : 0)) * Sk;
        std::copy(src, src + Sk, r);
      }
      const index_t hi = std::max<index_t>(i + shift + 1, 0);
      for (index_t j = hi; j < Sk; ++j) r[j] = fill;
      if (a.window > 0)
        for (index_t j = 0, lo = std::min(i + shift - a.window + 1, Sk); j < lo; ++j) r[j] = fill;
    }
  a.mask = buf.data();
  a.mask_b = mb;
  a.mask_h = mh;
  a.mask_q = Sq;
  a.causal = false;
  a.window = 0;
}

}  // namespace

void run_attention_tasks(const AttnPlan& p, AttnTaskFn fn, void* ctx) {
  const std::int64_t n = p.tasks();
  if (p.threads > 1 && p.a.run) {
    p.a.run(p.a.run_user, n, fn, ctx);
  } else if (p.threads > 1) {
    parallel_tasks(n, p.threads, fn, ctx);
  } else {
    for (std::int64_t t = 0; t < n; ++t) fn(ctx, t);
  }
}

Status attention(const AttentionArgs& a) {
  if (a.B < 0 || a.H < 0 || a.Sq < 0 || a.Sk < 1 || a.D < 1)
    return Status::invalid("attention needs Sk >= 1 and D >= 1, got B, H, Sq, Sk, D = " + std::to_string(a.B) + ", " +
                           std::to_string(a.H) + ", " + std::to_string(a.Sq) + ", " + std::to_string(a.Sk) + ", " +
                           std::to_string(a.D));
  if (!a.q || !a.k || !a.v || !a.out) return Status::invalid("attention: null input or output");
  if (a.mask && !((a.mask_b == 1 || a.mask_b == a.B) && (a.mask_h == 1 || a.mask_h == a.H) &&
                  (a.mask_q == 1 || a.mask_q == a.Sq)))
    return Status::invalid("attention mask must be [1|B, 1|H, 1|Sq, Sk] = [1|" + std::to_string(a.B) + ", 1|" +
                           std::to_string(a.H) + ", 1|" + std::to_string(a.Sq) + ", " + std::to_string(a.Sk) +
                           "], got [" + std::to_string(a.mask_b) + ", " + std::to_string(a.mask_h) + ", " +
                           std::to_string(a.mask_q) + ", Sk]");
  if (a.window < 0 || (a.window > 0 && !a.causal))
    return Status::invalid("attention: a sliding window (" + std::to_string(a.window) + ") needs causal and must be >= 0");
  if (a.Hkv < 0 || (a.Hkv > 0 && a.H % a.Hkv))
    return Status::invalid("attention: " + std::to_string(a.H) + " query heads are not a multiple of " +
                           std::to_string(a.Hkv) + " key/value heads");
  const HeadStrides* st[4] = {&a.q_st, &a.k_st, &a.v_st, &a.out_st};
  for (const HeadStrides* s : st)
    if (s->batch < 0 || s->head < 0 || s->seq < 0 || (s->seq > 0 && s->seq < a.D))
      return Status::invalid("attention strides " + dims(s->batch, s->head, s->seq) +
                             " (batch, head, seq) must be >= 0 with seq >= D = " + std::to_string(a.D));
  if (a.B * a.H * a.Sq == 0) return Status::ok();

  AttnPlan p;
  p.a = a;
  if (p.a.Hkv == 0) p.a.Hkv = a.H;
  std::vector<float> causal;
  if (p.a.causal) causal_mask(p.a, causal);
  auto dense = [&](HeadStrides& s, index_t H, index_t S) {
    if (s.batch == 0 && s.head == 0 && s.seq == 0) s = HeadStrides{H * S * a.D, S * a.D, a.D};
  };
  dense(p.a.q_st, a.H, a.Sq);
  dense(p.a.k_st, p.a.Hkv, a.Sk);
  dense(p.a.v_st, p.a.Hkv, a.Sk);
  dense(p.a.out_st, a.H, a.Sq);
  std::vector<index_t> kv(static_cast<std::size_t>(a.B)), rows;
  double macs = 0;
  if (p.a.mask && p.a.mask_q > 1) {  // per-query mask: each row's own bound, the batch row's is their max
    rows.resize(static_cast<std::size_t>(p.a.mask_b * a.Sq));
    for (index_t b = 0; b < p.a.mask_b; ++b)
      for (index_t i = 0; i < a.Sq; ++i) rows[b * a.Sq + i] = row_keys(p.a, b, i);
    p.row_keys = rows.data();
  }
  for (index_t b = 0; b < a.B; ++b) {
    if (p.row_keys) {
      const index_t* r = p.row_keys + (p.a.mask_b > 1 ? b : 0) * a.Sq;
      kv[b] = *std::max_element(r, r + a.Sq);
      for (index_t i = 0; i < a.Sq; ++i) macs += 2.0 * static_cast<double>(a.H) * r[i] * a.D;
    } else {
      kv[b] = keys_used(p.a, b);
      macs += 2.0 * static_cast<double>(a.H) * a.Sq * kv[b] * a.D;
    }
  }
  p.kv_len = kv.data();
  int t = a.threads > 0 ? a.threads : omp_get_max_threads();
  if (macs < kParMinMacs) t = 1;
  p.threads = std::max(t, 1);
  // One task per (batch, head) keeps K and V prepared once per head; query chunks are added
  // only when that leaves fewer than 4 tasks per thread (a thread that loses its core to
  // another process then delays only a small piece).
  const index_t BH = a.B * a.H, blocks = (a.Sq + kRowBlock - 1) / kRowBlock;
  index_t chunks = 1;
  if (p.threads > 1 && BH < 4 * p.threads) chunks = std::min(blocks, (4 * p.threads + BH - 1) / BH);
  p.chunk_rows = (blocks + chunks - 1) / chunks * kRowBlock;
  p.chunks = (a.Sq + p.chunk_rows - 1) / p.chunk_rows;

  using Fn = void (*)(const AttnPlan&);
  static const Dispatch<Fn> f32 = [] {
    Dispatch<Fn> t;
    t.ref = &ref::attention;
    t.avx2 = &avx2::attention;
    t.avx512 = &avx512::attention;
    return t;
  }();
  static const Dispatch<Fn> bf16 = [] {
    Dispatch<Fn> t = f32;
    t.avx512_bf16 = &avx512_bf16::attention;
    return t;
  }();
  const bool use_bf16 = a.type != AttnType::f32 || a.bf16_compute;
  (use_bf16 ? bf16 : f32).get()(p);
  return Status::ok();
}

}  // namespace graphopt::kernels
