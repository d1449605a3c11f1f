// Attention front: argument checks and ISA dispatch (ISA-neutral TU).
#include <string>

#include "attention_internal.h"
#include "graphopt/dispatch.h"

namespace graphopt::kernels {

Status attention(const AttentionArgs& a) {
  if (a.B < 0 || a.H < 0 || a.Sq < 0 || a.Sk < 1 || a.D < 1)
    return Status::invalid("attention needs Sk >= 1 and D >= 1");
  if (!a.q || !a.k || !a.v || !a.out) return Status::invalid("attention: null input or output");
  if (a.mask && !((a.mask_b == 1 || a.mask_b == a.B) && (a.mask_q == 1 || a.mask_q == a.Sq)))
    return Status::invalid("attention mask must be [1|B, 1|Sq, Sk], got [" + std::to_string(a.mask_b) + ", " +
                           std::to_string(a.mask_q) + ", Sk]");
  static const Dispatch<void (*)(const AttentionArgs&)> d = [] {
    Dispatch<void (*)(const AttentionArgs&)> t;
    t.ref = &ref::attention;
    t.avx2 = &avx2::attention;
    t.avx512 = &avx512::attention;
    return t;
  }();
  d.get()(a);
  return Status::ok();
}

}  // namespace graphopt::kernels
