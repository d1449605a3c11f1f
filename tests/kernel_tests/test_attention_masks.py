"""Attention with dtype-minimum masks (issue 12): transformers masks with torch.finfo.min (and sums
of two such values, which round to -inf). A query whose every key is masked that way is spread
evenly over the least-masked keys by onnxruntime and the reference; the AVX2/AVX-512 kernels once
scaled the mask by log2(e) first, overflowed to -inf and returned a zero row.
Also: every output element is written (the output starts as NaN) on masked, causal and unmasked inputs."""

from __future__ import annotations

import numpy as np
import pytest

from graphopt.runtime import kernels

FMIN = np.finfo(np.float32).min


def _ref(q, k, v, mask):
    s = np.einsum("bhqd,bhkd->bhqk", q.astype(np.float64), k.astype(np.float64)) / np.sqrt(q.shape[-1])
    with np.errstate(over="ignore", invalid="ignore"):
        s = (s + mask.astype(np.float64)).astype(np.float32).astype(np.float64)  # the float32 sum, as onnxruntime
    s = s - s.max(-1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(-1, keepdims=True)
    return np.einsum("bhqk,bhkd->bhqd", p, v.astype(np.float64))


def _qkv(B=2, H=2, S=19, D=16, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((B, H, S, D)).astype(np.float32) for _ in range(3)]


def _causal_padded(B, S, left_pad):
    """GPT-2 eager's mask: where(causal, 0, finfo.min) + (1 - attention_mask) * finfo.min."""
    causal = np.where(np.tril(np.ones((S, S), bool)), 0.0, FMIN).astype(np.float32)
    pad = np.zeros((B, 1, 1, S), np.float32)
    pad[1, ..., :left_pad] = FMIN
    with np.errstate(over="ignore"):
        return (causal[None, None] + pad).astype(np.float32)  # [B, 1, S, S]; finfo.min + finfo.min = -inf


@pytest.mark.parametrize("S", [19, 40])
def test_fully_masked_rows_with_finfo_min(f32_isa, S):
    q, k, v = _qkv(S=S)
    mask = _causal_padded(2, S, left_pad=5)  # queries 0..4 of batch row 1 see no unmasked key
    out = kernels.attention(q, k, v, mask)
    np.testing.assert_allclose(out, _ref(q, k, v, mask), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["none", "padding", "causal"])
def test_every_output_written(f32_isa, kind):
    q, k, v = _qkv(S=37, seed=1)
    mask = None
    if kind == "padding":
        mask = np.zeros((2, 1, 1, 37), np.float32)
        mask[1, ..., 30:] = -10000.0  # trailing keys skipped by the kernel
    elif kind == "causal":
        mask = np.where(np.tril(np.ones((37, 37), bool)), 0.0, -np.inf).astype(np.float32)[None, None]
    out = np.full(q.shape, np.nan, np.float32)
    kernels.attention(q, k, v, mask, out=out)
    assert not np.isnan(out).any()
    np.testing.assert_allclose(out, _ref(q, k, v, np.zeros((1, 1, 1, 37), np.float32) if mask is None else mask),
                               rtol=1e-4, atol=1e-4)
