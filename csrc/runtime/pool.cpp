// The executor's parallel loops, on the kernels' caller-participating pool
// (csrc/kernels/common/thread_pool.h): one set of worker threads for the whole
// library. See pool.h for why not OpenMP.
#include "pool.h"

#include <algorithm>

#include "../kernels/common/thread_pool.h"

namespace graphopt::runtime {
namespace {

thread_local int t_threads = 1;

void call(void* ctx, std::int64_t i) { (*static_cast<const std::function<void(index_t)>*>(ctx))(static_cast<index_t>(i)); }

}  // namespace

int pool_threads() { return t_threads; }
void set_pool_threads(int n) { t_threads = n < 1 ? 1 : n; }

void parallel_for(index_t n, const std::function<void(index_t)>& fn) {
  if (n <= 0) return;
  const int t = pool_threads();
  if (t <= 1 || n == 1) {
    for (index_t i = 0; i < n; ++i) fn(i);
    return;
  }
  // Nested calls (a chunk that parallelises again) run serially inside the pool.
  kernels::parallel_tasks(n, std::min<index_t>(t, n), &call, const_cast<std::function<void(index_t)>*>(&fn));
}

void parallel_ranges(index_t total, index_t parts, index_t min_size, index_t align,
                     const std::function<void(index_t, index_t)>& fn) {
  if (total <= 0) return;
  align = std::max<index_t>(align, 1);
  index_t size = (total + std::max<index_t>(parts, 1) - 1) / std::max<index_t>(parts, 1);
  size = std::max(size, min_size);
  size = (size + align - 1) / align * align;
  const index_t n = (total + size - 1) / size;
  parallel_for(n, [&](index_t i) { fn(i * size, std::min(total, (i + 1) * size)); });
}

}  // namespace graphopt::runtime
