// Fused attention, ref build (see impl.h; flags set per file in CMakeLists.txt).
#include <cmath>
#include <cstdint>

#include "task.h"

namespace graphopt::kernels::ref {
#include "impl.h"
}  // namespace graphopt::kernels::ref
