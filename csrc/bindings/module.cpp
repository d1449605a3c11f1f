// The pybind11 module graphopt._C. Registration only: logic lives in csrc/.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <omp.h>
#include <stdexcept>

#include "graphopt/isa.h"

namespace py = pybind11;

namespace graphopt::bindings {

void bind_kernels(py::module_& m);  // kernels.cpp
void bind_runtime(py::module_& m);  // runtime.cpp

void bind_isa(py::module_& m) {
  m.def("cpu_features", [] {
    const CpuFeatures& f = cpu_features();
    py::dict d;
    d["vendor"] = f.vendor;
    d["brand"] = f.brand;
    d["sse4_2"] = f.sse42;
    d["avx"] = f.avx;
    d["fma"] = f.fma;
    d["f16c"] = f.f16c;
    d["avx2"] = f.avx2;
    d["avx512f"] = f.avx512f;
    d["avx512dq"] = f.avx512dq;
    d["avx512bw"] = f.avx512bw;
    d["avx512vl"] = f.avx512vl;
    d["avx512_vnni"] = f.avx512_vnni;
    d["avx512_bf16"] = f.avx512_bf16;
    d["avx512_fp16"] = f.avx512_fp16;
    d["avx_vnni"] = f.avx_vnni;
    d["amx_tile"] = f.amx_tile;
    d["amx_int8"] = f.amx_int8;
    d["amx_bf16"] = f.amx_bf16;
    return d;
  }, "Features this CPU and OS can execute (CPUID gated by XCR0 and the AMX permission).");
  m.def("isa_available", [] { return std::string(isa_name(isa_available())); },
        "Highest ISA level the hardware supports.");
  m.def("isa_selected", [] { return std::string(isa_name(isa_selected())); },
        "Highest ISA level kernels use now: min(available, cap).");
  m.def("set_max_isa", [](const std::string& name) {
    Isa cap;
    if (!parse_isa(name, &cap))
      throw py::value_error("unknown ISA '" + name + "'; expected scalar|avx2|avx512|avx512_vnni|avx512_bf16|amx");
    set_max_isa(cap);
  }, py::arg("name"), "Cap the ISA kernels may use (for tests and comparisons).");
  m.def("get_num_threads", [] { return omp_get_max_threads(); });
  m.def("set_num_threads", [](int n) {
    if (n < 1) throw py::value_error("num_threads must be >= 1, got " + std::to_string(n));
    omp_set_num_threads(n);
  }, py::arg("n"));
}

}  // namespace graphopt::bindings

PYBIND11_MODULE(_C, m) {
  m.doc() = "graphopt native core: ISA detection, kernels, plan executor";
  graphopt::bindings::bind_isa(m);
  graphopt::bindings::bind_kernels(m);
  graphopt::bindings::bind_runtime(m);
}
