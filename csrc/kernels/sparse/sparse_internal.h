// Per-ISA entry points of the 4x1-block sparse int8 GEMM (see driver.h).
#pragma once
#include "../gemm/gemm_internal.h"

namespace graphopt::kernels {
namespace sparse_ref { void gemm_s8(const GemmArgs& g); }
namespace sparse_avx512_vnni { void gemm_s8(const GemmArgs& g); }
}  // namespace graphopt::kernels
