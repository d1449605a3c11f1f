// Caller-participating thread pool (see thread_pool.h).
#include "thread_pool.h"

#include <pthread.h>
#if defined(__linux__)
#include <sched.h>
#endif

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define GRAPHOPT_PAUSE() _mm_pause()
#else
#define GRAPHOPT_PAUSE() std::this_thread::yield()
#endif

namespace graphopt::kernels {
namespace {

// Tasks [begin, end) are first offered to one participant; `next` is claimed
// with fetch_add by the owner and, once they run out of their own, by the others.
struct alignas(64) TaskRange {
  std::atomic<std::int64_t> next{0};
  std::int64_t end = 0;
};

struct Job {
  std::int64_t ntasks = 0;
  TaskFn fn = nullptr;
  void* ctx = nullptr;
  int max_workers = 0;                 // workers allowed to join (threads - 1)
  std::vector<TaskRange> ranges;       // one per participant (caller = 0)
  std::atomic<std::int64_t> done{0};   // finished tasks
  std::atomic<int> joined{0};          // workers that took a reference (<= max_workers)
  int caller_cpu = -1;                 // where the caller runs (Linux), see leave_cpu
};

// A worker woken by the caller is often placed on the caller's own CPU (the
// scheduler's wake-affine heuristic) even when another CPU is idle; there it
// only time-shares with the caller, and the whole call runs at one-thread speed
// (seen as 2-thread GEMMs at 1.0x for a whole burst of calls, until the load
// balancer moves the worker). Such a worker steps off that CPU once: it drops
// the CPU from its affinity mask, which migrates it immediately, and restores the
// mask (so any user restriction is kept and later placement stays free).
void leave_cpu(int cpu) {
#if defined(__linux__)
  if (cpu < 0 || sched_getcpu() != cpu) return;
  cpu_set_t allowed;
  if (pthread_getaffinity_np(pthread_self(), sizeof(allowed), &allowed) != 0 || !CPU_ISSET(cpu, &allowed)) return;
  cpu_set_t others = allowed;
  CPU_CLR(cpu, &others);
  if (CPU_COUNT(&others) == 0) return;
  if (pthread_setaffinity_np(pthread_self(), sizeof(others), &others) == 0)
    pthread_setaffinity_np(pthread_self(), sizeof(allowed), &allowed);
#else
  (void)cpu;
#endif
}

class Pool {
 public:
  static constexpr std::chrono::microseconds kSpin{100};

  void run(std::int64_t ntasks, int threads, TaskFn fn, void* ctx) {
    std::unique_lock<std::mutex> busy(run_mu_, std::try_to_lock);
    if (!busy.owns_lock() || threads <= 1 || ntasks <= 1 || tls_in_task) {
      serial(ntasks, fn, ctx);
      return;
    }
    ensure_workers(threads - 1);
    // Shared with the workers: one that joins late (or is preempted between joining
    // and finding the tasks gone) keeps the Job alive itself, so the caller returns
    // as soon as the claimed tasks are done instead of waiting for it to run again.
    auto job = std::make_shared<Job>();
    job->ntasks = ntasks;
    job->fn = fn;
    job->ctx = ctx;  // only dereferenced through a claimed task, which the caller waits for
    job->max_workers = threads - 1;
#if defined(__linux__)
    job->caller_cpu = sched_getcpu();
#endif
    job->ranges = std::vector<TaskRange>(static_cast<std::size_t>(threads));
    for (int r = 0; r < threads; ++r) {
      job->ranges[r].next.store(ntasks * r / threads, std::memory_order_relaxed);
      job->ranges[r].end = ntasks * (r + 1) / threads;
    }
    {
      std::lock_guard<std::mutex> g(mu_);
      job_ = job;
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    work(*job, 0);
    // Wait only for tasks that workers claimed and are still running.
    wait_until([&] { return job->done.load(std::memory_order_acquire) >= ntasks; });
  }

 private:
  static thread_local bool tls_in_task;

  // Spin briefly, then yield the core (the thread we wait for may need it).
  template <class Pred>
  static void wait_until(Pred done) {
    for (int i = 0; !done(); ++i) {
      if (i < 4000) GRAPHOPT_PAUSE();
      else std::this_thread::yield();
    }
  }

  static void serial(std::int64_t ntasks, TaskFn fn, void* ctx) {
    const bool was = tls_in_task;
    tls_in_task = true;
    for (std::int64_t t = 0; t < ntasks; ++t) fn(ctx, t);
    tls_in_task = was;
  }

  // Own range first, then help the others. With callers that number tasks so
  // that neighbours share data (the GEMM: consecutive tasks = the same weight
  // panels), each thread keeps working on the same part of the data from call
  // to call while nobody is delayed, and work still flows to whoever is free
  // when a thread loses its core.
  static void work(Job& job, int self) {
    const bool was = tls_in_task;
    tls_in_task = true;
    const int n = static_cast<int>(job.ranges.size());
    for (int k = 0; k < n; ++k) {
      TaskRange& r = job.ranges[(self + k) % n];
      for (;;) {
        const std::int64_t t = r.next.fetch_add(1, std::memory_order_relaxed);
        if (t >= r.end) break;
        job.fn(job.ctx, t);
        job.done.fetch_add(1, std::memory_order_release);
      }
    }
    tls_in_task = was;
  }

  void ensure_workers(int n) {
    while (static_cast<int>(workers_started_) < n) {
      std::thread(&Pool::worker_loop, this).detach();
      ++workers_started_;
    }
  }

  void worker_loop() {
    std::uint64_t seen = 0;
    for (;;) {
      std::shared_ptr<Job> job;
      int self = 0;
      // Back-to-back calls (a plan running layer after layer) find the worker
      // still spinning; after kSpin it sleeps on the condition variable. Timed by
      // the clock, not by a pause count: pause takes ~27 ns on Zen 4 but ~40 ns to
      // ~140 cycles on other cores.
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; generation_.load(std::memory_order_acquire) == seen; ++i) {
        GRAPHOPT_PAUSE();
        if ((i & 63) == 63 && std::chrono::steady_clock::now() - t0 > kSpin) break;
      }
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return generation_.load(std::memory_order_relaxed) != seen; });
        seen = generation_.load(std::memory_order_relaxed);
        job = job_;
        const int j = job ? job->joined.fetch_add(1, std::memory_order_relaxed) : 0;
        if (job && j < job->max_workers) self = j + 1;
        else job.reset();
      }
      if (!job) continue;
      leave_cpu(job->caller_cpu);
      work(*job, self);
    }
  }

  std::mutex run_mu_;  // one parallel job at a time
  std::mutex mu_;
  std::condition_variable cv_;
  std::shared_ptr<Job> job_;  // the latest job (finished ones just have no tasks left)
  std::atomic<std::uint64_t> generation_{0};
  unsigned workers_started_ = 0;
};

thread_local bool Pool::tls_in_task = false;

std::atomic<Pool*> g_pool{nullptr};

void reset_after_fork() {
  // The child has no worker threads; the parent's pool (and its mutexes) is abandoned.
  g_pool.store(nullptr);
}

Pool& pool() {
  Pool* p = g_pool.load(std::memory_order_acquire);
  if (p) return *p;
  static std::once_flag once;
  std::call_once(once, [] { pthread_atfork(nullptr, nullptr, &reset_after_fork); });
  Pool* fresh = new Pool();  // never deleted: detached workers may outlive static destruction
  Pool* expected = nullptr;
  if (!g_pool.compare_exchange_strong(expected, fresh)) {
    delete fresh;
    return *expected;
  }
  return *fresh;
}

}  // namespace

void parallel_tasks(std::int64_t ntasks, int threads, TaskFn fn, void* ctx) {
  if (ntasks <= 0) return;
  pool().run(ntasks, threads, fn, ctx);
}

}  // namespace graphopt::kernels
