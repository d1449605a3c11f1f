#!/usr/bin/env bash
# Run the kernel tests once against an AddressSanitizer build of graphopt._C,
# without touching the editable install other sessions use:
#   1. configure + build csrc/ with -DGRAPHOPT_ASAN=ON into $BUILD,
#   2. copy the Python package + tests/kernel_tests into $ROOT with the ASan module,
#   3. hide the editable-install finder and run pytest with libasan (and
#      libstdc++, so ASan can intercept __cxa_throw) preloaded.
# Usage: tests/kernel_tests/run_asan.sh [extra pytest args]
set -euo pipefail
SRC="$(cd "$(dirname "$0")/../.." && pwd)"
BUILD="${BUILD:-/tmp/graphopt_asan_build}"
ROOT="${ROOT:-/tmp/graphopt_asan_root}"
cmake -S "$SRC" -B "$BUILD" -DGRAPHOPT_ASAN=ON -DCMAKE_BUILD_TYPE=Release \
  -DSKBUILD_PROJECT_NAME=graphopt -DSKBUILD_PROJECT_VERSION=0.1.0 \
  -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" >/dev/null
cmake --build "$BUILD" -j"$(nproc)" >/dev/null
rm -rf "$ROOT" && mkdir -p "$ROOT/tests"
cp -r "$SRC/graphopt" "$ROOT/" && find "$ROOT/graphopt" -name '*.so' -delete
cp "$BUILD"/_C*.so "$ROOT/graphopt/"
cp -r "$SRC/tests/kernel_tests" "$ROOT/tests/" && rm -rf "$ROOT/tests/kernel_tests/__pycache__"
cat > "$ROOT/conftest.py" <<PY
import sys
sys.meta_path[:] = [f for f in sys.meta_path if "ScikitBuild" not in type(f).__name__]
sys.path.insert(0, "$ROOT")
import graphopt._C
assert graphopt._C.__file__.startswith("$ROOT"), graphopt._C.__file__
PY
printf '[pytest]\naddopts = -p no:cacheprovider\n' > "$ROOT/pytest.ini"
cd "$ROOT"
LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)" \
ASAN_OPTIONS=detect_leaks=0:halt_on_error=1 python -m pytest tests/kernel_tests -q -p no:warnings "$@"
