"""numpy references for the kernel tests (float64/int64 unless stated)."""

from __future__ import annotations

import math

import numpy as np

_erf = np.vectorize(math.erf, otypes=[np.float64])


def bf16_round(x: np.ndarray) -> np.ndarray:
    """float32 -> bf16 bits (uint16), round to nearest even (NaN kept quiet)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    return np.where(nan, ((u >> 16) | 0x40).astype(np.uint16), r)


def bf16_to_f32(h: np.ndarray) -> np.ndarray:
    return (h.astype(np.uint32) << 16).view(np.float32)


def gelu(x: np.ndarray, approximate: str = "none") -> np.ndarray:
    x = x.astype(np.float64)
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)))


def act(y: np.ndarray, name: str) -> np.ndarray:
    if name == "none":
        return y
    if name == "relu":
        return np.maximum(y, 0).astype(y.dtype)
    return gelu(y, "tanh" if name == "gelu_tanh" else "none").astype(y.dtype)


def requant(y: np.ndarray, scale: float, zp: int, dtype: str) -> np.ndarray:
    lo, hi = (0, 255) if dtype == "u8" else (-128, 127)
    q = np.round(y.astype(np.float32) / np.float32(scale)) + zp
    return np.clip(q, lo, hi).astype(np.uint8 if dtype == "u8" else np.int8)


def softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    e = np.exp(x - m)
    return e / e.sum(axis=-1, keepdims=True)


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None, scale: float) -> np.ndarray:
    s = np.einsum("bhqd,bhkd->bhqk", q.astype(np.float64), k.astype(np.float64)) * scale
    if mask is not None:
        s = s + (mask.reshape(mask.shape[0], 1, 1, -1) if mask.ndim == 2 else mask)
    return np.einsum("bhqk,bhkd->bhqd", softmax(s), v.astype(np.float64))
