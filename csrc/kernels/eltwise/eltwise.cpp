// Element-wise front: argument checks and ISA dispatch (ISA-neutral TU).
#include <algorithm>
#include <cmath>
#include <string>

#include "eltwise_internal.h"
#include "graphopt/dispatch.h"

namespace graphopt::kernels {
namespace {

template <class Fn>
Dispatch<Fn> table(Fn r, Fn a2, Fn a512) {
  Dispatch<Fn> d;
  d.ref = r;
  d.avx2 = a2;
  d.avx512 = a512;
  return d;
}

#define GRAPHOPT_TABLE(name, Job)                                                             \
  const Dispatch<void (*)(const Job&)>& name##_table() {                                        \
    static const auto d = table<void (*)(const Job&)>(&ref::name, &avx2::name, &avx512::name); \
    return d;                                                                                   \
  }
GRAPHOPT_TABLE(quantize, QuantJob)
GRAPHOPT_TABLE(dequantize, DequantJob)
GRAPHOPT_TABLE(requantize, RequantJob)
GRAPHOPT_TABLE(layernorm, LayerNormJob)
GRAPHOPT_TABLE(softmax, SoftmaxJob)
GRAPHOPT_TABLE(unary, UnaryJob)
GRAPHOPT_TABLE(convert, CvtJob)
GRAPHOPT_TABLE(minmax, MinMaxJob)
GRAPHOPT_TABLE(quantize_rows_dynamic, DynRowsJob)
#undef GRAPHOPT_TABLE

Status check_scale(float s, const std::string& what) {
  if (!(s > 0.f)) return Status::invalid(what + "=" + std::to_string(s) + " must be > 0");
  return Status::ok();
}

Status check_axis(const QuantAxis& a) {
  if (a.outer < 0 || a.C < 1 || a.inner < 0) return Status::invalid("bad quantization axis view");
  if (a.n_param != 1 && a.n_param != a.C)
    return Status::invalid("scale/zero_point must have 1 or " + std::to_string(a.C) + " entries, got " + std::to_string(a.n_param));
  if (!a.scale) return Status::invalid("scale is null");
  for (index_t i = 0; i < a.n_param; ++i)
    if (Status s = check_scale(a.scale[i], "scale[" + std::to_string(i) + "]"); !s) return s;
  return Status::ok();
}

Status check_zp(const QuantAxis& ax, bool is_u8) {
  if (ax.zero_point)
    for (index_t i = 0; i < ax.n_param; ++i) {
      const std::int32_t z = ax.zero_point[i];
      if (is_u8 ? (z < 0 || z > 255) : (z < -128 || z > 127))
        return Status::invalid("zero point " + std::to_string(z) + " is outside the " + (is_u8 ? "u8" : "s8") + " range");
    }
  return Status::ok();
}

Status check_layernorm(const float* gamma, float eps, index_t rows, index_t N) {
  if (rows < 0 || N < 1) return Status::invalid("layernorm needs N >= 1, got rows=" + std::to_string(rows) + ", N=" + std::to_string(N));
  if (!gamma) return Status::invalid("layernorm gamma is null");
  if (!(eps >= 0.f)) return Status::invalid("layernorm eps must be >= 0");
  return Status::ok();
}

}  // namespace

Status quantize(const float* x, const QuantAxis& ax, bool is_u8, void* q) {
  if (Status s = check_axis(ax); !s) return s;
  if (Status s = check_zp(ax, is_u8); !s) return s;
  quantize_table().get()(QuantJob{x, q, ax, is_u8});
  return Status::ok();
}

Status dequantize(const void* q, bool is_u8, const QuantAxis& ax, float* y) {
  if (Status s = check_axis(ax); !s) return s;
  dequantize_table().get()(DequantJob{q, y, ax, is_u8});
  return Status::ok();
}

Status requantize(const std::int32_t* x, const QuantAxis& ax, bool is_u8, void* q) {
  if (Status s = check_axis(ax); !s) return s;
  if (Status s = check_zp(ax, is_u8); !s) return s;
  requantize_table().get()(RequantJob{x, q, ax, is_u8});
  return Status::ok();
}

Status minmax(const float* x, index_t n, float* lo, float* hi) {
  if (n < 0) return Status::invalid("minmax: negative size");
  if (!lo || !hi) return Status::invalid("minmax: null output");
  minmax_table().get()(MinMaxJob{x, n, lo, hi});
  return Status::ok();
}

Status quantize_dynamic_u8(const float* x, index_t n, std::uint8_t* q, float* scale, std::int32_t* zero_point,
                           float* lo, float* hi) {
  if (!scale || !zero_point) return Status::invalid("quantize_dynamic_u8: null scale/zero_point output");
  float l = 0.f, h = 0.f;
  if (Status s = minmax(x, n, &l, &h); !s) return s;
  dynamic_u8_grid(l, h, scale, zero_point);
  if (lo) *lo = l;
  if (hi) *hi = h;
  QuantAxis ax;
  ax.inner = n;
  ax.scale = scale;
  ax.zero_point = zero_point;
  quantize_table().get()(QuantJob{x, q, ax, true});
  return Status::ok();
}

Status quantize_rows_dynamic_u8(const float* x, index_t rows, index_t n, std::uint8_t* q, float* scale,
                                std::int32_t* zero_point) {
  if (rows < 0 || n < 0) return Status::invalid("quantize_rows_dynamic_u8: negative size");
  if (rows > 0 && (!x || !q || !scale || !zero_point)) return Status::invalid("quantize_rows_dynamic_u8: null pointer");
  quantize_rows_dynamic_table().get()(DynRowsJob{x, rows, n, q, scale, zero_point});
  return Status::ok();
}

Status layernorm(const float* x, const float* residual, const float* gamma, const float* beta, float eps,
                 index_t rows, index_t N, float* y, float* sum_out) {
  if (Status s = check_layernorm(gamma, eps, rows, N); !s) return s;
  layernorm_table().get()(LayerNormJob{x, residual, gamma, beta, eps, rows, N, y, sum_out, QuantOut{nullptr, 1.f, 0}});
  return Status::ok();
}

Status layernorm_quantize(const float* x, const float* residual, const float* gamma, const float* beta, float eps,
                          index_t rows, index_t N, float* y, float* sum_out, float q_scale, std::int32_t q_zero_point,
                          std::uint8_t* q) {
  if (Status s = check_layernorm(gamma, eps, rows, N); !s) return s;
  if (Status s = check_scale(q_scale, "q_scale"); !s) return s;
  if (q_zero_point < 0 || q_zero_point > 255)
    return Status::invalid("q_zero_point " + std::to_string(q_zero_point) + " is outside the u8 range");
  if (!y || !q) return Status::invalid("layernorm_quantize: null output");
  layernorm_table().get()(LayerNormJob{x, residual, gamma, beta, eps, rows, N, y, sum_out, QuantOut{q, q_scale, q_zero_point}});
  return Status::ok();
}

Status layernorm_quantize_dynamic(const float* x, const float* residual, const float* gamma, const float* beta, float eps,
                                  index_t rows, index_t N, float* y, float* sum_out, std::uint8_t* q, float* row_scale,
                                  std::int32_t* row_zero_point) {
  if (Status s = check_layernorm(gamma, eps, rows, N); !s) return s;
  if (rows > 0 && (!y || !q || !row_scale || !row_zero_point)) return Status::invalid("layernorm_quantize_dynamic: null output");
  QuantOut qo{q, 1.f, 0};
  qo.row_scale = row_scale;
  qo.row_zp = row_zero_point;
  layernorm_table().get()(LayerNormJob{x, residual, gamma, beta, eps, rows, N, y, sum_out, qo});
  return Status::ok();
}

Status softmax(const float* x, const float* mask, index_t mask_rows, index_t rows, index_t N, float* y) {
  if (rows < 0 || N < 1) return Status::invalid("softmax needs N >= 1");
  if (mask && (mask_rows < 1 || rows % mask_rows != 0))
    return Status::invalid("softmax mask rows (" + std::to_string(mask_rows) + ") must divide rows (" + std::to_string(rows) + ")");
  softmax_table().get()(SoftmaxJob{x, mask, mask_rows, rows, N, y});
  return Status::ok();
}

static Status unary(const char* name, UnaryOp op, const float* x, index_t n, float* y) {
  if (n < 0) return Status::invalid(std::string(name) + ": negative size");
  unary_table().get()(UnaryJob{x, y, n, op});
  return Status::ok();
}

Status gelu(const float* x, index_t n, bool tanh_approx, float* y) {
  return unary("gelu", tanh_approx ? UnaryOp::gelu_tanh : UnaryOp::gelu_erf, x, n, y);
}
Status erf(const float* x, index_t n, float* y) { return unary("erf", UnaryOp::erf, x, n, y); }
Status tanh(const float* x, index_t n, float* y) { return unary("tanh", UnaryOp::tanh, x, n, y); }

Status f32_to_bf16(const float* x, index_t n, bf16_t* y) {
  convert_table().get()(CvtJob{x, y, n, true});
  return Status::ok();
}
Status bf16_to_f32(const bf16_t* x, index_t n, float* y) {
  convert_table().get()(CvtJob{x, y, n, false});
  return Status::ok();
}

}  // namespace graphopt::kernels
