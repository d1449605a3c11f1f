// CPUID + XGETBV feature detection. Built without any -m<isa> flag.
#include "graphopt/isa.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#define GRAPHOPT_X86 1
#if defined(_MSC_VER)
#include <intrin.h>
#else
#include <cpuid.h>
#endif
#endif

#if defined(__linux__) && defined(GRAPHOPT_X86)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace graphopt {
namespace {

#ifdef GRAPHOPT_X86
void cpuid(unsigned leaf, unsigned sub, unsigned r[4]) {
#if defined(_MSC_VER)
  int regs[4];
  __cpuidex(regs, static_cast<int>(leaf), static_cast<int>(sub));
  for (int i = 0; i < 4; ++i) r[i] = static_cast<unsigned>(regs[i]);
#else
  __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
#endif
}

unsigned long long xgetbv0() {
#if defined(_MSC_VER)
  return _xgetbv(0);
#else
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<unsigned long long>(hi) << 32) | lo;
#endif
}

inline bool bit(unsigned v, int b) { return (v >> b) & 1u; }

// Linux gates AMX tile data behind a per-process permission request.
bool request_amx_permission() {
#if defined(__linux__)
  constexpr long kArchReqXcompPerm = 0x1023;
  constexpr long kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return true;  // other OSes enable AMX state without a request when XCR0 allows it
#endif
}

CpuFeatures detect() {
  CpuFeatures f;
  unsigned r[4];
  cpuid(0, 0, r);
  const unsigned max_leaf = r[0];
  char vendor[13] = {0};
  std::memcpy(vendor + 0, &r[1], 4);
  std::memcpy(vendor + 4, &r[3], 4);
  std::memcpy(vendor + 8, &r[2], 4);
  f.vendor = vendor;

  cpuid(0x80000000u, 0, r);
  if (r[0] >= 0x80000004u) {
    char brand[49] = {0};
    for (unsigned i = 0; i < 3; ++i) {
      cpuid(0x80000002u + i, 0, r);
      std::memcpy(brand + 16 * i, r, 16);
    }
    f.brand = brand;
    auto b = f.brand.find_first_not_of(' ');
    f.brand = b == std::string::npos ? std::string() : f.brand.substr(b);
  }

  if (max_leaf < 1) return f;
  cpuid(1, 0, r);
  const unsigned ecx1 = r[2];
  const bool osxsave = bit(ecx1, 27);
  const unsigned long long xcr0 = osxsave ? xgetbv0() : 0;
  const bool os_avx = (xcr0 & 0x6) == 0x6;              // XMM + YMM state
  const bool os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0;  // opmask + ZMM_Hi256 + Hi16_ZMM
  const bool os_amx = (xcr0 & 0x60000ull) == 0x60000ull;   // XTILECFG + XTILEDATA

  f.sse42 = bit(ecx1, 20);
  f.avx = bit(ecx1, 28) && os_avx;
  f.fma = bit(ecx1, 12) && os_avx;
  f.f16c = bit(ecx1, 29) && os_avx;
  if (max_leaf < 7) return f;

  cpuid(7, 0, r);
  const unsigned ebx7 = r[1], ecx7 = r[2], edx7 = r[3], max_sub7 = r[0];
  f.avx2 = bit(ebx7, 5) && os_avx;
  f.avx512f = bit(ebx7, 16) && os_avx512;
  f.avx512dq = bit(ebx7, 17) && os_avx512;
  f.avx512bw = bit(ebx7, 30) && os_avx512;
  f.avx512vl = bit(ebx7, 31) && os_avx512;
  f.avx512_vnni = bit(ecx7, 11) && os_avx512;
  f.avx512_fp16 = bit(edx7, 23) && os_avx512;
  const bool amx_hw = bit(edx7, 24) && os_amx;
  if (max_sub7 >= 1) {
    cpuid(7, 1, r);
    f.avx_vnni = bit(r[0], 4) && os_avx;
    f.avx512_bf16 = bit(r[0], 5) && os_avx512;
  }
  if (amx_hw && request_amx_permission()) {
    f.amx_tile = true;
    f.amx_int8 = bit(edx7, 25);
    f.amx_bf16 = bit(edx7, 22);
  }
  return f;
}
#else
CpuFeatures detect() { return CpuFeatures{}; }
#endif

Isa compute_available() {
  const CpuFeatures& f = cpu_features();
  if (!(f.avx2 && f.fma)) return Isa::scalar;
  if (!(f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq)) return Isa::avx2;
  if (!f.avx512_vnni) return Isa::avx512;
  if (!f.avx512_bf16) return Isa::avx512_vnni;
  if (!(f.amx_tile && f.amx_int8 && f.amx_bf16)) return Isa::avx512_bf16;
  return Isa::amx;
}

Isa initial_cap() {
  const char* env = std::getenv("GRAPHOPT_ISA");
  Isa cap = Isa::amx;
  if (env && *env && !parse_isa(env, &cap)) cap = Isa::amx;  // unknown names are reported by Python
  return cap;
}

std::atomic<int>& cap_storage() {
  static std::atomic<int> cap{static_cast<int>(initial_cap())};
  return cap;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::scalar: return "scalar";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
    case Isa::avx512_vnni: return "avx512_vnni";
    case Isa::avx512_bf16: return "avx512_bf16";
    case Isa::amx: return "amx";
  }
  return "unknown";
}

bool parse_isa(const std::string& name, Isa* out) {
  for (int i = 0; i <= static_cast<int>(Isa::amx); ++i) {
    if (name == isa_name(static_cast<Isa>(i))) {
      *out = static_cast<Isa>(i);
      return true;
    }
  }
  return false;
}

Isa isa_available() {
  static const Isa a = compute_available();
  return a;
}

Isa isa_selected() {
  const int cap = cap_storage().load(std::memory_order_relaxed);
  const int avail = static_cast<int>(isa_available());
  return static_cast<Isa>(cap < avail ? cap : avail);
}

void set_max_isa(Isa cap) { cap_storage().store(static_cast<int>(cap), std::memory_order_relaxed); }

}  // namespace graphopt
