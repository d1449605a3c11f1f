"""Bad inputs raise TypeError/ValueError naming the shapes; nothing crashes."""

from __future__ import annotations

import numpy as np
import pytest

from graphopt import _C
from graphopt.runtime import kernels as gk


@pytest.fixture
def w8() -> gk.PackedWeights:
    return gk.pack_int8(np.ones((8, 5), np.int8), 0.5)


def test_wrong_dtype_names_dtype_and_shape(w8: gk.PackedWeights) -> None:
    with pytest.raises(TypeError, match=r"A: expected a uint8 array, got float32 array of shape \(3, 8\)"):
        gk.gemm_int8(np.zeros((3, 8), np.float32), w8)
    with pytest.raises(TypeError, match="float32"):
        gk.gemm_f32(np.zeros((3, 8), np.float64), gk.pack_f32(np.zeros((8, 2), np.float32)))
    with pytest.raises(TypeError, match="int8"):
        gk.pack_int8(np.zeros((8, 2), np.uint8))


def test_non_contiguous_rejected(w8: gk.PackedWeights) -> None:
    a = np.zeros((8, 3), np.uint8).T
    with pytest.raises(ValueError, match=r"shape \(3, 8\) is not C-contiguous"):
        gk.gemm_int8(a, w8)


def test_shape_mismatch_names_both_shapes(w8: gk.PackedWeights) -> None:
    with pytest.raises(ValueError, match=r"A of shape \(3, 7\) does not match packed weights of shape \(K=8, N=5\)"):
        gk.gemm_int8(np.zeros((3, 7), np.uint8), w8)
    with pytest.raises(ValueError, match=r"bias of shape \(4,\) does not match N=5"):
        gk.gemm_int8(np.zeros((3, 8), np.uint8), w8, bias=np.zeros(4, np.float32))
    with pytest.raises(ValueError, match=r"gamma of shape \(3,\) does not match x of shape \(2, 4\)"):
        gk.layernorm(np.zeros((2, 4), np.float32), np.ones(3, np.float32))
    with pytest.raises(ValueError, match="residual of shape"):
        gk.layernorm(np.zeros((2, 4), np.float32), np.ones(4, np.float32), residual=np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match="mismatched attention shapes"):
        q = np.zeros((1, 2, 3, 4), np.float32)
        gk.attention(q, np.zeros((1, 2, 5, 3), np.float32), np.zeros((1, 2, 5, 3), np.float32))
    with pytest.raises(ValueError, match=r"mask of shape \(2, 3\)"):
        q = np.zeros((1, 2, 3, 4), np.float32)
        gk.attention(q, q, q, mask=np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"scale of shape \(3,\) does not match axis 1"):
        gk.quantize(np.zeros((2, 4), np.float32), np.ones(3, np.float32), np.zeros(3, np.int32), axis=1)
    with pytest.raises(ValueError, match=r"weight scale must have 1 or N=5"):
        gk.pack_int8(np.ones((8, 5), np.int8), np.ones(3, np.float32))


def test_bad_options() -> None:
    w = gk.pack_f32(np.zeros((4, 4), np.float32))
    a = np.zeros((1, 4), np.float32)
    with pytest.raises(ValueError, match="unknown activation 'tanh'"):
        gk.gemm_f32(a, w, activation="tanh")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="s32 is only available"):
        gk.gemm_f32(a, w, out_dtype="s32")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="out_scale must be finite and > 0"):
        gk.gemm_f32(a, w, out_dtype="u8", out_scale=0.0)
    with pytest.raises(ValueError, match="needs int8 packed weights"):
        gk.gemm_int8(np.zeros((1, 4), np.uint8), w)
    with pytest.raises(ValueError, match="activation zero point 300"):
        gk.gemm_int8(np.zeros((1, 4), np.uint8), gk.pack_int8(np.zeros((4, 4), np.int8)), a_zero_point=300)
    with pytest.raises(ValueError, match="scale.*must be > 0"):
        gk.quantize(np.zeros(3, np.float32), 0.0)
    with pytest.raises(ValueError, match="unknown ISA"):
        _C.set_max_isa("sse9")


def test_empty_and_scalar_inputs() -> None:
    w = gk.pack_f32(np.ones((3, 2), np.float32))
    assert gk.gemm_f32(np.zeros((0, 3), np.float32), w).shape == (0, 2)
    with pytest.raises(ValueError, match="at least 1 dimensions"):
        gk.gemm_f32(np.ones((), np.float32), w)
    with pytest.raises(ValueError, match="weights must be non-empty"):
        gk.pack_f32(np.zeros((0, 3), np.float32))


def test_int8_k_beyond_exact_int32_range_is_rejected() -> None:
    w = gk.pack_int8(np.ones((33026, 1), np.int8))
    with pytest.raises(ValueError, match="K=33026 > 33025 could overflow"):
        gk.gemm_int8(np.ones((1, 33026), np.uint8), w)
