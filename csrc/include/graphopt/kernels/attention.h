// Fused multi-head attention: out = softmax(Q K^T * scale + mask) V per (batch, head).
#pragma once
#include <cstdint>

#include "graphopt/status.h"
#include "graphopt/tensor_view.h"

namespace graphopt::kernels {

enum class AttnType : int { f32 = 0, bf16 = 1, s8 = 2 };

struct AttentionArgs {
  AttnType type = AttnType::f32;
  // Q: [B, H, Sq, D], K and V: [B, H, Sk, D], dense, all of `type`.
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  index_t B = 0, H = 0, Sq = 0, Sk = 0, D = 0;
  float scale = 1.f;  // usually 1/sqrt(D)
  // s8 inputs: real = int8 * scale (symmetric, per tensor).
  float q_scale = 1.f, k_scale = 1.f, v_scale = 1.f;
  // Additive fp32 mask [mask_b, mask_q, Sk] broadcast over heads; mask_b in {1, B}, mask_q in {1, Sq}.
  const float* mask = nullptr;
  index_t mask_b = 1, mask_q = 1;
  // out: [B, H, Sq, D] as fp32, or bf16 when out_bf16.
  void* out = nullptr;
  bool out_bf16 = false;
};

Status attention(const AttentionArgs& a);

}  // namespace graphopt::kernels
