"""GPTQ (Frantar et al., 2023): weight rounding with second-order error compensation.

For a linear layer ``y = x @ W`` (``W[K, N]``) and the input Gram matrix
``H = X^T X`` from calibration, rows of W (input channels) are quantized in
order; each row's rounding error is spread over the not-yet-quantized rows
through the upper Cholesky factor of ``H^-1``, so the layer *output* error,
not the weight error, is minimised. Scales are symmetric, per output column,
per group of ``group`` input rows (``group = K``: per channel).

>>> rng = np.random.default_rng(0)
>>> x = rng.standard_normal((256, 64)); w = rng.standard_normal((64, 8))
>>> q, s = gptq_quantize(w, x.T @ x, bits=4, group=32)
>>> deq = dequantize_groups(q, s, 32)
>>> rtn = dequantize_groups(*rtn_quantize(w, bits=4, group=32), 32)
>>> bool(np.linalg.norm(x @ (deq - w)) < np.linalg.norm(x @ (rtn - w)))
True
"""

from __future__ import annotations

import numpy as np

__all__ = ["gptq_quantize", "rtn_quantize", "dequantize_groups", "GramObserver"]


def _group_scale(rows: np.ndarray, qmax: int) -> np.ndarray:
    amax = np.abs(rows).max(axis=0)
    return np.where(amax > 0, amax / qmax, 1.0)


def rtn_quantize(w: np.ndarray, bits: int = 4, group: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Round-to-nearest with the same group layout (for comparison): codes [K, N], scales [K/group, N]."""
    qmax = 2 ** (bits - 1) - 1
    k = w.shape[0]
    scales = np.stack([_group_scale(w[i:i + group], qmax) for i in range(0, k, group)])
    q = np.clip(np.rint(w / np.repeat(scales, group, axis=0)[:k]), -qmax - 1, qmax)
    return q.astype(np.int8), scales.astype(np.float32)


def dequantize_groups(q: np.ndarray, scales: np.ndarray, group: int) -> np.ndarray:
    return (q.astype(np.float32) * np.repeat(scales, group, axis=0)[:q.shape[0]]).astype(np.float32)


def _upper_inv_factor(h: np.ndarray) -> np.ndarray:
    """U (float32, upper) with H^-1 = U^T U; the float64 temporaries are freed as soon as possible."""
    hinv = np.linalg.inv(h)
    low = np.linalg.cholesky(hinv)
    del hinv
    return np.ascontiguousarray(low.T, dtype=np.float32)


def gptq_quantize(w: np.ndarray, h: np.ndarray, *, bits: int = 4, group: int = 32, damp: float = 0.01,
                  block: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Codes ``q[K, N]`` (int8 holding ``bits``-bit values) and scales ``[ceil(K/group), N]``."""
    # Memory: one float64 K x K at a time besides the caller's Gram (H is inverted, factored and
    # dropped before the sweep, which runs on float32 copies), so a round's peak is about two Grams.
    w = np.array(w, np.float32)
    k, n = w.shape
    qmax = 2 ** (bits - 1) - 1
    h = np.array(h, np.float64)
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    w[dead] = 0.0
    h[np.diag_indices(k)] += damp * np.mean(np.diag(h))
    try:
        u = _upper_inv_factor(h)
    except np.linalg.LinAlgError:
        h[np.diag_indices(k)] += 0.1 * np.mean(np.diag(h))
        u = _upper_inv_factor(h)
    del h
    q = np.zeros((k, n), np.int8)
    scales = np.zeros((-(-k // group), n))
    for i1 in range(0, k, block):
        i2 = min(i1 + block, k)
        w1 = w[i1:i2].copy()
        err1 = np.zeros_like(w1)
        u1 = u[i1:i2, i1:i2]
        for i in range(i2 - i1):
            row = i1 + i
            if row % group == 0:  # scales from the current (already corrected) rows of this group
                g_end = min(row + group, k)
                cur = np.concatenate([w1[i:min(i + group, i2 - i1)], w[i2:g_end]]) if g_end > i2 else \
                    w1[i:i + (g_end - row)]
                scales[row // group] = _group_scale(cur, qmax)
            s = scales[row // group]
            qi = np.clip(np.rint(w1[i] / s), -qmax - 1, qmax)
            q[row] = qi
            e = (w1[i] - qi * s) / u1[i, i]
            w1[i:] -= np.outer(u1[i, i:], e)
            err1[i] = e
        w[i2:] -= u[i1:i2, i2:].T @ err1
    return q, scales.astype(np.float32)


class GramObserver:
    """Accumulates ``X^T X`` over the rows of ``x[..., K]`` (float64); merge is a sum."""

    kind = "gram"

    def __init__(self) -> None:
        self.gram: np.ndarray | None = None
        self.rows = 0

    def update(self, x: np.ndarray) -> None:
        x2 = np.asarray(x, np.float64).reshape(-1, np.shape(x)[-1])
        g = x2.T @ x2
        self.gram = g if self.gram is None else self.gram + g
        self.rows += x2.shape[0]

    def merge(self, other: GramObserver) -> GramObserver:
        out = GramObserver()
        grams = [g for g in (self.gram, other.gram) if g is not None]
        out.gram = sum(grams) if grams else None
        out.rows = self.rows + other.rows
        return out

    def to_dict(self) -> dict:
        return {"kind": self.kind, "rows": self.rows, "gram": None if self.gram is None else self.gram.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> GramObserver:
        o = cls()
        o.rows = int(d["rows"])
        o.gram = None if d["gram"] is None else np.asarray(d["gram"], np.float64)
        return o
