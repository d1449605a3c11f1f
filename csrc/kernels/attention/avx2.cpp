// Fused attention, avx2 build (see impl.h; flags set per file in CMakeLists.txt).
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <new>
#include <type_traits>

#include "../common/math.h"
#include "../common/rowops.h"
#include "attention_internal.h"

namespace graphopt::kernels::avx2 {
#include "impl.h"
}  // namespace graphopt::kernels::avx2
