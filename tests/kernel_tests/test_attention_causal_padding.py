"""Causal attention with a key-padding mask and a sliding window (issue 12, the decoders' masks):
``causal=1`` (+ ``window``) with a [B, 1, 1, Sk] padding mask and ``causal_fill`` = finfo.min gives
what the exporters' [B, 1, S, S] ``Where(causal ∧ padding [∧ window], 0, finfo.min)`` mask gives --
including left-padded queries whose every key is masked (they average V over all keys) -- on every
ISA path, fp32 and bf16 products; each query block stops at its diagonal (per-row key bounds)."""

from __future__ import annotations

import numpy as np
import pytest

from graphopt.ops.attention import sdpa_ref
from graphopt.runtime import kernels

FMIN = float(np.finfo(np.float32).min)


def _qkv(B=3, H=4, Hkv=2, S=45, D=16, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((B, H, S, D)).astype(np.float32)
    k, v = (rng.standard_normal((B, Hkv, S, D)).astype(np.float32) for _ in range(2))
    return q, k, v


def _attention_mask(B, S):
    """Row 0 full, row 1 right-padded (last 7 keys), row 2 left-padded (first 9 keys)."""
    am = np.ones((B, S), np.int64)
    am[1, S - 7:] = 0
    am[2, :9] = 0
    return am


def _exported_mask(am, window=0):
    """transformers' mask: Where(k <= q ∧ am[b, k] [∧ k > q - W], 0, finfo.min), [B, 1, S, S]."""
    S = am.shape[1]
    q, k = np.arange(S)[:, None], np.arange(S)[None, :]
    keep = (k <= q) & ((k > q - window) if window else True)
    keep = keep[None, None] & am.astype(bool)[:, None, None, :]
    return np.where(keep, 0.0, FMIN).astype(np.float32)


@pytest.mark.parametrize("window", [0, 5])
@pytest.mark.parametrize("S", [45, 70])
def test_causal_padding_matches_the_exported_mask(f32_isa, S, window):
    q, k, v = _qkv(S=S)
    am = _attention_mask(3, S)
    pad = np.where(am.astype(bool), 0.0, FMIN).astype(np.float32)[:, None, None, :]
    got = kernels.attention(q, k, v, pad, causal=True, window=window, causal_fill=FMIN)
    full = kernels.attention(q, k, v, _exported_mask(am, window))
    ref = sdpa_ref(q, k, v, causal=True, key_padding_mask=am, mask_filter_value=FMIN, window=window)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(full, ref, rtol=1e-4, atol=1e-4)
    # left-padded queries 0..8 of row 2 see no key: the mean of V over all keys, as the exported mask gives
    g = q.shape[1] // k.shape[1]
    np.testing.assert_allclose(got[2, :, :9], np.repeat(v[2], g, axis=0).mean(axis=1, keepdims=True)
                               .repeat(9, axis=1), rtol=1e-5, atol=1e-5)


def test_causal_padding_bf16(bf16_isa):
    q, k, v = _qkv(S=64, seed=1)
    am = _attention_mask(3, 64)
    pad = np.where(am.astype(bool), 0.0, FMIN).astype(np.float32)[:, None, None, :]
    got = kernels.attention(q, k, v, pad, causal=True, window=6, causal_fill=FMIN, bf16_compute=True)
    ref = sdpa_ref(q, k, v, causal=True, key_padding_mask=am, mask_filter_value=FMIN, window=6)
    cos = float((got * ref).sum() / np.linalg.norm(got) / np.linalg.norm(ref))
    assert cos > 0.999, cos


def test_default_fill_is_minus_inf(f32_isa):
    """Without a fill, causal keys are -inf: a query with no unmasked key gets a zero row."""
    q, k, v = _qkv(B=1, S=20)
    pad = np.zeros((1, 1, 1, 20), np.float32)
    pad[..., :4] = -np.inf
    out = kernels.attention(q, k, v, pad, causal=True)
    assert np.all(out[0, :, :4] == 0) and np.all(np.isfinite(out))


def test_window_needs_causal():
    q, k, v = _qkv(B=1, S=8)
    with pytest.raises(Exception, match="window"):
        kernels.attention(q, k, v, causal=False, window=3)
