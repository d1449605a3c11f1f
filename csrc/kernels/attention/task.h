// Plain helpers every attention TU uses: task decoding, operand pointers, scales and a
// per-thread scratch buffer. Internal linkage (anonymous namespace): each ISA TU gets its
// own copy, so no vector code leaks into another path through the linker (see math.h).
#pragma once
#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>

#include "../common/math.h"
#include "attention_internal.h"

namespace graphopt::kernels {
namespace {

// One task: head (b, h), query rows [r0, r1), the first L keys.
struct AttnTask {
  index_t b, h, r0, r1, L;
};

inline AttnTask attn_task(const AttnPlan& p, std::int64_t t) {
  const index_t bh = t / p.chunks, c = t % p.chunks;
  AttnTask k;
  k.b = bh / p.a.H;
  k.h = bh % p.a.H;
  k.r0 = c * p.chunk_rows;
  k.r1 = k.r0 + p.chunk_rows < p.a.Sq ? k.r0 + p.chunk_rows : p.a.Sq;
  k.L = p.kv_len[k.b];
  return k;
}

template <class T>
inline const T* head_of(const void* base, const HeadStrides& s, index_t b, index_t h) {
  return static_cast<const T*>(base) + b * s.batch + h * s.head;
}

// Keys the query rows [i0, i0 + nq) of task tk read: the largest per-row bound of the plan (causal:
// the block's last row), else the task's. Keys past it are masked for every row of the block, so
// their exps are exactly 0 and skipping them changes no bit.
inline index_t block_keys(const AttnPlan& p, const AttnTask& tk, index_t i0, index_t nq) {
  if (!p.row_keys) return tk.L;
  const index_t* r = p.row_keys + (p.a.mask_b > 1 ? tk.b : 0) * p.a.Sq + i0;
  index_t m = 1;
  for (index_t i = 0; i < nq; ++i) m = r[i] > m ? r[i] : m;
  return m < tk.L ? m : tk.L;
}

// K/V head read by query head h (grouped KV heads: Hkv divides H; the front sets Hkv).
inline index_t kv_head(const AttentionArgs& a, index_t h) { return h / (a.H / a.Hkv); }

// The mask rows [mask_q, Sk] of head (b, h), or null.
inline const float* mask_of(const AttentionArgs& a, index_t b, index_t h) {
  if (!a.mask) return nullptr;
  return a.mask + ((a.mask_b > 1 ? b : 0) * a.mask_h + (a.mask_h > 1 ? h : 0)) * a.mask_q * a.Sk;
}

// The per-tensor int8 scales fold into the logit scale and the output scale; inputs are
// otherwise used as raw values (int8 is exact in fp32 and bf16).
inline float logit_scale(const AttentionArgs& a) {
  return a.type == AttnType::s8 ? a.scale * a.q_scale * a.k_scale : a.scale;
}
inline float out_scale(const AttentionArgs& a) { return a.type == AttnType::s8 ? a.v_scale : 1.f; }

template <class T>
inline float raw_f32(T v) {
  if constexpr (std::is_same<T, float>::value) return v;
  else if constexpr (std::is_same<T, std::uint16_t>::value) return bf16_to_f32(v);
  else return static_cast<float>(v);
}

// Grows only; 64-byte aligned; freed when the thread exits.
inline void* attn_scratch(std::size_t bytes) {
  struct Buf {
    void* p = nullptr;
    std::size_t n = 0;
    ~Buf() { if (p) ::operator delete(p, std::align_val_t(64)); }
  };
  thread_local Buf buf;
  if (buf.n < bytes) {
    if (buf.p) ::operator delete(buf.p, std::align_val_t(64));
    buf.p = nullptr;
    buf.p = ::operator new(bytes, std::align_val_t(64));
    buf.n = bytes;
  }
  return buf.p;
}

// Carves 64-byte aligned arrays out of a scratch buffer.
struct Carve {
  std::size_t off = 0;
  template <class T>
  std::size_t take(index_t n) {
    const std::size_t at = off;
    off += (static_cast<std::size_t>(n) * sizeof(T) + 63) / 64 * 64;
    return at;
  }
};

}  // namespace
}  // namespace graphopt::kernels
