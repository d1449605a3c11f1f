// Element-wise kernels, avx512 build (see impl.h; flags set per file in CMakeLists.txt).
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "../common/math.h"
#include "../common/rowops.h"
#include "eltwise_internal.h"

namespace graphopt::kernels::avx512 {
#include "impl.h"
}  // namespace graphopt::kernels::avx512
