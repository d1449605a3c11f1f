// Thin pybind11 bindings for the kernels: validate arrays (dtype, C-contiguity,
// shapes), allocate outputs, release the GIL, call the C++ API, turn a
// non-ok Status into ValueError. No kernel logic lives here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "graphopt/kernels/attention.h"
#include "graphopt/kernels/eltwise.h"
#include "graphopt/kernels/gemm.h"

namespace py = pybind11;

namespace graphopt::bindings {
namespace {

using kernels::Act;
using kernels::OutType;
using kernels::PackedWeights;

std::string shape_str(const py::array& a) {
  std::ostringstream s;
  s << "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s << (i ? ", " : "") << a.shape(i);
  if (a.ndim() == 1) s << ",";
  s << ")";
  return s.str();
}

std::string describe(const py::array& a) {
  return std::string(py::str(a.dtype())) + " array of shape " + shape_str(a);
}

enum class DT { f32, u8, s8, u16, s32 };
const char* dt_name(DT d) {
  switch (d) {
    case DT::f32: return "float32";
    case DT::u8: return "uint8";
    case DT::s8: return "int8";
    case DT::u16: return "uint16 (bf16 bits)";
    case DT::s32: return "int32";
  }
  return "?";
}
bool is_dt(const py::array& a, DT d) {
  const char k = a.dtype().kind();
  const auto sz = a.dtype().itemsize();
  switch (d) {
    case DT::f32: return k == 'f' && sz == 4;
    case DT::u8: return k == 'u' && sz == 1;
    case DT::s8: return k == 'i' && sz == 1;
    case DT::u16: return k == 'u' && sz == 2;
    case DT::s32: return k == 'i' && sz == 4;
  }
  return false;
}

// Checks dtype (TypeError) and C-contiguity / minimum rank (ValueError).
void check(const py::array& a, const char* name, DT d, int min_ndim = 0) {
  if (!is_dt(a, d))
    throw py::type_error(std::string(name) + ": expected a " + dt_name(d) + " array, got " + describe(a));
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + ": array of shape " + shape_str(a) + " is not C-contiguous (use numpy.ascontiguousarray)");
  if (a.ndim() < min_ndim)
    throw py::value_error(std::string(name) + ": expected at least " + std::to_string(min_ndim) + " dimensions, got shape " + shape_str(a));
}

void ok(const Status& s) {
  if (!s) throw py::value_error(s.message());
}

std::vector<py::ssize_t> shape_of(const py::array& a) {
  return std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim());
}

std::string strides_str(const py::array& a) {
  std::ostringstream s;
  s << "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s << (i ? ", " : "") << a.strides(i);
  s << ")";
  return s.str();
}

// (batch, head, seq) element strides of a 4-D [B, H, S, D] view whose rows (d) are contiguous;
// views such as x.transpose(0, 2, 1, 3) of a [B, S, H, D] array are read in place. Strides of
// size-1 dimensions are irrelevant and replaced by dense ones.
kernels::HeadStrides head_strides(const py::array& a, const char* name) {
  const py::ssize_t is = a.itemsize();
  const py::ssize_t D = a.shape(3);
  py::ssize_t st[3];
  for (int i = 0; i < 3; ++i) {
    const py::ssize_t s = a.strides(i);
    if (s < 0 || s % is)
      throw py::value_error(std::string(name) + ": strides " + strides_str(a) + " of shape " + shape_str(a) +
                            " must be non-negative multiples of the item size");
    st[i] = s / is;
  }
  if (D > 1 && a.strides(3) != is)
    throw py::value_error(std::string(name) + ": the last dimension of shape " + shape_str(a) + " must be contiguous, strides " +
                          strides_str(a));
  if (a.shape(2) <= 1) st[2] = D;
  if (a.shape(1) <= 1) st[1] = a.shape(2) * st[2];
  if (a.shape(0) <= 1) st[0] = a.shape(1) * st[1];
  if (st[2] < D)
    throw py::value_error(std::string(name) + ": rows of shape " + shape_str(a) + " overlap (strides " + strides_str(a) + ")");
  return kernels::HeadStrides{st[0], st[1], st[2]};
}

Act parse_act(const std::string& s) {
  if (s == "none") return Act::none;
  if (s == "relu") return Act::relu;
  if (s == "gelu" || s == "gelu_erf") return Act::gelu_erf;
  if (s == "gelu_tanh") return Act::gelu_tanh;
  throw py::value_error("unknown activation '" + s + "'; expected none|relu|gelu|gelu_tanh");
}

OutType parse_out(const std::string& s) {
  if (s == "s32" || s == "int32") return OutType::s32;
  if (s == "f32" || s == "float32") return OutType::f32;
  if (s == "bf16") return OutType::bf16;
  if (s == "u8" || s == "uint8") return OutType::u8;
  if (s == "s8" || s == "int8") return OutType::s8;
  throw py::value_error("unknown out_dtype '" + s + "'; expected s32|f32|bf16|u8|s8");
}

py::array alloc_out(OutType o, const std::vector<py::ssize_t>& shape) {
  switch (o) {
    case OutType::s32: return py::array_t<std::int32_t>(shape);
    case OutType::f32: return py::array_t<float>(shape);
    case OutType::bf16: return py::array_t<std::uint16_t>(shape);
    case OutType::u8: return py::array_t<std::uint8_t>(shape);
    case OutType::s8: return py::array_t<std::int8_t>(shape);
  }
  return py::array_t<float>(shape);
}

// The GEMM's output: a fresh array, or `out` (C-contiguous, writeable, of exactly this dtype and shape) so a
// caller (benchmarks/amx_gemm.py) can time the kernel without a fresh mapping's page faults.
py::array gemm_out(py::object out, OutType o, const std::vector<py::ssize_t>& shape) {
  if (out.is_none()) return alloc_out(o, shape);
  py::array want = alloc_out(o, {0});
  auto C = py::reinterpret_borrow<py::array>(out);
  if (!C.dtype().is(want.dtype()) || std::vector<py::ssize_t>(C.shape(), C.shape() + C.ndim()) != shape ||
      !(C.flags() & py::array::c_style) || !C.writeable()) {
    std::string dims;
    for (py::ssize_t d : shape) dims += (dims.empty() ? "" : ", ") + std::to_string(d);
    throw py::value_error("out: expected a writeable C-contiguous " + std::string(py::str(want.dtype())) + " array of shape (" +
                          dims + "), got " + describe(C));
  }
  return C;
}

const char* layout_dtype(kernels::PackLayout l) {
  switch (l) {
    case kernels::PackLayout::s8_k4:
    case kernels::PackLayout::s16_k2: return "s8";
    case kernels::PackLayout::bf16_k2: return "bf16";
    case kernels::PackLayout::f32_k1: return "f32";
  }
  return "?";
}

// B is [K, N] (or [N, K] when transposed); returns (K, N).
std::pair<index_t, index_t> weight_dims(const py::array& B, bool transposed) {
  if (B.ndim() != 2) throw py::value_error("weights must be 2-D, got shape " + shape_str(B));
  return transposed ? std::make_pair<index_t, index_t>(B.shape(1), B.shape(0))
                    : std::make_pair<index_t, index_t>(B.shape(0), B.shape(1));
}

// A is [..., K]: returns M = prod(leading dims) and the output shape [..., N].
index_t gemm_rows(const py::array& A, const PackedWeights& W, std::vector<py::ssize_t>* out_shape) {
  if (A.ndim() < 1) throw py::value_error("A must have at least 1 dimension, got a scalar");
  if (A.shape(A.ndim() - 1) != W.K())
    throw py::value_error("A of shape " + shape_str(A) + " does not match packed weights of shape (K=" +
                          std::to_string(W.K()) + ", N=" + std::to_string(W.N()) + "): last dim must be " +
                          std::to_string(W.K()));
  *out_shape = shape_of(A);
  out_shape->back() = static_cast<py::ssize_t>(W.N());
  index_t M = 1;
  for (py::ssize_t i = 0; i + 1 < A.ndim(); ++i) M *= A.shape(i);
  return M;
}

const float* optional_bias(const py::object& bias, const PackedWeights& W, py::array* keep) {
  if (bias.is_none()) return nullptr;
  *keep = py::reinterpret_borrow<py::array>(bias);
  check(*keep, "bias", DT::f32);
  if (keep->ndim() != 1 || keep->shape(0) != W.N())
    throw py::value_error("bias of shape " + shape_str(*keep) + " does not match N=" + std::to_string(W.N()));
  return static_cast<const float*>(keep->data());
}

// A per-column output multiplier (N entries) or null; `what` names it in errors.
const float* optional_columns(const py::object& v, const PackedWeights& W, py::array* keep, const char* what) {
  if (v.is_none()) return nullptr;
  *keep = py::reinterpret_borrow<py::array>(v);
  check(*keep, what, DT::f32);
  if (keep->ndim() != 1 || keep->shape(0) != W.N())
    throw py::value_error(std::string(what) + " of shape " + shape_str(*keep) + " does not match N=" + std::to_string(W.N()));
  return static_cast<const float*>(keep->data());
}

kernels::Epilogue make_epilogue(const std::string& act, const std::string& out_dtype, double out_scale, int out_zp) {
  kernels::Epilogue e;
  e.act = parse_act(act);
  e.out = parse_out(out_dtype);
  e.out_scale = static_cast<float>(out_scale);
  e.out_zp = out_zp;
  if (e.out == OutType::u8 && (out_zp < 0 || out_zp > 255)) throw py::value_error("out_zero_point " + std::to_string(out_zp) + " outside u8 range");
  if (e.out == OutType::s8 && (out_zp < -128 || out_zp > 127)) throw py::value_error("out_zero_point " + std::to_string(out_zp) + " outside s8 range");
  return e;
}

kernels::QuantAxis quant_axis(const py::array& x, const py::array& scale, const py::array& zp, py::object axis_obj) {
  check(scale, "scale", DT::f32);
  if (scale.ndim() > 1) throw py::value_error("scale must be a scalar or 1-D, got shape " + shape_str(scale));
  kernels::QuantAxis ax;
  const index_t n_param = scale.size();
  if (zp.size() != 0 && zp.size() != n_param)
    throw py::value_error("zero_point of shape " + shape_str(zp) + " does not match scale of shape " + shape_str(scale));
  ax.scale = static_cast<const float*>(scale.data());
  ax.zero_point = zp.size() ? static_cast<const std::int32_t*>(zp.data()) : nullptr;
  ax.n_param = n_param;
  if (axis_obj.is_none()) {
    if (n_param != 1) throw py::value_error("per-channel scale of shape " + shape_str(scale) + " needs an axis");
    ax.outer = 1; ax.C = 1; ax.inner = x.size();
    return ax;
  }
  int axis = axis_obj.cast<int>();
  const int nd = static_cast<int>(x.ndim());
  if (axis < 0) axis += nd;
  if (axis < 0 || axis >= nd) throw py::value_error("axis " + std::to_string(axis_obj.cast<int>()) + " out of range for shape " + shape_str(x));
  ax.outer = 1; ax.inner = 1;
  for (int i = 0; i < axis; ++i) ax.outer *= x.shape(i);
  ax.C = x.shape(axis);
  for (int i = axis + 1; i < nd; ++i) ax.inner *= x.shape(i);
  if (n_param != 1 && n_param != ax.C)
    throw py::value_error("scale of shape " + shape_str(scale) + " does not match axis " + std::to_string(axis) + " of x with shape " + shape_str(x));
  return ax;
}

}  // namespace

// The bf16 and fp32 GEMM bindings differ only in A's element type and the kernel.
template <typename T, DT kDt,
          Status (*Kernel)(const T*, index_t, index_t, const PackedWeights&, const kernels::Epilogue&, void*, index_t)>
py::array float_gemm(py::array A, const PackedWeights& W, py::object bias, const std::string& activation,
                     const std::string& out_dtype, double out_scale, int out_zero_point, py::object out_mul,
                     py::object out) {
  check(A, "A", kDt, 1);
  std::vector<py::ssize_t> oshape;
  const index_t M = gemm_rows(A, W, &oshape);
  py::array bias_keep, mul_keep;
  kernels::Epilogue e = make_epilogue(activation, out_dtype, out_scale, out_zero_point);
  e.bias = optional_bias(bias, W, &bias_keep);
  e.out_mul = optional_columns(out_mul, W, &mul_keep, "out_mul");
  if (e.out == OutType::s32) throw py::value_error("out_dtype s32 is only available for gemm_s8");
  py::array C = gemm_out(out, e.out, oshape);
  Status st;
  {
    py::gil_scoped_release nogil;
    st = Kernel(static_cast<const T*>(A.data()), M, W.K(), W, e, C.mutable_data(), W.N());
  }
  ok(st);
  return C;
}

// quantize (fp32 in) and requantize (int32 in) bindings differ only in the input type and kernel.
template <typename T, DT kDt, Status (*Kernel)(const T*, const kernels::QuantAxis&, bool, void*)>
py::array to_int8(py::array x, py::array scale, py::array zero_point, const std::string& dtype, py::object axis) {
  check(x, "x", kDt);
  check(zero_point, "zero_point", DT::s32);
  if (dtype != "u8" && dtype != "s8") throw py::value_error("dtype must be u8 or s8, got '" + dtype + "'");
  const kernels::QuantAxis ax = quant_axis(x, scale, zero_point, axis);
  const bool u8 = dtype == "u8";
  py::array q = u8 ? py::array(py::array_t<std::uint8_t>(shape_of(x))) : py::array(py::array_t<std::int8_t>(shape_of(x)));
  Status st;
  {
    py::gil_scoped_release nogil;
    st = Kernel(static_cast<const T*>(x.data()), ax, u8, q.mutable_data());
  }
  ok(st);
  return q;
}

void bind_kernels(py::module_& m) {
  py::class_<PackedWeights, std::shared_ptr<PackedWeights>>(m, "PackedWeights",
      "GEMM weights packed once into the layout the selected micro-kernel reads.")
      .def_property_readonly("K", &PackedWeights::K)
      .def_property_readonly("N", &PackedWeights::N)
      .def_property_readonly("layout", [](const PackedWeights& w) { return std::string(w.sparse() ? "sparse_4x1" : kernels::layout_name(w.layout())); })
      .def_property_readonly("nonzero_blocks", [](const PackedWeights& w) { return w.sparse() ? static_cast<py::ssize_t>(w.sparse()->off.size()) : static_cast<py::ssize_t>(-1); },
                             "4x1 blocks stored (sparse_4x1 packing), -1 for dense packings")
      .def_property_readonly("dtype", [](const PackedWeights& w) { return std::string(layout_dtype(w.layout())); })
      .def_property_readonly("nbytes", &PackedWeights::nbytes)
      .def_property_readonly("per_channel", &PackedWeights::per_channel)
      .def_property_readonly("isa", [](const PackedWeights& w) { return std::string(isa_name(kernels::gemm_isa(w))); },
                             "ISA level a GEMM on these weights would run at now.")
      .def_property_readonly("scale", [](const PackedWeights& w) { return py::array_t<float>(w.scale().size(), w.scale().data()); })
      .def_property_readonly("zero_point", [](const PackedWeights& w) { return py::array_t<std::int32_t>(w.zero_point().size(), w.zero_point().data()); })
      .def_property_readonly("col_sum", [](const PackedWeights& w) { return py::array_t<std::int32_t>(w.col_sum().size(), w.col_sum().data()); })
      .def("unpack", [](const PackedWeights& w) {
        py::array_t<float> out({w.K(), w.N()});
        float* o = out.mutable_data();
        for (index_t k = 0; k < w.K(); ++k)
          for (index_t n = 0; n < w.N(); ++n) o[k * w.N() + n] = w.at_f32(k, n);
        return out;
      }, "The stored weights as a float32 [K, N] array (for tests).")
      .def("__repr__", [](const PackedWeights& w) {
        return "PackedWeights(K=" + std::to_string(w.K()) + ", N=" + std::to_string(w.N()) + ", dtype=" +
               layout_dtype(w.layout()) + ", layout=" + kernels::layout_name(w.layout()) + ", nbytes=" + std::to_string(w.nbytes()) + ")";
      });

  m.def("pack_s8", [](py::array B, py::array scale, py::array zero_point, bool transposed, py::object layout) {
    check(B, "B", DT::s8);
    check(scale, "scale", DT::f32);
    check(zero_point, "zero_point", DT::s32);
    const auto [K, N] = weight_dims(B, transposed);
    auto W = std::make_shared<PackedWeights>();
    const auto* b = static_cast<const std::int8_t*>(B.data());
    const auto* s = static_cast<const float*>(scale.data());
    const auto* z = static_cast<const std::int32_t*>(zero_point.data());
    Status st;
    if (layout.is_none()) {
      py::gil_scoped_release nogil;
      st = PackedWeights::pack_s8(b, K, N, transposed, s, scale.size(), z, zero_point.size(), W.get());
    } else {
      const std::string l = layout.cast<std::string>();
      kernels::PackLayout pl;
      if (l == "sparse_4x1") {
        py::gil_scoped_release nogil;
        st = PackedWeights::pack_s8_sparse(b, K, N, transposed, s, scale.size(), z, zero_point.size(), W.get());
        ok(st);
        return W;
      }
      if (l == "s8_k4") pl = kernels::PackLayout::s8_k4;
      else if (l == "s16_k2") pl = kernels::PackLayout::s16_k2;
      else throw py::value_error("unknown int8 layout '" + l + "'; expected s8_k4|s16_k2|sparse_4x1");
      py::gil_scoped_release nogil;
      st = PackedWeights::pack_s8(b, K, N, transposed, s, scale.size(), z, zero_point.size(), pl, W.get());
    }
    ok(st);
    return W;
  }, py::arg("B"), py::arg("scale"), py::arg("zero_point"), py::arg("transposed") = false, py::arg("layout") = py::none());

  m.def("pack_bf16", [](py::array B, bool transposed) {
    const auto [K, N] = weight_dims(B, transposed);
    auto W = std::make_shared<PackedWeights>();
    Status st;
    if (is_dt(B, DT::f32)) {
      check(B, "B", DT::f32);
      py::gil_scoped_release nogil;
      st = PackedWeights::pack_bf16_from_f32(static_cast<const float*>(B.data()), K, N, transposed, W.get());
    } else {
      check(B, "B", DT::u16);
      py::gil_scoped_release nogil;
      st = PackedWeights::pack_bf16(static_cast<const bf16_t*>(B.data()), K, N, transposed, W.get());
    }
    ok(st);
    return W;
  }, py::arg("B"), py::arg("transposed") = false);

  m.def("pack_f32", [](py::array B, bool transposed) {
    check(B, "B", DT::f32);
    const auto [K, N] = weight_dims(B, transposed);
    auto W = std::make_shared<PackedWeights>();
    Status st;
    {
      py::gil_scoped_release nogil;
      st = PackedWeights::pack_f32(static_cast<const float*>(B.data()), K, N, transposed, W.get());
    }
    ok(st);
    return W;
  }, py::arg("B"), py::arg("transposed") = false);

  m.def("gemm_s8", [](py::array A, const PackedWeights& W, double a_scale, int a_zero_point, py::object bias,
                      const std::string& activation, const std::string& out_dtype, double out_scale, int out_zero_point,
                      py::object row_scale, py::object row_zp, py::object out_mul, py::object out) {
    check(A, "A", DT::u8, 1);
    std::vector<py::ssize_t> oshape;
    const index_t M = gemm_rows(A, W, &oshape);
    py::array bias_keep, mul_keep;
    kernels::Epilogue e = make_epilogue(activation, out_dtype, out_scale, out_zero_point);
    e.bias = optional_bias(bias, W, &bias_keep);
    e.out_mul = optional_columns(out_mul, W, &mul_keep, "out_mul");
    e.a_scale = static_cast<float>(a_scale);
    e.a_zp = a_zero_point;
    py::array rs_keep, rz_keep;
    if (row_scale.is_none() != row_zp.is_none()) throw py::value_error("a_row_scale and a_row_zero_point come together");
    if (!row_scale.is_none()) {
      rs_keep = py::array_t<float, py::array::c_style | py::array::forcecast>(row_scale);
      rz_keep = py::array_t<std::int32_t, py::array::c_style | py::array::forcecast>(row_zp);
      if (rs_keep.size() != M || rz_keep.size() != M)
        throw py::value_error("a_row_scale / a_row_zero_point need one entry per row of A (" + std::to_string(M) + ")");
      e.a_row_scale = static_cast<const float*>(rs_keep.data());
      e.a_row_zp = static_cast<const std::int32_t*>(rz_keep.data());
    }
    py::array C = gemm_out(out, e.out, oshape);
    Status st;
    {
      py::gil_scoped_release nogil;
      st = kernels::gemm_s8(static_cast<const std::uint8_t*>(A.data()), M, W.K(), W, e, C.mutable_data(), W.N());
    }
    ok(st);
    return C;
  }, py::arg("A"), py::arg("W"), py::arg("a_scale") = 1.0, py::arg("a_zero_point") = 0, py::arg("bias") = py::none(),
     py::arg("activation") = "none", py::arg("out_dtype") = "f32", py::arg("out_scale") = 1.0, py::arg("out_zero_point") = 0,
     py::arg("a_row_scale") = py::none(), py::arg("a_row_zero_point") = py::none(), py::arg("out_mul") = py::none(),
     py::arg("out") = py::none());

  m.def("gemm_bf16", float_gemm<bf16_t, DT::u16, kernels::gemm_bf16>, py::arg("A"), py::arg("W"),
        py::arg("bias") = py::none(), py::arg("activation") = "none", py::arg("out_dtype") = "f32",
        py::arg("out_scale") = 1.0, py::arg("out_zero_point") = 0, py::arg("out_mul") = py::none(),
        py::arg("out") = py::none());
  m.def("gemm_f32", float_gemm<float, DT::f32, kernels::gemm_f32>, py::arg("A"), py::arg("W"),
        py::arg("bias") = py::none(), py::arg("activation") = "none", py::arg("out_dtype") = "f32",
        py::arg("out_scale") = 1.0, py::arg("out_zero_point") = 0, py::arg("out_mul") = py::none(),
        py::arg("out") = py::none());

  m.def("quantize", to_int8<float, DT::f32, kernels::quantize>, py::arg("x"), py::arg("scale"),
        py::arg("zero_point"), py::arg("dtype") = "u8", py::arg("axis") = py::none());
  m.def("requantize", to_int8<std::int32_t, DT::s32, kernels::requantize>, py::arg("x"), py::arg("scale"),
        py::arg("zero_point"), py::arg("dtype") = "u8", py::arg("axis") = py::none());

  m.def("dequantize", [](py::array q, py::array scale, py::array zero_point, py::object axis) {
    const bool u8 = is_dt(q, DT::u8);
    if (!u8 && !is_dt(q, DT::s8)) throw py::type_error("q: expected a uint8 or int8 array, got " + describe(q));
    check(q, "q", u8 ? DT::u8 : DT::s8);
    check(zero_point, "zero_point", DT::s32);
    const kernels::QuantAxis ax = quant_axis(q, scale, zero_point, axis);
    py::array_t<float> y(shape_of(q));
    Status st;
    {
      py::gil_scoped_release nogil;
      st = kernels::dequantize(q.data(), u8, ax, y.mutable_data());
    }
    ok(st);
    return y;
  }, py::arg("q"), py::arg("scale"), py::arg("zero_point"), py::arg("axis") = py::none());

  // layernorm and layernorm_quantize share the argument checks.
  struct LnArgs {
    py::array b, r;  // default-constructed arrays are empty, not null: track pointers explicitly
    const float* bp = nullptr;
    const float* rp = nullptr;
    index_t N = 0, rows = 0;
  };
  auto ln_args = [](const py::array& x, const py::array& gamma, const py::object& beta, const py::object& residual,
                    bool return_sum) {
    check(x, "x", DT::f32, 1);
    check(gamma, "gamma", DT::f32);
    LnArgs a;
    a.N = x.shape(x.ndim() - 1);
    a.rows = a.N ? x.size() / a.N : 0;
    if (gamma.ndim() != 1 || gamma.shape(0) != a.N)
      throw py::value_error("gamma of shape " + shape_str(gamma) + " does not match x of shape " + shape_str(x));
    if (!beta.is_none()) {
      a.b = py::reinterpret_borrow<py::array>(beta);
      check(a.b, "beta", DT::f32);
      if (a.b.ndim() != 1 || a.b.shape(0) != a.N)
        throw py::value_error("beta of shape " + shape_str(a.b) + " does not match x of shape " + shape_str(x));
      a.bp = static_cast<const float*>(a.b.data());
    }
    if (!residual.is_none()) {
      a.r = py::reinterpret_borrow<py::array>(residual);
      check(a.r, "residual", DT::f32);
      if (shape_of(a.r) != shape_of(x))
        throw py::value_error("residual of shape " + shape_str(a.r) + " does not match x of shape " + shape_str(x));
      a.rp = static_cast<const float*>(a.r.data());
    }
    if (return_sum && residual.is_none()) throw py::value_error("return_sum=True needs a residual");
    return a;
  };

  m.def("layernorm", [ln_args](py::array x, py::array gamma, py::object beta, double eps, py::object residual,
                               bool return_sum) -> py::object {
    const LnArgs a = ln_args(x, gamma, beta, residual, return_sum);
    py::array_t<float> y(shape_of(x));
    py::array_t<float> s(return_sum ? shape_of(x) : std::vector<py::ssize_t>{0});
    Status st;
    {
      py::gil_scoped_release nogil;
      st = kernels::layernorm(static_cast<const float*>(x.data()), a.rp, static_cast<const float*>(gamma.data()), a.bp,
                              static_cast<float>(eps), a.rows, a.N, y.mutable_data(), return_sum ? s.mutable_data() : nullptr);
    }
    ok(st);
    if (return_sum) return py::make_tuple(y, s);
    return std::move(y);
  }, py::arg("x"), py::arg("gamma"), py::arg("beta") = py::none(), py::arg("eps") = 1e-5,
     py::arg("residual") = py::none(), py::arg("return_sum") = false);

  m.def("layernorm_quantize", [ln_args](py::array x, py::array gamma, py::object beta, double eps, py::object residual,
                                        bool return_sum, double q_scale, int q_zero_point) -> py::tuple {
    const LnArgs a = ln_args(x, gamma, beta, residual, return_sum);
    py::array_t<float> y(shape_of(x));
    py::array_t<std::uint8_t> q(shape_of(x));
    py::array_t<float> s(return_sum ? shape_of(x) : std::vector<py::ssize_t>{0});
    Status st;
    {
      py::gil_scoped_release nogil;
      st = kernels::layernorm_quantize(static_cast<const float*>(x.data()), a.rp, static_cast<const float*>(gamma.data()),
                                       a.bp, static_cast<float>(eps), a.rows, a.N, y.mutable_data(),
                                       return_sum ? s.mutable_data() : nullptr, static_cast<float>(q_scale), q_zero_point,
                                       q.mutable_data());
    }
    ok(st);
    if (return_sum) return py::make_tuple(y, q, s);
    return py::make_tuple(y, q);
  }, py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("eps"), py::arg("residual"), py::arg("return_sum"),
     py::arg("q_scale"), py::arg("q_zero_point"));

  m.def("layernorm_quantize_dynamic", [ln_args](py::array x, py::array gamma, py::object beta, double eps,
                                                py::object residual) -> py::tuple {
    const LnArgs a = ln_args(x, gamma, beta, residual, false);
    py::array_t<float> y(shape_of(x));
    py::array_t<std::uint8_t> q(shape_of(x));
    py::array_t<float> scale(std::vector<py::ssize_t>{static_cast<py::ssize_t>(a.rows)});
    py::array_t<std::int32_t> zp(std::vector<py::ssize_t>{static_cast<py::ssize_t>(a.rows)});
    Status st;
    {
      py::gil_scoped_release nogil;
      st = kernels::layernorm_quantize_dynamic(static_cast<const float*>(x.data()), a.rp, static_cast<const float*>(gamma.data()),
                                               a.bp, static_cast<float>(eps), a.rows, a.N, y.mutable_data(), nullptr,
                                               q.mutable_data(), scale.mutable_data(), zp.mutable_data());
    }
    ok(st);
    return py::make_tuple(y, q, scale, zp);
  }, py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("eps"), py::arg("residual"));

  m.def("quantize_rows_dynamic_u8", [](py::array x) {
    check(x, "x", DT::f32, 1);
    const index_t n = x.shape(x.ndim() - 1), rows = n ? x.size() / n : 0;
    py::array_t<std::uint8_t> q(shape_of(x));
    py::array_t<float> scale(std::vector<py::ssize_t>{static_cast<py::ssize_t>(rows)});
    py::array_t<std::int32_t> zp(std::vector<py::ssize_t>{static_cast<py::ssize_t>(rows)});
    Status st;
    {
      py::gil_scoped_release nogil;
      st = kernels::quantize_rows_dynamic_u8(static_cast<const float*>(x.data()), rows, n, q.mutable_data(),
                                             scale.mutable_data(), zp.mutable_data());
    }
    ok(st);
    return py::make_tuple(q, scale, zp);
  }, py::arg("x"), "Dynamic u8 quantization of each last-axis row: (q, scale per row (NaN: not finite), zero_point per row).");

  m.def("minmax", [](py::array x) {
    check(x, "x", DT::f32);
    float lo = 0.f, hi = 0.f;
    Status st;
    {
      py::gil_scoped_release nogil;
      st = kernels::minmax(static_cast<const float*>(x.data()), x.size(), &lo, &hi);
    }
    ok(st);
    return py::make_tuple(lo, hi);
  }, py::arg("x"), "(min(0, x.min()), max(0, x.max())) as floats.");

  m.def("quantize_dynamic_u8", [](py::array x) {
    check(x, "x", DT::f32);
    py::array_t<std::uint8_t> q(shape_of(x));
    float scale = 1.f, lo = 0.f, hi = 0.f;
    std::int32_t zp = 0;
    Status st;
    {
      py::gil_scoped_release nogil;
      st = kernels::quantize_dynamic_u8(static_cast<const float*>(x.data()), x.size(), q.mutable_data(), &scale, &zp, &lo, &hi);
    }
    ok(st);
    return py::make_tuple(q, scale, zp, lo, hi);
  }, py::arg("x"), "Dynamic per-tensor u8 quantization: (q, scale, zero_point, lo, hi).");

  m.def("softmax", [](py::array x, py::object mask) {
    check(x, "x", DT::f32, 1);
    const index_t N = x.shape(x.ndim() - 1), rows = N ? x.size() / N : 0;
    py::array mk;
    const float* mp = nullptr;
    index_t mask_rows = 1;
    if (!mask.is_none()) {
      mk = py::reinterpret_borrow<py::array>(mask);
      check(mk, "mask", DT::f32, 1);
      // The mask must broadcast as [d0..dt-1, 1, ..., 1, N] against x (a row-group mask).
      const py::ssize_t nd = x.ndim(), md = mk.ndim();
      if (md > nd || mk.shape(md - 1) != N)
        throw py::value_error("mask of shape " + shape_str(mk) + " does not broadcast to x of shape " + shape_str(x));
      std::vector<py::ssize_t> ms(nd, 1);
      for (py::ssize_t i = 0; i < md; ++i) ms[nd - md + i] = mk.shape(i);
      py::ssize_t t = 0;
      while (t < nd - 1 && ms[t] == x.shape(t)) ++t;
      for (py::ssize_t i = t; i < nd - 1; ++i)
        if (ms[i] != 1)
          throw py::value_error("mask of shape " + shape_str(mk) + " is not a leading-prefix broadcast of x with shape " +
                                shape_str(x) + " (use graphopt.runtime.kernels.softmax, which expands it)");
      mask_rows = 1;
      for (py::ssize_t i = 0; i < t; ++i) mask_rows *= ms[i];
      mp = static_cast<const float*>(mk.data());
    }
    py::array_t<float> y(shape_of(x));
    Status st;
    {
      py::gil_scoped_release nogil;
      st = kernels::softmax(static_cast<const float*>(x.data()), mp,
                            mask_rows, rows, N, y.mutable_data());
    }
    ok(st);
    return y;
  }, py::arg("x"), py::arg("mask") = py::none());

  m.def("gelu", [](py::array x, const std::string& approximate) {
    check(x, "x", DT::f32);
    if (approximate != "none" && approximate != "tanh") throw py::value_error("approximate must be 'none' or 'tanh', got '" + approximate + "'");
    py::array_t<float> y(shape_of(x));
    Status st;
    {
      py::gil_scoped_release nogil;
      st = kernels::gelu(static_cast<const float*>(x.data()), x.size(), approximate == "tanh", y.mutable_data());
    }
    ok(st);
    return y;
  }, py::arg("x"), py::arg("approximate") = "none");

  for (const char* name : {"erf", "tanh"}) {
    const bool is_erf = name[0] == 'e';
    m.def(name, [is_erf](py::array x) {
      check(x, "x", DT::f32);
      py::array_t<float> y(shape_of(x));
      Status st;
      {
        py::gil_scoped_release nogil;
        const auto* xp = static_cast<const float*>(x.data());
        st = is_erf ? kernels::erf(xp, x.size(), y.mutable_data()) : kernels::tanh(xp, x.size(), y.mutable_data());
      }
      ok(st);
      return y;
    }, py::arg("x"), is_erf ? "erf(x) in float32 (max abs error 6.4e-8)." : "tanh(x) in float32 (max abs error 5.6e-8).");
  }

  m.def("to_bf16", [](py::array x) {
    check(x, "x", DT::f32);
    py::array_t<std::uint16_t> y(shape_of(x));
    {
      py::gil_scoped_release nogil;
      ok(kernels::f32_to_bf16(static_cast<const float*>(x.data()), x.size(), y.mutable_data()));
    }
    return y;
  }, py::arg("x"), "fp32 -> bf16 bits (uint16), round to nearest even.");

  m.def("from_bf16", [](py::array x) {
    check(x, "x", DT::u16);
    py::array_t<float> y(shape_of(x));
    {
      py::gil_scoped_release nogil;
      ok(kernels::bf16_to_f32(static_cast<const bf16_t*>(x.data()), x.size(), y.mutable_data()));
    }
    return y;
  }, py::arg("x"), "bf16 bits (uint16) -> fp32.");

  m.def("attention", [](py::array q, py::array k, py::array v, py::object mask, double scale, double q_scale,
                        double k_scale, double v_scale, const std::string& out_dtype, bool bf16_compute, py::object out, bool causal,
                        std::int64_t window, double causal_fill) {
    kernels::AttentionArgs a;
    DT dt;
    if (is_dt(q, DT::f32)) { a.type = kernels::AttnType::f32; dt = DT::f32; }
    else if (is_dt(q, DT::u16)) { a.type = kernels::AttnType::bf16; dt = DT::u16; }
    else if (is_dt(q, DT::s8)) { a.type = kernels::AttnType::s8; dt = DT::s8; }
    else throw py::type_error("q: expected a float32, uint16 (bf16) or int8 array, got " + describe(q));
    if (!is_dt(k, dt) || !is_dt(v, dt))
      throw py::type_error("q, k, v must share one dtype; got q " + describe(q) + ", k " + describe(k) + ", v " + describe(v));
    if (q.ndim() != 4 || k.ndim() != 4 || v.ndim() != 4)
      throw py::value_error("q, k, v must be [B, H, S, D]; got q " + shape_str(q) + ", k " + shape_str(k) + ", v " + shape_str(v));
    if (shape_of(k) != shape_of(v) || k.shape(0) != q.shape(0) || k.shape(1) < 1 || q.shape(1) % k.shape(1) ||
        k.shape(3) != q.shape(3))
      throw py::value_error("mismatched attention shapes (k/v heads must divide q heads): q " + shape_str(q) + ", k " +
                            shape_str(k) + ", v " + shape_str(v));
    a.B = q.shape(0); a.H = q.shape(1); a.Sq = q.shape(2); a.Sk = k.shape(2); a.D = q.shape(3);
    a.Hkv = k.shape(1);
    a.causal = causal;
    a.window = window;
    a.causal_fill = static_cast<float>(causal_fill);
    a.q_st = head_strides(q, "q");
    a.k_st = head_strides(k, "k");
    a.v_st = head_strides(v, "v");
    a.q = q.data(); a.k = k.data(); a.v = v.data();
    a.scale = static_cast<float>(scale);
    a.q_scale = static_cast<float>(q_scale); a.k_scale = static_cast<float>(k_scale); a.v_scale = static_cast<float>(v_scale);
    a.bf16_compute = bf16_compute;
    py::array mk;
    if (!mask.is_none()) {
      mk = py::reinterpret_borrow<py::array>(mask);
      check(mk, "mask", DT::f32);
      const bool ok4 = mk.ndim() == 4 && (mk.shape(1) == 1 || mk.shape(1) == a.H) &&
                       (mk.shape(0) == 1 || mk.shape(0) == a.B) &&
                       (mk.shape(2) == 1 || mk.shape(2) == a.Sq) && mk.shape(3) == a.Sk;
      const bool ok2 = mk.ndim() == 2 && mk.shape(0) == a.B && mk.shape(1) == a.Sk;
      if (!ok4 && !ok2)
        throw py::value_error("mask of shape " + shape_str(mk) + " must be [B|1, H|1, Sq|1, Sk] or [B, Sk] for q " +
                              shape_str(q) + " and k " + shape_str(k));
      a.mask = static_cast<const float*>(mk.data());
      a.mask_b = mk.shape(0);
      a.mask_q = ok4 ? mk.shape(2) : 1;
      a.mask_h = ok4 ? mk.shape(1) : 1;
    }
    py::array o;
    if (out.is_none()) {
      if (out_dtype != "f32" && out_dtype != "bf16") throw py::value_error("out_dtype must be f32 or bf16, got '" + out_dtype + "'");
      a.out_bf16 = out_dtype == "bf16";
      std::vector<py::ssize_t> os = shape_of(q);
      o = a.out_bf16 ? py::array(py::array_t<std::uint16_t>(os)) : py::array(py::array_t<float>(os));
    } else {
      o = py::reinterpret_borrow<py::array>(out);
      if (!is_dt(o, DT::f32) && !is_dt(o, DT::u16))
        throw py::type_error("out: expected a float32 or uint16 (bf16) array, got " + describe(o));
      if (o.ndim() != 4 || o.shape(0) != a.B || o.shape(1) != a.H || o.shape(2) != a.Sq || o.shape(3) != a.D)
        throw py::value_error("out of shape " + shape_str(o) + " must match q " + shape_str(q));
      if (!o.writeable()) throw py::value_error("out is read-only");
      a.out_bf16 = is_dt(o, DT::u16);
      a.out_st = head_strides(o, "out");
    }
    a.out = o.mutable_data();
    Status st;
    {
      py::gil_scoped_release nogil;
      st = kernels::attention(a);
    }
    ok(st);
    return o;
  }, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("mask") = py::none(), py::arg("scale") = 1.0,
     py::arg("q_scale") = 1.0, py::arg("k_scale") = 1.0, py::arg("v_scale") = 1.0, py::arg("out_dtype") = "f32",
     py::arg("bf16_compute") = false, py::arg("out") = py::none(), py::arg("causal") = false, py::arg("window") = 0,
     py::arg("causal_fill") = -INFINITY);

  m.def("peak_gops", [](const std::string& kind, double seconds) {
    py::gil_scoped_release nogil;
    return kernels::peak_gops(kind.c_str(), seconds);
  }, py::arg("kind"), py::arg("seconds") = 0.2,
     "Single-core peak of a register-resident loop in GOPS: int8_vnni|int8_avx2|bf16|fp32_avx512|fp32_avx2 (0 if unavailable).");

  m.def("amx_stage_seconds", [](const PackedWeights& W, index_t M, const std::string& stage, int reps) {
    if (stage != "products" && stage != "stores")
      throw py::value_error("stage must be 'products' or 'stores', got '" + stage + "'");
    if (M < 1 || reps < 1) throw py::value_error("M and reps must be >= 1");
    py::gil_scoped_release nogil;
    return kernels::amx_stage_seconds(W, M, stage == "stores", reps);
  }, py::arg("W"), py::arg("M"), py::arg("stage"), py::arg("reps") = 1,
     "Seconds per call of the AMX GEMM's block loop on W with M zero rows, up to the tile products or the tile "
     "stores (no A copy, no epilogue); 0 without AMX. For benchmarks/amx_gemm.py.");
}

}  // namespace graphopt::bindings
