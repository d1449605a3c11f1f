// The executor's parallel loops: parallel_for with caller participation and
// dynamic chunk claiming, on the kernels' pool (csrc/kernels/common/thread_pool.h).
//
// Why not OpenMP here: an OpenMP region ends in a barrier that waits for every
// team thread to *arrive*, so on a busy machine one descheduled thread stalls
// each of the ~100 regions of an inference. Here the caller claims chunks
// itself and only waits for chunks already claimed: a late worker simply finds
// no work, and the worst case is single-thread speed. Kernels called inside a
// chunk run single-threaded (the plan sets the OpenMP thread count to 1 for
// the duration of a run).
#pragma once
#include <cstdint>
#include <functional>

#include "graphopt/tensor_view.h"

namespace graphopt::runtime {

// Threads a parallel_for may use in the current run (1 = serial). Set by Plan::run.
int pool_threads();
void set_pool_threads(int n);

// Runs fn(i) for i in [0, n) on up to pool_threads() threads (the caller included).
void parallel_for(index_t n, const std::function<void(index_t)>& fn);

// Splits [0, total) into about `parts` contiguous ranges of at least `min_size`
// (multiples of `align`), calling fn(begin, end) in parallel.
void parallel_ranges(index_t total, index_t parts, index_t min_size, index_t align,
                     const std::function<void(index_t, index_t)>& fn);

}  // namespace graphopt::runtime
