"""Thin, typed Python wrappers around the native kernels in :mod:`graphopt._C`.

The wrappers only normalise scalar-or-array quantization parameters and
defaults; array arguments go to C++ as they are. The bindings check dtype
(``TypeError``), C-contiguity and shapes (``ValueError``, naming the shapes),
release the GIL and run the kernel for the ISA selected at run time (see
:func:`graphopt.cpu_info` and ``GRAPHOPT_ISA``).

bf16 tensors are carried as ``uint16`` arrays holding the raw bf16 bits; use
:func:`to_bf16` / :func:`from_bf16` to convert.

Example::

    >>> import numpy as np
    >>> from graphopt.runtime import kernels as K
    >>> w = K.pack_int8(np.ones((4, 3), np.int8), scale=0.5)
    >>> K.gemm_int8(np.full((2, 4), 2, np.uint8), w, a_scale=1.0).tolist()
    [[4.0, 4.0, 4.0], [4.0, 4.0, 4.0]]
"""

from __future__ import annotations

from typing import Literal, Union

import numpy as np
import numpy.typing as npt

from .._native import native

__all__ = [
    "PackedWeights",
    "Activation",
    "pack_int8",
    "pack_int8_sparse",
    "pack_bf16",
    "pack_f32",
    "gemm_int8",
    "gemm_bf16",
    "gemm_f32",
    "quantize",
    "dequantize",
    "requantize",
    "layernorm",
    "layernorm_quantize",
    "softmax",
    "gelu",
    "erf",
    "tanh",
    "minmax",
    "quantize_dynamic",
    "quantize_rows_dynamic",
    "layernorm_quantize_dynamic",
    "attention",
    "to_bf16",
    "from_bf16",
    "peak_gops",
]

_C = native()
PackedWeights = _C.PackedWeights

Activation = Literal["none", "relu", "gelu", "gelu_tanh"]
ScaleLike = Union[float, npt.ArrayLike]
ZeroPointLike = Union[int, npt.ArrayLike]


def _scales(scale: ScaleLike) -> np.ndarray:
    return np.ascontiguousarray(np.atleast_1d(np.asarray(scale, dtype=np.float32)).reshape(-1))


def _zero_points(zp: ZeroPointLike) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(zp)).reshape(-1)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"zero_point must be integer, got {arr.dtype}")
    return np.ascontiguousarray(arr.astype(np.int32))


def pack_int8(w: np.ndarray, scale: ScaleLike = 1.0, zero_point: ZeroPointLike = 0, *,
              transposed: bool = False) -> PackedWeights:
    """Pack int8 weights ``w`` ([K, N], or [N, K] with ``transposed=True``) once.

    ``scale``/``zero_point`` are per-tensor (scalar) or per output channel (length N);
    real weight = (w - zero_point) * scale. The packed layout matches the ISA selected now.
    """
    return _C.pack_s8(w, _scales(scale), _zero_points(zero_point), transposed)


def pack_int8_sparse(w: np.ndarray, scale: ScaleLike = 1.0, zero_point: ZeroPointLike = 0, *,
                     transposed: bool = False) -> PackedWeights:
    """Pack int8 weights as 4x1 blocks (4 consecutive k of one column; only blocks holding a
    nonzero are stored) for the sparse kernel: :func:`gemm_int8` on them is bit-identical to the
    dense packing and skips every all-zero block (AVX-512 VNNI, else scalar)."""
    return _C.pack_s8(w, _scales(scale), _zero_points(zero_point), transposed, "sparse_4x1")


def pack_bf16(w: np.ndarray, *, transposed: bool = False) -> PackedWeights:
    """Pack weights for :func:`gemm_bf16`; ``w`` is float32 (rounded to bf16) or uint16 bf16 bits."""
    return _C.pack_bf16(w, transposed)


def pack_f32(w: np.ndarray, *, transposed: bool = False) -> PackedWeights:
    """Pack float32 weights for :func:`gemm_f32`."""
    return _C.pack_f32(w, transposed)


def gemm_int8(a: np.ndarray, w: PackedWeights, *, a_scale: float = 1.0, a_zero_point: int = 0,
              bias: np.ndarray | None = None, activation: Activation = "none",
              out_dtype: Literal["s32", "f32", "bf16", "u8", "s8"] = "f32",
              out_scale: float = 1.0, out_zero_point: int = 0, a_row_scale: np.ndarray | None = None,
              a_row_zero_point: np.ndarray | None = None, out_mul: np.ndarray | None = None) -> np.ndarray:
    """u8 activations ``a`` [..., K] x packed s8 weights -> [..., N] with a fused epilogue.

    ``v = sum_k (a - a_zero_point) * (w - w_zero_point)`` exactly in int32 (``out_dtype="s32"``
    returns it); otherwise ``y = act(v * a_scale * w_scale[n] + bias[n])`` as f32, bf16 (uint16
    bits) or requantized ``saturate(round_half_even(y / out_scale) + out_zero_point)``.
    ``a_row_scale`` / ``a_row_zero_point`` (one per row of ``a``, given together) replace
    ``a_scale`` / ``a_zero_point`` row by row: activations quantized dynamically per row.
    ``out_mul`` (float32 [N]) multiplies ``y`` per column before it is stored or requantized: a
    following ``Mul`` by a per-channel constant (SmoothQuant's 1/s) folded into the epilogue.
    """
    return _C.gemm_s8(a, w, float(a_scale), int(a_zero_point), bias, activation, out_dtype,
                      float(out_scale), int(out_zero_point), a_row_scale, a_row_zero_point, out_mul)


def gemm_bf16(a: np.ndarray, w: PackedWeights, *, bias: np.ndarray | None = None,
              activation: Activation = "none", out_dtype: Literal["f32", "bf16", "u8", "s8"] = "f32",
              out_scale: float = 1.0, out_zero_point: int = 0, out_mul: np.ndarray | None = None) -> np.ndarray:
    """bf16 GEMM (fp32 accumulation): ``a`` is uint16 bf16 bits [..., K]; ``y = act(a @ w + bias) * out_mul``."""
    return _C.gemm_bf16(a, w, bias, activation, out_dtype, float(out_scale), int(out_zero_point), out_mul)


def gemm_f32(a: np.ndarray, w: PackedWeights, *, bias: np.ndarray | None = None,
             activation: Activation = "none", out_dtype: Literal["f32", "bf16", "u8", "s8"] = "f32",
             out_scale: float = 1.0, out_zero_point: int = 0, out_mul: np.ndarray | None = None) -> np.ndarray:
    """fp32 GEMM: ``y = act(a @ w + bias) * out_mul`` for float32 ``a`` [..., K]."""
    return _C.gemm_f32(a, w, bias, activation, out_dtype, float(out_scale), int(out_zero_point), out_mul)


def quantize(x: np.ndarray, scale: ScaleLike, zero_point: ZeroPointLike = 0,
             dtype: Literal["u8", "s8"] = "u8", axis: int | None = None) -> np.ndarray:
    """``saturate(round_half_even(x / scale) + zero_point)``; per-channel along ``axis``."""
    return _C.quantize(x, _scales(scale), _zero_points(zero_point), dtype, axis)


def requantize(x: np.ndarray, scale: ScaleLike, zero_point: ZeroPointLike = 0,
               dtype: Literal["u8", "s8"] = "u8", axis: int | None = None) -> np.ndarray:
    """int32 ``x`` -> ``saturate(round_half_even(x * scale) + zero_point)`` (scale = combined multiplier)."""
    return _C.requantize(x, _scales(scale), _zero_points(zero_point), dtype, axis)


def dequantize(q: np.ndarray, scale: ScaleLike, zero_point: ZeroPointLike = 0,
               axis: int | None = None) -> np.ndarray:
    """``(q - zero_point) * scale`` for uint8/int8 ``q``; per-channel along ``axis``."""
    return _C.dequantize(q, _scales(scale), _zero_points(zero_point), axis)


def layernorm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray | None = None, eps: float = 1e-5,
              residual: np.ndarray | None = None,
              return_sum: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """LayerNorm over the last axis of ``x (+ residual)``; ``return_sum`` also returns ``x + residual``."""
    return _C.layernorm(x, gamma, beta, float(eps), residual, bool(return_sum))


def layernorm_quantize(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray | None = None, eps: float = 1e-5,
                       residual: np.ndarray | None = None, return_sum: bool = False, *, scale: float,
                       zero_point: int) -> tuple[np.ndarray, ...]:
    """:func:`layernorm` that also returns its u8 copy ``quantize(y, scale, zero_point)`` from the same pass.

    Returns ``(y, q)``, or ``(y, q, x + residual)`` with ``return_sum``; ``q`` is bit-identical to
    ``quantize(y, scale, zero_point, "u8")``.
    """
    return _C.layernorm_quantize(x, gamma, beta, float(eps), residual, bool(return_sum), float(scale),
                                 int(zero_point))


def minmax(x: np.ndarray) -> tuple[float, float]:
    """``(min(0, x.min()), max(0, x.max()))``: the range dynamic quantization covers."""
    return _C.minmax(x)


def quantize_dynamic(x: np.ndarray) -> tuple[np.ndarray, float, int]:
    """Per-tensor u8 quantization with the range of ``x``: returns ``(q, scale, zero_point)``.

    ``scale = (hi - lo) / 255`` (1.0 for an all-zero ``x``) and
    ``zero_point = clip(round(-lo / scale), 0, 255)`` with ``lo, hi = minmax(x)``.
    """
    q, scale, zp, _, _ = _C.quantize_dynamic_u8(x)
    return q, scale, zp


def quantize_rows_dynamic(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each last-axis row of ``x`` on its own u8 grid: ``(q, scale [rows], zero_point [rows])``.

    A row's ``scale`` and ``zero_point`` are :func:`quantize_dynamic`'s of that row, and
    ``q = clip(rint(x * (1 / scale)) + zero_point, 0, 255)`` (the product with the reciprocal, not
    a division: the grid is the runtime's choice, and the row costs one read). A row holding a NaN
    or an infinity gets ``scale`` NaN.
    """
    return _C.quantize_rows_dynamic_u8(np.ascontiguousarray(x, np.float32))


def layernorm_quantize_dynamic(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray | None = None, eps: float = 1e-5,
                               residual: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """:func:`layernorm` that also quantizes each output row on its own grid in the same pass:
    ``(y, q, scale, zero_point)``, bit-identical to ``(y, *quantize_rows_dynamic(y))``."""
    return _C.layernorm_quantize_dynamic(x, gamma, beta, float(eps), residual)


def softmax(x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Softmax over the last axis of ``x + mask`` (mask broadcasts as numpy does).

    Masks of the form ``[d0..dt, 1, ..., 1, N]`` (e.g. a [B,1,1,S] attention mask) are
    read in place; any other broadcastable mask is expanded to ``x.shape`` first.
    """
    if mask is not None and isinstance(mask, np.ndarray) and mask.dtype == np.float32:
        shape = (1,) * (x.ndim - mask.ndim) + mask.shape
        t = 0
        while t < x.ndim - 1 and shape[t] == x.shape[t]:
            t += 1
        if any(d != 1 for d in shape[t:-1]) and np.broadcast_shapes(shape, x.shape) == x.shape:
            mask = np.ascontiguousarray(np.broadcast_to(mask, x.shape))
    return _C.softmax(x, mask)


def gelu(x: np.ndarray, approximate: Literal["none", "tanh"] = "none") -> np.ndarray:
    """GELU: exact (erf) or the tanh approximation."""
    return _C.gelu(x, approximate)


def erf(x: np.ndarray) -> np.ndarray:
    """erf in float32 (max abs error 6.4e-8 over all floats, about 1 ulp of 1)."""
    return _C.erf(x)


def tanh(x: np.ndarray) -> np.ndarray:
    """tanh in float32 (max abs error 5.6e-8 over all floats)."""
    return _C.tanh(x)


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None = None,
              scale: float | None = None, *, q_scale: float = 1.0, k_scale: float = 1.0,
              v_scale: float = 1.0, out_dtype: Literal["f32", "bf16"] = "f32",
              bf16_compute: bool = False, out: np.ndarray | None = None, causal: bool = False,
              window: int = 0, causal_fill: float = float("-inf")) -> np.ndarray:
    """Fused ``softmax(q @ k^T * scale + mask) @ v`` over [B, H, S, D] views.

    Inputs are float32, uint16 (bf16 bits) or int8 (real = int8 * q/k/v_scale). Any view whose
    last axis is contiguous is read in place, e.g. ``x.transpose(0, 2, 1, 3)`` of a [B, S, H, D]
    activation or the slices of a packed [B, S, 3, H, D] QKV tensor.
    k and v may have fewer heads than q (grouped KV / GQA: Hkv divides H, query head h reads
    K/V head h // (H // Hkv)). ``causal`` masks key j for query i when j > i + Sk - Sq, and a
    ``window`` W > 0 also when j < i + Sk - Sq - W + 1; those scores become ``causal_fill``
    (replacing the mask there; -inf by default).
    ``mask`` is additive float32, [B|1, H|1, Sq|1, Sk] or [B, Sk]; trailing keys <= -5000 for every
    query are skipped, and a query whose keys are all -inf gets zeros. ``scale`` defaults to
    1/sqrt(D). ``bf16_compute`` rounds float32 inputs and the probabilities to bf16 for the two
    products (as bf16/int8 inputs always do on CPUs with AVX512_BF16). ``out`` (float32 or
    uint16, [B, H, Sq, D], any view with a contiguous last axis, not overlapping the inputs) is
    written in place and returned; otherwise a new ``out_dtype`` array is.
    """
    if scale is None:
        scale = 1.0 / float(np.sqrt(q.shape[-1]))
    return _C.attention(q, k, v, mask, float(scale), float(q_scale), float(k_scale), float(v_scale),
                        out_dtype, bool(bf16_compute), out, bool(causal), int(window), float(causal_fill))


def to_bf16(x: np.ndarray) -> np.ndarray:
    """float32 -> bf16 bits (uint16), round to nearest even."""
    return _C.to_bf16(x)


def from_bf16(x: np.ndarray) -> np.ndarray:
    """bf16 bits (uint16) -> float32."""
    return _C.from_bf16(x)


def peak_gops(kind: Literal["int8_vnni", "int8_avx2", "bf16", "fp32_avx512", "fp32_avx2", "int8_amx", "bf16_amx"],
              seconds: float = 0.2) -> float:
    """Single-core peak of a register-resident loop in GOPS (1 MAC = 2 ops); 0 if unsupported."""
    return float(_C.peak_gops(kind, float(seconds)))
