// ForkSafeMutex registry and its pthread_atfork handlers (see fork_safe.h).
#include "fork_safe.h"

#include <pthread.h>

#include <new>
#include <unordered_set>

namespace graphopt::runtime {

struct ForkRegistry {
  // Heap-allocated and never freed: plans may be destroyed during static destruction.
  std::mutex mu;
  std::unordered_set<ForkSafeMutex*> live;

  static ForkRegistry& get() {
    static ForkRegistry* r = [] {
      auto* reg = new ForkRegistry();
      // prepare: no other thread is adding or removing a mutex across the fork;
      // child: single-threaded, so re-initialising mutexes that threads which no longer
      // exist held is safe (the old state is just overwritten, never unlocked).
      pthread_atfork([] { get().mu.lock(); }, [] { get().mu.unlock(); }, [] {
        ForkRegistry& g = get();
        new (&g.mu) std::mutex();
        for (ForkSafeMutex* m : g.live) new (&m->mu_) std::mutex();
      });
      return reg;
    }();
    return *r;
  }
};

ForkSafeMutex::ForkSafeMutex() {
  ForkRegistry& r = ForkRegistry::get();
  std::lock_guard<std::mutex> g(r.mu);
  r.live.insert(this);
}

ForkSafeMutex::~ForkSafeMutex() {
  ForkRegistry& r = ForkRegistry::get();
  std::lock_guard<std::mutex> g(r.mu);
  r.live.erase(this);
}

}  // namespace graphopt::runtime
