// int4 front: argument checks and ISA dispatch (ISA-neutral TU).
#include <string>

#include "graphopt/dispatch.h"
#include "int4_internal.h"

namespace graphopt::kernels {
namespace {

const Dispatch<void (*)(const Int4Job&)>& table() {
  static const auto d = [] {
    Dispatch<void (*)(const Int4Job&)> t;
    t.ref = &ref::int4_matmul;
    t.avx512 = &avx512::int4_matmul;  // avx2 and below: the scalar reference
    return t;
  }();
  return d;
}

}  // namespace

Status int4_matmul(const float* x, index_t M, const Int4Weights& w, const float* bias, float* y, index_t n0,
                   index_t n1) {
  if (M < 0 || w.K < 1 || w.N < 1) return Status::invalid("int4_matmul needs K, N >= 1");
  if (w.block < 16 || (w.block & (w.block - 1))) return Status::invalid("int4 block size must be a power of two >= 16, got " + std::to_string(w.block));
  if (n0 < 0 || n1 > w.N || n0 > n1) return Status::invalid("int4_matmul: bad column range");
  if (!w.q || !w.scale || (M && (!x || !y))) return Status::invalid("int4_matmul: null pointer");
  if (M == 0 || n0 == n1) return Status::ok();
  table().get()(Int4Job{x, M, w, bias, y, n0, n1});
  return Status::ok();
}

const char* int4_isa() { return isa_name(table().level(isa_selected())); }

}  // namespace graphopt::kernels
