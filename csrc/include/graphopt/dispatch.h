// Run-time ISA dispatch (PyTorch DispatchStub, oneDNN ISA chain).
//
// A Dispatch<Fn> holds one function pointer per ISA level; null entries fall
// back to the next lower level, and `ref` (the scalar reference) is always set.
// Resolution happens on every call: it is one relaxed atomic load plus a few
// compares, and it keeps set_max_isa() (used by tests to pin each path)
// effective immediately without cache invalidation.
#pragma once
#include "graphopt/isa.h"

namespace graphopt {

template <class Fn>
struct Dispatch {
  Fn ref = nullptr;
  Fn avx2 = nullptr;
  Fn avx512 = nullptr;
  Fn avx512_vnni = nullptr;
  Fn avx512_bf16 = nullptr;
  Fn amx = nullptr;

  Fn at(Isa isa) const {
    switch (isa) {
      case Isa::amx: if (amx) return amx; [[fallthrough]];
      case Isa::avx512_bf16: if (avx512_bf16) return avx512_bf16; [[fallthrough]];
      case Isa::avx512_vnni: if (avx512_vnni) return avx512_vnni; [[fallthrough]];
      case Isa::avx512: if (avx512) return avx512; [[fallthrough]];
      case Isa::avx2: if (avx2) return avx2; [[fallthrough]];
      case Isa::scalar: break;
    }
    return ref;
  }
  Fn get() const { return at(isa_selected()); }
  // The level `get()` resolves to (for logs, tests and the benchmark).
  Isa level(Isa isa) const {
    for (int i = static_cast<int>(isa); i > 0; --i)
      if (at(static_cast<Isa>(i)) != at(static_cast<Isa>(i - 1))) return static_cast<Isa>(i);
    return Isa::scalar;
  }
};

}  // namespace graphopt
