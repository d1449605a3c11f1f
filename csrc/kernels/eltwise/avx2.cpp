// Element-wise kernels, avx2 build (see impl.h; flags set per file in CMakeLists.txt).
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "../common/math.h"
#include "../common/rowops.h"
#include "../common/thread_pool.h"
#include "../common/vmath_avx2.h"
#include "eltwise_internal.h"

namespace graphopt::kernels::avx2 {
#include "rows_generic.h"
#include "rows_avx2.h"
#include "impl.h"
}  // namespace graphopt::kernels::avx2
