// Shared between the ISA-neutral front (attention.cpp) and the per-ISA kernels.
#pragma once
#include "graphopt/kernels/attention.h"

namespace graphopt::kernels {

// What the front resolved for the ISA kernels: strides filled in (never zero), the
// number of keys each batch row uses (padding skipped) and the task split.
// Task t covers head t / chunks (b = head / H) and query rows
// [(t % chunks) * chunk_rows, min(Sq, ... + chunk_rows)).
struct AttnPlan {
  AttentionArgs a;
  const index_t* kv_len = nullptr;  // [B], 1 <= kv_len[b] <= Sk
  // Per-query masks (mask_q = Sq, causal): keys each query row uses, [mask_b, Sq] (max over the
  // mask's heads), so a query block stops at its last unmasked key; null = kv_len for every row.
  const index_t* row_keys = nullptr;
  index_t chunks = 1, chunk_rows = 0;
  int threads = 1;
  std::int64_t tasks() const { return a.B * a.H * chunks; }
};

// Runs fn over the plan's tasks on its runner or the kernels' pool (ISA-neutral, attention.cpp).
void run_attention_tasks(const AttnPlan& p, AttnTaskFn fn, void* ctx);

// fp32 products (every ISA level) and bf16 products (vdpbf16ps).
namespace ref { void attention(const AttnPlan&); }
namespace avx2 { void attention(const AttnPlan&); }
namespace avx512 { void attention(const AttnPlan&); }
namespace avx512_bf16 { void attention(const AttnPlan&); }
}  // namespace graphopt::kernels
