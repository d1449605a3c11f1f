"""Attention kernel: causal, grouped K/V heads (GQA, no repeated copy) and a per-head additive bias
(T5), against the float64 numpy reference of graphopt::Attention, on every ISA path this CPU has
(the fixtures pin the kernel to each level; levels above the CPU's are not collected)."""

from __future__ import annotations

import numpy as np
import pytest

from graphopt.ops.attention import sdpa_ref
from graphopt.runtime import kernels

SHAPES = [  # B, H, Hkv, Sq, Sk, D
    (2, 4, 2, 16, 16, 16),
    (1, 8, 2, 37, 37, 64),
    (2, 4, 4, 5, 9, 20),
    (1, 4, 1, 33, 40, 32),
]


def _inputs(B, H, Hkv, Sq, Sk, D, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((B, H, Sq, D), dtype=np.float32)
    k = rng.standard_normal((B, Hkv, Sk, D), dtype=np.float32)
    v = rng.standard_normal((B, Hkv, Sk, D), dtype=np.float32)
    return q, k, v


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("mask", ["none", "head_bias", "padding"])
def test_causal_gqa_bias_fp32(f32_isa, shape, causal, mask):
    B, H, Hkv, Sq, Sk, D = shape
    q, k, v = _inputs(*shape)
    rng = np.random.default_rng(1)
    m = None
    if mask == "head_bias":
        m = rng.standard_normal((1, H, Sq, Sk)).astype(np.float32)
    elif mask == "padding":
        m = np.zeros((B, 1, 1, Sk), np.float32)
        m[-1, ..., Sk - 3:] = -10000.0
    y = kernels.attention(q, k, v, m, causal=causal)
    np.testing.assert_allclose(y, sdpa_ref(q, k, v, causal=causal, bias=m), rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("shape", SHAPES[:2], ids=lambda s: "x".join(map(str, s)))
def test_causal_gqa_bias_bf16_products(bf16_isa, shape):
    B, H, Hkv, Sq, Sk, D = shape
    q, k, v = _inputs(*shape, seed=2)
    bias = np.random.default_rng(3).standard_normal((B, H, Sq, Sk)).astype(np.float32)
    y = kernels.attention(q, k, v, bias, causal=True, bf16_compute=True)
    r = sdpa_ref(q, k, v, causal=True, bias=bias)
    cos = float((y.ravel().astype(np.float64) @ r.ravel()) / (np.linalg.norm(y) * np.linalg.norm(r)))
    assert cos > 0.999 and np.abs(y - r).max() < 0.1


def test_gqa_reads_kv_in_place(f32_isa):
    """K/V given as strided views of a [B, S, Hkv, D] activation: no copy, same numbers."""
    B, H, Hkv, S, D = 1, 6, 3, 21, 16
    rng = np.random.default_rng(4)
    q = rng.standard_normal((B, H, S, D), dtype=np.float32)
    kb = rng.standard_normal((B, S, Hkv, D), dtype=np.float32)
    vb = rng.standard_normal((B, S, Hkv, D), dtype=np.float32)
    k, v = kb.transpose(0, 2, 1, 3), vb.transpose(0, 2, 1, 3)
    y = kernels.attention(q, k, v, causal=True)
    np.testing.assert_allclose(y, sdpa_ref(q, np.ascontiguousarray(k), np.ascontiguousarray(v), causal=True),
                               rtol=1e-5, atol=2e-6)


def test_bad_group_and_mask_shapes():
    q, k, v = _inputs(1, 4, 3, 8, 8, 16)
    with pytest.raises(ValueError, match="k/v heads must divide q heads"):
        kernels.attention(q, k, v)
    q, k, v = _inputs(1, 4, 2, 8, 8, 16)
    with pytest.raises(ValueError, match=r"\[B\|1, H\|1, Sq\|1, Sk\]"):
        kernels.attention(q, k, v, np.zeros((1, 3, 8, 8), np.float32))
