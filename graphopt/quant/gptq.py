"""GPTQ (Frantar et al., 2023): weight rounding with second-order error compensation.

For a linear layer ``y = x @ W`` (``W[K, N]``) and the input Gram matrix
``H = X^T X`` from calibration, rows of W (input channels) are quantized in
order; each row's rounding error is spread over the not-yet-quantized rows
through the upper Cholesky factor of ``H^-1``, so the layer *output* error,
not the weight error, is minimised. Scales are symmetric, per output column,
per group of ``group`` input rows (``group = K``: per channel).

Memory (issue 16): the Gram is accumulated in float32 a band at a time, factored in place
(:func:`gptq_factor`, shared by the layers that read the same input) and the weight is swept a
column slice at a time, so a layer costs one float32 K x K matrix beyond its weight.

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

__all__ = ["gptq_quantize", "gptq_factor", "GptqFactor", "rtn_quantize", "dequantize_groups", "GramObserver"]


def _group_scale(rows: np.ndarray, qmax: int) -> np.ndarray:
    """Per-column scale of a group. int4 uses all 16 levels as onnxruntime's MatMulNBits quantizer and
    NNCF do: the signed extreme maps to -8 (a negative scale when it is positive); int8 keeps
    max|w| / 127 (positive scales for the int8 kernels)."""
    if qmax != 7:
        amax = np.abs(rows).max(axis=0)
        return np.where(amax > 0, amax / qmax, 1.0)
    hi, lo = rows.max(axis=0), rows.min(axis=0)
    ext = np.where(-lo > hi, lo, hi)
    return np.where(ext != 0, ext / -8.0, 1.0)


def rtn_quantize(w: np.ndarray, bits: int = 4, group: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Round-to-nearest with the same group layout (for comparison): codes [K, N], scales [K/group, N]."""
    qmax = 2 ** (bits - 1) - 1
    k = w.shape[0]
    scales = np.stack([_group_scale(w[i:i + group], qmax) for i in range(0, k, group)])
    q = np.clip(np.rint(w / np.repeat(scales, group, axis=0)[:k]), -qmax - 1, qmax)
    return q.astype(np.int8), scales.astype(np.float32)


def dequantize_groups(q: np.ndarray, scales: np.ndarray, group: int) -> np.ndarray:
    return (q.astype(np.float32) * np.repeat(scales, group, axis=0)[:q.shape[0]]).astype(np.float32)


class GptqFactor:
    """What GPTQ needs of a layer input's Gram matrix: the upper Cholesky factor ``U`` of the damped
    ``H^-1`` (``H^-1 = U^T U``; only its upper triangle is meaningful) and the dead input channels
    (zero diagonal). Layers that read the same input (q/k/v, gate/up) share one factor."""

    __slots__ = ("u", "dead")

    def __init__(self, u: np.ndarray, dead: np.ndarray) -> None:
        self.u, self.dead = u, dead


def _lapack():
    try:
        from scipy.linalg import lapack
    except ImportError:  # scipy is optional: numpy's routines copy, so the factor costs more memory
        return None
    return lapack


def gptq_factor(h: np.ndarray, damp: float = 0.01, *, overwrite: bool = False) -> GptqFactor:
    """Damp ``h`` and factor its inverse. With scipy, in float32 and in place (Cholesky, inverse from
    the factor, Cholesky again: LAPACK potrf/potri/potrf on one K x K buffer, as GPTQ's reference does
    in float32); ``overwrite=True`` lets that buffer be ``h`` itself (a float32 Gram the caller is done
    with), so a layer's working set is one float32 Gram. Without scipy, float64 numpy with copies."""
    k = h.shape[0]
    diag = np.diagonal(h).astype(np.float64)
    dead = diag == 0
    lap = _lapack()
    if lap is None:
        h64 = np.array(h, np.float64)
        h64[dead, dead] = 1.0
        h64[np.diag_indices(k)] += damp * np.mean(np.diag(h64))
        try:
            return GptqFactor(_upper_inv_factor_numpy(h64), dead)
        except np.linalg.LinAlgError:
            h64[np.diag_indices(k)] += 0.1 * np.mean(np.diag(h64))
            return GptqFactor(_upper_inv_factor_numpy(h64), dead)
    # a symmetric C-ordered matrix is its own transpose: its .T is the Fortran-ordered buffer LAPACK
    # works on in place (upper triangle only: the strict lower one keeps H)
    own = overwrite and h.dtype == np.float32 and h.flags.c_contiguous and h.flags.writeable
    a = h.T if own else np.array(h, np.float32, order="F")
    diag[dead] = 1.0
    d = np.einsum("ii->i", a)  # a writable view of the diagonal
    d[:] = diag + damp * np.mean(diag)
    c, info = lap.spotrf(a, lower=0, clean=0, overwrite_a=1)
    if info == 0:
        c, info = lap.spotri(c, lower=0, overwrite_c=1)
    if info == 0:
        c, info = lap.spotrf(c, lower=0, clean=0, overwrite_a=1)
    if info == 0:
        return GptqFactor(c, dead)
    # not positive definite in float32 (rare): rebuild H from the untouched strict lower triangle and
    # the saved diagonal, and take the float64 path with more damping
    low = np.tril(a, -1).astype(np.float64)
    del a, c, d
    h64 = low + low.T
    del low
    h64[np.diag_indices(k)] = diag + (damp + 0.1) * np.mean(diag)
    return GptqFactor(_upper_inv_factor_numpy(h64), dead)


def _upper_inv_factor_numpy(h: np.ndarray) -> np.ndarray:
    """U (float32, upper) with H^-1 = U^T U; the float64 temporaries are freed as soon as possible."""
    hinv = np.linalg.inv(h)
    low = np.linalg.cholesky(hinv)
    del hinv
    return np.ascontiguousarray(low.T, dtype=np.float32)


def gptq_quantize(w: np.ndarray, h: np.ndarray | GptqFactor, *, bits: int = 4, group: int = 32, damp: float = 0.01,
                  block: int = 128, chunk_bytes: int = 4 * 2**20) -> tuple[np.ndarray, np.ndarray]:
    """Codes ``q[K, N]`` (int8 holding ``bits``-bit values) and scales ``[ceil(K/group), N]``.

    ``h`` is the Gram matrix or its :func:`gptq_factor`. Output columns are independent in GPTQ
    (each one's error is spread over its own later rows), so they are swept ``chunk_bytes`` of
    float32 at a time: the working copy of the weight is a slice, never the whole (possibly
    memory-mapped) weight.
    """
    f = h if isinstance(h, GptqFactor) else gptq_factor(h, damp)
    u, dead = f.u, f.dead
    k, n = w.shape
    if u.shape != (k, k):
        raise ValueError(f"GPTQ: a Gram matrix of {u.shape} for a weight of {w.shape}")
    qmax = 2 ** (bits - 1) - 1
    q = np.empty((k, n), np.int8)
    scales = np.empty((-(-k // group), n), np.float32)
    step = max(1, chunk_bytes // (4 * k))
    blocks = [(i1, min(i1 + block, k)) for i1 in range(0, k, block)]
    diag_blocks = [np.ascontiguousarray(u[i1:i2, i1:i2]) for i1, i2 in blocks]
    for c0 in range(0, n, step):
        c1 = min(n, c0 + step)
        wc = np.array(w[:, c0:c1], np.float32)
        wc[dead] = 0.0
        _sweep(wc, u, blocks, diag_blocks, q[:, c0:c1], scales[:, c0:c1], group, qmax)
    return q, scales


def _sweep(w: np.ndarray, u: np.ndarray, blocks: list[tuple[int, int]], diag_blocks: list[np.ndarray],
           q: np.ndarray, scales: np.ndarray, group: int, qmax: int) -> None:
    """GPTQ's blocked sweep over the rows of ``w[K, cols]`` (modified in place), writing ``q``/``scales``."""
    k = w.shape[0]
    for (i1, i2), u1 in zip(blocks, diag_blocks):
        w1 = w[i1:i2].copy()
        err1 = np.zeros_like(w1)
        for i in range(i2 - i1):
            row = i1 + i
            if row % group == 0:  # scales from the current (already corrected) rows of this group
                g_end = min(row + group, k)
                cur = np.concatenate([w1[i:], w[i2:g_end]]) if g_end > i2 else w1[i:i + (g_end - row)]
                scales[row // group] = _group_scale(cur, qmax)
            s = scales[row // group]
            qi = np.clip(np.rint(w1[i] / s), -qmax - 1, qmax)
            q[row] = qi
            e = (w1[i] - qi * s) / u1[i, i]
            w1[i:] -= np.outer(u1[i, i:], e)
            err1[i] = e
        if i2 < k:
            w[i2:] -= u[i1:i2, i2:].T @ err1


class GramObserver:
    """Accumulates ``X^T X`` over the rows of ``x[..., K]``; merge is a sum.

    float64 by default (pruning's least-squares refits); GPTQ observes in float32 (its reference
    does: half the memory of a K x K Gram per layer). The sum is accumulated in place a band of
    rows at a time, so an update's temporary is a band, not a second K x K matrix.
    """

    kind = "gram"
    _BAND_BYTES = 4 * 2**20

    def __init__(self, dtype: type | np.dtype = np.float64) -> None:
        self.dtype = np.dtype(dtype)
        self.gram: np.ndarray | None = None
        self.rows = 0

    def update(self, x: np.ndarray) -> None:
        x2 = np.asarray(x, self.dtype).reshape(-1, np.shape(x)[-1])
        k = x2.shape[1]
        if self.gram is None:
            self.gram = np.zeros((k, k), self.dtype)
        band = max(1, self._BAND_BYTES // (self.dtype.itemsize * k))
        for r0 in range(0, k, band):
            self.gram[r0:r0 + band] += x2[:, r0:r0 + band].T @ x2
        self.rows += x2.shape[0]

    def merge(self, other: GramObserver) -> GramObserver:
        out = GramObserver(self.dtype)
        grams = [g for g in (self.gram, other.gram) if g is not None]
        out.gram = (grams[0] + grams[1] if len(grams) == 2 else grams[0].copy()) if grams else None
        out.rows = self.rows + other.rows
        return out

    def to_dict(self) -> dict:
        return {"kind": self.kind, "rows": self.rows, "dtype": self.dtype.name,
                "gram": None if self.gram is None else self.gram.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> GramObserver:
        o = cls(np.dtype(d.get("dtype", "float64")))
        o.rows = int(d["rows"])
        o.gram = None if d["gram"] is None else np.asarray(d["gram"], o.dtype)
        return o
