// Fused attention, avx2 build (see impl.h; flags set per file in CMakeLists.txt).
#include <cmath>
#include <cstdint>

#include "task.h"

namespace graphopt::kernels::avx2 {
#include "impl.h"
}  // namespace graphopt::kernels::avx2
