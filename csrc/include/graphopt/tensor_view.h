// Non-owning views over row-major matrices, as kernels take them. A plan
// executor passes views into its arena; bindings pass views into numpy arrays.
#pragma once
#include <cstdint>

namespace graphopt {

using index_t = std::int64_t;

// rows x cols, element (r, c) at data[r * ld + c]; ld >= cols.
template <class T>
struct MatView {
  T* data = nullptr;
  index_t rows = 0, cols = 0, ld = 0;
  MatView() = default;
  MatView(T* d, index_t r, index_t c) : data(d), rows(r), cols(c), ld(c) {}
  MatView(T* d, index_t r, index_t c, index_t l) : data(d), rows(r), cols(c), ld(l) {}
  T* row(index_t r) const { return data + r * ld; }
};

// bf16 values are carried as their raw 16-bit patterns.
using bf16_t = std::uint16_t;

}  // namespace graphopt
