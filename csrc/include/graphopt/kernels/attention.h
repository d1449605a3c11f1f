// Fused multi-head attention: out = softmax(Q K^T * scale + mask) V per (batch, head).
//
// Q, K, V and out are read and written through (batch, head, sequence) strides with d
// contiguous, so [B, H, S, D], [B, S, H*D] (heads side by side) and a packed [B, S, 3*H*D]
// QKV projection are all used in place.
#pragma once
#include <cstdint>

#include "graphopt/status.h"
#include "graphopt/tensor_view.h"

namespace graphopt::kernels {

enum class AttnType : int { f32 = 0, bf16 = 1, s8 = 2 };

// Element strides of one operand; element (b, h, s, d) is at base[b*batch + h*head + s*seq + d].
// All zero means dense [B, H, S, D].
struct HeadStrides {
  index_t batch = 0, head = 0, seq = 0;
};

// Runs fn(ctx, t) for t in [0, ntasks) in parallel and returns when all are done
// (lets a caller with its own thread pool run the kernel's tasks; see AttentionArgs::run).
using AttnTaskFn = void (*)(void* ctx, std::int64_t task);
using AttnRunner = void (*)(void* user, std::int64_t ntasks, AttnTaskFn fn, void* ctx);

struct AttentionArgs {
  AttnType type = AttnType::f32;  // Q, K and V all of `type`
  const void* q = nullptr;  // [B, H, Sq, D] through q_st
  const void* k = nullptr;  // [B, H, Sk, D] through k_st
  const void* v = nullptr;  // [B, H, Sk, D] through v_st
  HeadStrides q_st, k_st, v_st;
  index_t B = 0, H = 0, Sq = 0, Sk = 0, D = 0;
  // Grouped K/V heads (GQA / MQA): K and V hold Hkv heads, query head h reads K/V head
  // h / (H / Hkv) (no repeated copy in memory). 0 = H. H must be a multiple of Hkv.
  index_t Hkv = 0;
  // Causal: query i attends key j only if j <= i + Sk - Sq (the last query sees every key).
  bool causal = false;
  // Sliding window (causal only; 0 = none): query i also ignores keys j < i + Sk - Sq - window + 1,
  // so it sees at most `window` keys (Mistral's sliding-window attention).
  index_t window = 0;
  // The score of a key outside the causal window: replaces the mask there. -inf by default; the
  // exporters' masks use finfo.min with key padding, so a query whose every key is masked (left
  // padding) averages V over all keys, as in the graph the rewrite came from.
  float causal_fill = -__builtin_inff();
  float scale = 1.f;  // usually 1/sqrt(D)
  // s8 inputs: real = int8 * scale (symmetric, per tensor).
  float q_scale = 1.f, k_scale = 1.f, v_scale = 1.f;
  // Additive fp32 mask [mask_b, mask_h, mask_q, Sk]; mask_b in {1, B}, mask_h in {1, H} (a per-head
  // bias, e.g. T5's relative positions), mask_q in {1, Sq}.
  // Keys at the end of a batch row that are <= -5000 for every query are skipped (padding): exp
  // underflows to exactly 0 there next to any unmasked score. A query whose keys are all -inf
  // gets a zero output row.
  const float* mask = nullptr;
  index_t mask_b = 1, mask_q = 1, mask_h = 1;
  // out: [B, H, Sq, D] through out_st, fp32 or bf16 (round to nearest even).
  void* out = nullptr;
  HeadStrides out_st;
  bool out_bf16 = false;
  // fp32 inputs: round Q, K, V and the probabilities to bf16 for the two products (vdpbf16ps,
  // fp32 accumulation and softmax). bf16 and s8 inputs always use bf16 products (s8 is exact in
  // bf16). Without AVX512_BF16 the products run in fp32.
  bool bf16_compute = false;
  // Threads: 0 = omp_get_max_threads() (graphopt.set_num_threads), on the kernels' pool
  // (common/thread_pool.h) unless `run` is given, which then runs the tasks instead.
  int threads = 0;
  AttnRunner run = nullptr;
  void* run_user = nullptr;
};

Status attention(const AttentionArgs& a);

}  // namespace graphopt::kernels
