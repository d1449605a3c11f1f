"""Run-time ISA dispatch: the cap (GRAPHOPT_ISA / set_max_isa) picks each kernel's path."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from graphopt import _C
from graphopt.runtime import kernels as gk

from .conftest import LEVELS, pinned, supported

# Expected GEMM level under each cap: (int8, bf16, fp32).
EXPECTED = {
    "scalar": ("scalar", "scalar", "scalar"),
    "avx2": ("avx2", "avx2", "avx2"),
    "avx512": ("avx2", "avx512", "avx512"),
    "avx512_vnni": ("avx512_vnni", "avx512", "avx512"),
    "avx512_bf16": ("avx512_vnni", "avx512_bf16", "avx512"),
    "amx": ("amx", "amx", "avx512"),  # bf16 on AMX tiles (AVX512-BF16 below 16 rows)
}


@pytest.mark.parametrize("level", supported(LEVELS))
def test_cap_selects_expected_paths(level: str) -> None:
    it = pinned(level)
    next(it)
    try:
        assert _C.isa_selected() == level
        w8 = gk.pack_int8(np.ones((8, 8), np.int8))
        wb = gk.pack_bf16(np.ones((8, 8), np.float32))
        wf = gk.pack_f32(np.ones((8, 8), np.float32))
        assert (w8.isa, wb.isa, wf.isa) == EXPECTED[level]
    finally:
        it.close()


@pytest.mark.parametrize("level", supported(["scalar", "avx2"]))
def test_environment_variable_forces_a_path(level: str) -> None:
    code = ("import numpy as np; from graphopt import _C; from graphopt.runtime import kernels as gk; "
            "w = gk.pack_int8(np.ones((4, 4), np.int8)); print(_C.isa_selected(), w.isa)")
    env = dict(os.environ, GRAPHOPT_ISA=level)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [level, EXPECTED[level][0]]


def test_peak_loops_report_positive_rates() -> None:
    avail = _C.isa_available()
    if LEVELS.index(avail) >= LEVELS.index("avx512_vnni"):
        assert gk.peak_gops("int8_vnni", 0.01) > 0
    if LEVELS.index(avail) >= LEVELS.index("avx2"):
        assert gk.peak_gops("fp32_avx2", 0.01) > 0
    assert gk.peak_gops("nonsense", 0.01) == 0  # type: ignore[arg-type]
