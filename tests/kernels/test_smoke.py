"""Smoke test: the kernel extension loads and an int8 GEMM is exact."""
import numpy as np

from graphopt import _C


def test_gemm_s8_exact_smoke() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (5, 13), dtype=np.uint8)
    b = rng.integers(-128, 128, (13, 7), dtype=np.int8)
    w = _C.pack_s8(b, np.ones(1, np.float32), np.zeros(1, np.int32))
    got = _C.gemm_s8(a, w, out_dtype="s32")
    np.testing.assert_array_equal(got, a.astype(np.int32) @ b.astype(np.int32))
