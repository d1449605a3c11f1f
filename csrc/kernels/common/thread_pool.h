// A small caller-participating thread pool for the GEMMs.
//
// Why not an OpenMP parallel region: its closing barrier waits for every
// team thread, so when another process holds a core, a worker that has not
// even been scheduled yet stalls the whole call for a scheduler time slice
// (milliseconds for a microsecond GEMM). Here tasks are claimed from an
// atomic counter; the caller works too and waits only for tasks that were
// actually claimed. A worker that wakes late finds nothing left and sleeps
// again. The thread count follows omp_get_max_threads() (set_num_threads).
//
// ISA-neutral TU; the interface is a plain function pointer + context (no
// std::function instantiated in ISA translation units).
#pragma once
#include <cstdint>

namespace graphopt::kernels {

using TaskFn = void (*)(void* ctx, std::int64_t task);

// Runs fn(ctx, t) for every t in [0, ntasks) on up to `threads` threads
// (the caller included) and returns when all have finished. Thread i first
// runs the i-th contiguous block of tasks, then takes unclaimed tasks from the
// other blocks, so number tasks such that neighbours share data. Re-entrant and
// safe to call from several threads: a call that finds the pool busy (or is
// nested inside a task) runs its tasks on the calling thread alone.
void parallel_tasks(std::int64_t ntasks, int threads, TaskFn fn, void* ctx);

}  // namespace graphopt::kernels
