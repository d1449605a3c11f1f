// CPU feature detection and the ISA cap used by run-time kernel dispatch.
#pragma once
#include <string>

namespace graphopt {

// What this CPU *and* this OS can execute (CPUID bits gated by XCR0 state and,
// for AMX, by the Linux arch_prctl tile-data permission).
struct CpuFeatures {
  bool sse42 = false, avx = false, fma = false, f16c = false, avx2 = false;
  bool avx512f = false, avx512dq = false, avx512bw = false, avx512vl = false;
  bool avx512_vnni = false, avx512_bf16 = false, avx512_fp16 = false;
  bool avx_vnni = false;
  bool amx_tile = false, amx_int8 = false, amx_bf16 = false;
  std::string vendor, brand;
};

// Detected once, cached; thread-safe (function-local static).
const CpuFeatures& cpu_features();

// ISA levels form a chain: each level implies the ones below it.
enum class Isa : int { scalar = 0, avx2 = 1, avx512 = 2, avx512_vnni = 3, avx512_bf16 = 4, amx = 5 };

const char* isa_name(Isa isa);
// Parse "scalar|avx2|avx512|avx512_vnni|avx512_bf16|amx"; returns false on unknown names.
bool parse_isa(const std::string& name, Isa* out);

// Highest level the hardware supports.
Isa isa_available();
// Highest level kernels may use: min(available, cap). The cap starts from the
// GRAPHOPT_ISA environment variable (if set) and can be changed with set_max_isa().
Isa isa_selected();
void set_max_isa(Isa cap);
// True when kernels may use `isa` (hardware has it and it is within the cap).
inline bool may_use(Isa isa) { return static_cast<int>(isa) <= static_cast<int>(isa_selected()); }

}  // namespace graphopt
