// Element-wise kernels, ref build (see impl.h; flags set per file in CMakeLists.txt).
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "../common/math.h"
#include "../common/rowops.h"
#include "../common/thread_pool.h"
#include "eltwise_internal.h"

namespace graphopt::kernels::ref {
#include "rows_generic.h"
using namespace generic;  // NOLINT: the scalar reference uses every generic row kernel
#include "impl.h"
}  // namespace graphopt::kernels::ref
