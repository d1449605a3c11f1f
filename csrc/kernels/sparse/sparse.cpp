// The 4x1-block sparse int8 GEMM: ISA dispatch (ISA-neutral translation unit).
// gemm_s8 (gemm/gemm.cpp) routes here when its weights were packed by pack_s8_sparse.
#include "../gemm/gemm_internal.h"
#include "graphopt/dispatch.h"
#include "sparse_internal.h"

namespace graphopt::kernels {

namespace {
const Dispatch<GemmFn>& sparse_table() {
  static const Dispatch<GemmFn> d = [] {
    Dispatch<GemmFn> t;
    t.ref = &sparse_ref::gemm_s8;
    t.avx512_vnni = &sparse_avx512_vnni::gemm_s8;
    return t;
  }();
  return d;
}
}  // namespace

void sparse_gemm_s8(const GemmArgs& g) { sparse_table().get()(g); }
Isa sparse_isa() { return sparse_table().level(isa_selected()); }

}  // namespace graphopt::kernels
