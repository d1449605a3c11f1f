#pragma once
#include "graphopt/kernels/attention.h"

namespace graphopt::kernels {
namespace ref { void attention(const AttentionArgs&); }
namespace avx2 { void attention(const AttentionArgs&); }
namespace avx512 { void attention(const AttentionArgs&); }
}  // namespace graphopt::kernels
