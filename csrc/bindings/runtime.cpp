// Bindings for the plan executor (graphopt._C.Plan): building a plan from the
// Python lowering, packing weights, fallback callbacks, and run() with the GIL
// released. No execution logic lives here.
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <omp.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../runtime/plan.h"
#include "../runtime/pool.h"
#include "graphopt/kernels/gemm.h"

namespace py = pybind11;

namespace graphopt::bindings {
namespace {

using runtime::DType;
using runtime::Plan;
using runtime::Shape;
using runtime::Step;
using runtime::Tensor;

DType dtype_of(const py::dtype& d) {
  const char k = d.kind();
  const auto sz = d.itemsize();
  if (k == 'f') return sz == 4 ? DType::f32 : sz == 8 ? DType::f64 : sz == 2 ? DType::f16 : DType::undefined;
  if (k == 'i') return sz == 8 ? DType::s64 : sz == 4 ? DType::s32 : sz == 1 ? DType::s8 : sz == 2 ? DType::s16 : DType::undefined;
  if (k == 'u') return sz == 1 ? DType::u8 : sz == 2 ? DType::u16 : sz == 4 ? DType::u32 : sz == 8 ? DType::u64 : DType::undefined;
  if (k == 'b') return DType::boolean;
  return DType::undefined;
}

py::dtype np_dtype(DType d) {
  switch (d) {
    case DType::f32: return py::dtype::of<float>();
    case DType::f64: return py::dtype::of<double>();
    case DType::f16: return py::dtype("float16");
    case DType::s64: return py::dtype::of<std::int64_t>();
    case DType::s32: return py::dtype::of<std::int32_t>();
    case DType::s16: return py::dtype::of<std::int16_t>();
    case DType::s8: return py::dtype::of<std::int8_t>();
    case DType::u8: return py::dtype::of<std::uint8_t>();
    case DType::u16: case DType::bf16: return py::dtype::of<std::uint16_t>();
    case DType::u32: return py::dtype::of<std::uint32_t>();
    case DType::u64: return py::dtype::of<std::uint64_t>();
    case DType::boolean: return py::dtype::of<bool>();
    default: throw py::type_error("no numpy dtype for this tensor type");
  }
}

Tensor view_of(const py::array& a) {
  Tensor t;
  t.data = const_cast<void*>(a.data());
  t.dt = dtype_of(a.dtype());
  t.shape.assign(a.shape(), a.shape() + a.ndim());
  return t;
}

// A numpy array that owns a malloc'd copy of `t` (freed by the capsule).
py::array to_numpy(const Shape& shape, DType dt, void* owned) {
  py::capsule cap(owned, [](void* p) { std::free(p); });
  std::vector<py::ssize_t> shp(shape.begin(), shape.end());
  return py::array(np_dtype(dt), shp, owned, cap);
}

template <class T>
std::vector<T> as_vec(py::handle h) {
  std::vector<T> v;
  if (py::isinstance<py::sequence>(h) && !py::isinstance<py::str>(h))
    for (auto x : h) v.push_back(x.cast<T>());
  else
    v.push_back(h.cast<T>());
  return v;
}

int add_step(Plan& p, const std::string& kind, const std::string& name, std::vector<int> in, std::vector<int> out,
             const py::dict& ia, const py::dict& fa, std::vector<int> free_after) {
  Step s;
  s.kind = kind;
  s.name = name;
  s.in = std::move(in);
  s.out = std::move(out);
  for (auto kv : ia) s.ia[kv.first.cast<std::string>()] = as_vec<std::int64_t>(kv.second);
  for (auto kv : fa) s.fa[kv.first.cast<std::string>()] = as_vec<double>(kv.second);
  s.free_after = std::move(free_after);
  if (!runtime::find_op(kind) && kind != "PyCall") throw py::value_error("no native kernel for step kind '" + kind + "'");
  return p.add_step(std::move(s));
}

// Packs a weight matrix for step `si`: w is fp32 [K,N] (or [N,K] when transposed)
// for modes "f32"/"bf16", or int8 with per-column scales for "s8". fp32 rows may be strided (a column
// slice of a larger weight: no contiguous copy first); `threads` (0: the OpenMP count) pack in parallel.
void pack_weight(Plan& p, int si, const py::array& w, const std::string& mode, bool transposed,
                 const py::object& scale, int threads) {
  if (si < 0 || si >= static_cast<int>(p.steps().size())) throw py::index_error("bad step index");
  if (w.ndim() != 2) throw py::value_error("weights must be a 2-D array");
  const index_t r0 = w.shape(0), r1 = w.shape(1);
  const index_t K = transposed ? r1 : r0, N = transposed ? r0 : r1;
  if (threads <= 0) threads = omp_get_max_threads();
  auto W = std::make_shared<kernels::PackedWeights>();
  Status st;
  {
    if (mode == "f32" || mode == "bf16") {
      if (dtype_of(w.dtype()) != DType::f32) throw py::type_error("f32/bf16 packing needs float32 weights");
      const py::ssize_t es = 4;
      if ((r1 > 1 && w.strides(1) != es) || w.strides(0) % es || (r0 > 1 && w.strides(0) / es < r1))
        throw py::value_error("f32/bf16 weights must have contiguous, non-overlapping rows");
      const index_t ld = r0 > 1 ? static_cast<index_t>(w.strides(0) / es) : r1;
      const float* src = static_cast<const float*>(w.data());
      py::gil_scoped_release nogil;
      st = mode == "f32" ? kernels::PackedWeights::pack_f32(src, K, N, ld, transposed, threads, W.get())
                         : kernels::PackedWeights::pack_bf16_from_f32(src, K, N, ld, transposed, threads, W.get());
    } else if (mode == "s8" || mode == "s8_sparse") {
      if (!(w.flags() & py::array::c_style)) throw py::value_error("int8 weights must be a C-contiguous 2-D array");
      if (dtype_of(w.dtype()) != DType::s8) throw py::type_error("s8 packing needs int8 weights");
      py::array_t<float, py::array::c_style | py::array::forcecast> sc(scale);
      py::gil_scoped_release nogil;
      // s8_sparse: 4x1 blocks for the sparse kernel (same results as s8, faster when most blocks are 0)
      st = mode == "s8" ? kernels::PackedWeights::pack_s8(static_cast<const std::int8_t*>(w.data()), K, N, transposed,
                                                          sc.data(), static_cast<index_t>(sc.size()), nullptr, 0, W.get())
                        : kernels::PackedWeights::pack_s8_sparse(static_cast<const std::int8_t*>(w.data()), K, N,
                                                                 transposed, sc.data(), static_cast<index_t>(sc.size()),
                                                                 nullptr, 0, W.get());
    } else {
      throw py::value_error("unknown packing mode '" + mode + "'");
    }
  }
  if (!st) throw py::value_error(st.message());
  p.step(si).packed.push_back(W);
}

// Fallback steps: run `fn(list[np.ndarray]) -> list[np.ndarray]` with the GIL held.
void set_callback(Plan& p, int si, py::function fn) {
  Step& s = p.step(si);
  auto holder = std::make_shared<py::function>(std::move(fn));
  s.custom = [holder](runtime::ExecCtx& c, const Step& st) -> Status {
    py::gil_scoped_acquire gil;
    try {
      py::list args;
      for (std::size_t i = 0; i < st.in.size(); ++i) {
        if (!c.has(st, i)) { args.append(py::none()); continue; }
        const Tensor& t = c.in(st, i);
        std::vector<py::ssize_t> shp(t.shape.begin(), t.shape.end());
        py::array a(np_dtype(t.dt), shp);
        if (t.nbytes()) std::memcpy(a.mutable_data(), t.data, t.nbytes());
        args.append(a);
      }
      py::object res = (*holder)(args);
      py::list outs(res);
      if (outs.size() != st.out.size())
        return runtime::bad(st, "fallback returned " + std::to_string(outs.size()) + " outputs, expected " + std::to_string(st.out.size()));
      for (std::size_t i = 0; i < st.out.size(); ++i) {
        if (st.out[i] < 0) continue;
        py::array a = py::array::ensure(outs[i], py::array::c_style);
        if (!a) return runtime::bad(st, "fallback output " + std::to_string(i) + " is not an array");
        const DType dt = dtype_of(a.dtype());
        if (dt == DType::undefined) return runtime::bad(st, "fallback output " + std::to_string(i) + " has an unsupported dtype");
        Shape shp(a.shape(), a.shape() + a.ndim());
        Tensor& o = c.out(st, i, shp, dt);
        if (o.nbytes()) std::memcpy(o.data, a.data(), o.nbytes());
      }
    } catch (py::error_already_set& e) {
      return runtime::bad(st, std::string("fallback failed: ") + e.what());
    }
    return Status::ok();
  };
}

py::list run(Plan& p, const std::vector<py::array>& inputs, int num_threads) {
  std::vector<Tensor> ts;
  for (const auto& a : inputs) {
    if (!(a.flags() & py::array::c_style)) throw py::value_error("inputs must be C-contiguous");
    ts.push_back(view_of(a));
  }
  struct Out { Shape shape; DType dt; void* data; };
  std::vector<Out> outs(p.outputs().size(), Out{{}, DType::undefined, nullptr});
  Status st;
  {
    py::gil_scoped_release nogil;
    // The plan's own pool parallelises steps; kernels inside a step run single-threaded.
    const int prev = omp_get_max_threads();
    runtime::set_pool_threads(num_threads > 0 ? num_threads : prev);
    omp_set_num_threads(1);
    st = p.run(ts, [&](int k, const Tensor& t) {
      void* buf = std::malloc(std::max<std::size_t>(t.nbytes(), 1));
      if (t.nbytes()) std::memcpy(buf, t.data, t.nbytes());
      outs[k] = Out{t.shape, t.dt, buf};
    });
    omp_set_num_threads(prev);
    runtime::set_pool_threads(1);
  }
  py::list res;
  for (auto& o : outs) {
    if (!o.data) continue;
    if (!st) { std::free(o.data); continue; }
    res.append(to_numpy(o.shape, o.dt, o.data));
  }
  if (!st) throw py::value_error(st.message());
  return res;
}

}  // namespace

void bind_runtime(py::module_& m) {
  py::class_<Plan, std::shared_ptr<Plan>>(m, "Plan", "A compiled execution plan (built by graphopt.runtime.lower).")
      .def(py::init<>())
      .def("add_slot", [](Plan& p, int dt, const std::string& name) { return p.add_slot(static_cast<DType>(dt), name); },
           py::arg("dtype"), py::arg("name") = "")
      .def("set_const", [](Plan& p, int slot, py::array a) {
             a = py::array::ensure(a, py::array::c_style);
             const DType dt = dtype_of(a.dtype());
             if (dt == DType::undefined) throw py::type_error("unsupported constant dtype " + std::string(py::str(a.dtype())));
             p.set_const(slot, a.data(), Shape(a.shape(), a.shape() + a.ndim()), dt);
           }, py::arg("slot"), py::arg("array"))
      .def("set_const_ref", [](Plan& p, int slot, py::array a, bool droppable) {
             // read in place (a memory-mapped weight): the plan holds a reference to the array, not a copy
             if (!(a.flags() & py::array::c_style)) throw py::value_error("set_const_ref: the array is not C-contiguous");
             if (reinterpret_cast<std::uintptr_t>(a.data()) % 64)
               throw py::value_error("set_const_ref: the array is not 64-byte aligned");
             const DType dt = dtype_of(a.dtype());
             if (dt == DType::undefined) throw py::type_error("unsupported constant dtype " + std::string(py::str(a.dtype())));
             std::shared_ptr<void> owner(new py::object(a), [](void* o) {
               if (!Py_IsInitialized()) return;  // interpreter gone: the mapping goes with the process
               py::gil_scoped_acquire gil;
               delete static_cast<py::object*>(o);
             });
             p.set_const_ref(slot, a.data(), Shape(a.shape(), a.shape() + a.ndim()), dt, std::move(owner), droppable);
           }, py::arg("slot"), py::arg("array"), py::arg("droppable") = false)
      .def("add_step", &add_step, py::arg("kind"), py::arg("name"), py::arg("inputs"), py::arg("outputs"),
           py::arg("iattrs") = py::dict(), py::arg("fattrs") = py::dict(), py::arg("free_after") = std::vector<int>{})
      .def("pack_weight", &pack_weight, py::arg("step"), py::arg("weight"), py::arg("mode"), py::arg("transposed") = false,
           py::arg("scale") = py::none(), py::arg("threads") = 0)
      .def("set_callback", &set_callback, py::arg("step"), py::arg("fn"))
      .def("set_io", &Plan::set_io, py::arg("inputs"), py::arg("outputs"))
      .def("run", &run, py::arg("inputs"), py::arg("num_threads") = 0)
      .def_property_readonly("last_peak_bytes", &Plan::last_peak_bytes)
      .def_property_readonly("arena_bytes", &Plan::arena_bytes)
      .def_property_readonly("const_bytes", &Plan::const_bytes)
      .def_property_readonly("packed_bytes", &Plan::packed_bytes)
      .def_property_readonly("peak_by_signature", &Plan::peak_by_signature)
      .def_property_readonly("num_steps", [](const Plan& p) { return p.steps().size(); })
      .def("set_profile", [](Plan& p, bool on) { p.profile = on; })
      .def("set_poison", [](Plan& p, bool on) { p.poison = on; },
           "Fill every step output with 0xFF bytes (NaN) before the step writes it (debug/check mode).")
      .def_property_readonly("step_us", [](const Plan& p) { return p.step_us; })
      .def("step_kernels", [](const Plan& p) {
        // (kind, name, detail) per step; detail names the packed layout and the ISA the GEMM runs at.
        py::list out;
        for (const Step& s : p.steps()) {
          std::string detail;
          if (!s.packed.empty() && s.packed[0]) {
            detail = std::string(s.packed[0]->sparse() ? "sparse_4x1" : kernels::layout_name(s.packed[0]->layout())) + "@" + isa_name(kernels::gemm_isa(*s.packed[0]));
          }
          out.append(py::make_tuple(s.kind, s.name, detail));
        }
        return out;
      })
      .def("step_weight_shapes", [](const Plan& p) {
        // (K, N) per step with packed weights (N summed over its column slices), else None.
        py::list out;
        for (const Step& s : p.steps()) {
          if (s.packed.empty() || !s.packed[0]) { out.append(py::none()); continue; }
          index_t n = 0;
          for (const auto& w : s.packed) n += w ? w->N() : 0;
          out.append(py::make_tuple(s.packed[0]->K(), n));
        }
        return out;
      });
  m.def("runtime_op_kinds", &runtime::op_kinds, "Step kinds the native executor implements.");
}

}  // namespace graphopt::bindings
