"""Offline weight quantization: per-channel/per-tensor int8, group-wise int4 (RTN, packed
for onnxruntime's MatMulNBits), and per-channel range search (MSE).

>>> w = np.array([[1.0, -0.5], [0.25, 2.0]], np.float32)
>>> q, qp = quantize_weight(w, QuantSpec(QType.S8, symmetric=True, per_channel=True, axis=1))
>>> q.tolist(), [round(float(s), 5) for s in qp.scale]
([[127, -32], [32, 127]], [0.00787, 0.01575])
"""

from __future__ import annotations

import numpy as np

from .specs import QParams, QType, QuantSpec, dequantize_array, qparams_from_range, quantize_array  # noqa: F401 (QType: doctest)

__all__ = ["quantize_weight", "quantize_int4_blocks", "pack_int4", "weight_error"]


def _reduce_axes(ndim: int, axis: int | None) -> tuple[int, ...]:
    return tuple(i for i in range(ndim) if axis is None or i != axis % ndim)


def quantize_weight(w: np.ndarray, spec: QuantSpec) -> tuple[np.ndarray, QParams]:
    """Quantize a float weight per ``spec`` (minmax, or per-channel MSE clipping search)."""
    axis = spec.axis if spec.per_channel else None
    red = _reduce_axes(w.ndim, axis)
    lo, hi = w.min(axis=red), w.max(axis=red)
    if spec.observer == "mse":
        lo, hi = _mse_search(w, lo, hi, spec, red)
    qp = qparams_from_range(lo, hi, spec.with_(axis=axis))
    return quantize_array(w, qp), qp


def _mse_search(w: np.ndarray, lo: np.ndarray, hi: np.ndarray, spec: QuantSpec,
                red: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    best_err = np.full(np.shape(lo), np.inf)
    best_lo, best_hi = np.array(lo, np.float64), np.array(hi, np.float64)
    for f in np.linspace(0.5, 1.0, 26):
        qp = qparams_from_range(lo * f, hi * f, spec)
        err = ((dequantize_array(quantize_array(w, qp), qp) - w) ** 2).sum(axis=red)
        better = err < best_err
        best_err = np.where(better, err, best_err)
        best_lo = np.where(better, lo * f, best_lo)
        best_hi = np.where(better, hi * f, best_hi)
    return best_lo, best_hi


def weight_error(w: np.ndarray, q: np.ndarray, qp: QParams) -> float:
    """Relative L2 error of the dequantized weight."""
    d = dequantize_array(q, qp)
    return float(np.linalg.norm(d - w) / max(np.linalg.norm(w), 1e-12))


def quantize_int4_blocks(w: np.ndarray, block: int = 32, *, dequantized: bool = True,
                         chunk_bytes: int = 16 * 2**20) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Symmetric RTN int4 of ``w[K, N]`` in blocks of ``block`` along K, packed as onnxruntime's
    ``MatMulNBits`` wants: ``B[N, K/block, block/2]`` (uint8, low nibble first, code = q + 8),
    ``scales[N * K/block]``. Also returns the dequantized weight (for error reports) unless
    ``dequantized=False``.

    Output channels are processed ``chunk_bytes`` of fp32 at a time, so the temporaries stay
    small whatever the weight's size (a memory-mapped ``w`` is read once, never copied whole).
    """
    k, n = w.shape
    kp = -(-k // block) * block
    nb = kp // block
    packed = np.empty((n, nb, block // 2), np.uint8)
    scales = np.empty((n, nb), np.float32)
    deq = np.empty((k, n), np.float32) if dequantized else None
    step = max(1, chunk_bytes // (4 * kp))
    for c0 in range(0, n, step):
        c1 = min(n, c0 + step)
        wt = np.empty((c1 - c0, kp), np.float32)
        wt[:, :k] = w[:, c0:c1].T
        wt[:, k:] = 0.0
        blocks = wt.reshape(c1 - c0, nb, block)
        # all 16 levels, as onnxruntime's quantizer and NNCF: the block's signed extreme maps to -8
        hi, lo = blocks.max(axis=2), blocks.min(axis=2)
        ext = np.where(-lo > hi, lo, hi)
        scale = np.where(ext != 0, ext / -8.0, 1.0).astype(np.float32)
        # in place on the chunk: q = clip(rint(w / scale), -8, 7), then the code q + 8
        np.divide(blocks, scale[..., None], out=blocks)
        np.rint(blocks, out=blocks)
        np.clip(blocks, -8, 7, out=blocks)
        if deq is not None:
            deq[:, c0:c1] = (blocks * scale[..., None]).reshape(c1 - c0, kp)[:, :k].T
        blocks += 8
        codes = blocks.astype(np.uint8)
        packed[c0:c1] = codes[..., 0::2] | (codes[..., 1::2] << 4)
        scales[c0:c1] = scale
    return packed, scales.reshape(-1), deq


def pack_int4(q: np.ndarray, scales: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Pack signed 4-bit codes ``q[K, N]`` and group scales ``[ceil(K/block), N]`` (e.g. from GPTQ)
    into MatMulNBits' ``B[N, K/block, block/2]`` and ``scales[N * K/block]``."""
    k, n = q.shape
    kp = -(-k // block) * block
    codes = np.full((n, kp), 8, np.uint8)  # padding rows: code 8 = 0.0
    codes[:, :k] = (q.astype(np.int16).T + 8).astype(np.uint8)
    codes = codes.reshape(n, kp // block, block)
    packed = (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)
    return packed, np.ascontiguousarray(scales.T).reshape(-1).astype(np.float32)
