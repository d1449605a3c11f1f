// Decoder kernels front: argument checks and ISA dispatch (ISA-neutral TU).
#include <string>

#include "decoder_internal.h"
#include "graphopt/dispatch.h"

namespace graphopt::kernels {
namespace {

template <class Fn>
Dispatch<Fn> table(Fn r, Fn a512) {
  Dispatch<Fn> d;
  d.ref = r;
  d.avx512 = a512;  // avx2 and below: the scalar reference
  return d;
}

#define GRAPHOPT_TABLE(name, Job)                                                         \
  const Dispatch<void (*)(const Job&)>& name##_table() {                                    \
    static const auto d = table<void (*)(const Job&)>(&ref::name, &avx512::name);          \
    return d;                                                                               \
  }
GRAPHOPT_TABLE(rmsnorm, RMSNormJob)
GRAPHOPT_TABLE(silu, SiluJob)
GRAPHOPT_TABLE(silu_mul, SiluJob)
GRAPHOPT_TABLE(rotary, RotaryJob)
#undef GRAPHOPT_TABLE

}  // namespace

Status rmsnorm(const float* x, const float* residual, const float* gamma, float eps, index_t rows, index_t N,
               float* y, float* sum_out) {
  if (rows < 0 || N < 1) return Status::invalid("rmsnorm needs N >= 1, got rows=" + std::to_string(rows) + ", N=" + std::to_string(N));
  if (!x || !gamma || !y) return Status::invalid("rmsnorm: null x, gamma or y");
  if (!(eps >= 0.f)) return Status::invalid("rmsnorm eps must be >= 0");
  rmsnorm_table().get()(RMSNormJob{x, residual, gamma, eps, rows, N, y, sum_out});
  return Status::ok();
}

Status silu(const float* x, index_t n, float* y) {
  if (n < 0) return Status::invalid("silu: negative size");
  silu_table().get()(SiluJob{x, 1, n, n, y});
  return Status::ok();
}

Status silu_mul(const float* gu, index_t rows, index_t I, float* y) {
  if (rows < 0 || I < 0) return Status::invalid("silu_mul: negative size");
  silu_mul_table().get()(SiluJob{gu, rows, I, 2 * I, y});
  return Status::ok();
}

Status rotary(const float* x, const float* cos, const float* sin, index_t rows, index_t D, float* y) {
  if (rows < 0 || D < 2 || D % 2) return Status::invalid("rotary needs an even row length >= 2, got D=" + std::to_string(D));
  if (x == y) return Status::invalid("rotary: y must not alias x");
  rotary_table().get()(RotaryJob{x, cos, sin, rows, D, y});
  return Status::ok();
}

}  // namespace graphopt::kernels
