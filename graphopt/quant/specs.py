"""Quantization specs, parameters and the typed metadata keys that carry them.

The annotate step writes *what* to quantize (:data:`QUANT_INPUTS` on nodes,
holding :class:`QuantSpec`); calibration writes *observed statistics*
(:data:`CALIB` on values); insert-qdq materialises both as
QuantizeLinear/DequantizeLinear with :class:`QParams`.

>>> spec = QuantSpec(QType.S8, symmetric=True, per_channel=True, axis=1)
>>> qp = qparams_from_range(np.array([-1.0, -2.0]), np.array([1.0, 4.0]), spec)
>>> [round(float(s), 4) for s in qp.scale], qp.zero_point.tolist()
([0.0079, 0.0315], [0, 0])
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from ..errors import GraphoptError
from ..ir import DType, MetaKey

__all__ = ["QType", "QuantSpec", "QParams", "qparams_from_range", "quantize_array", "dequantize_array",
           "QUANT_INPUTS", "CALIB", "CHANNEL_MAX", "GRAM", "QPARAMS", "PRECISION", "OBSERVERS"]

#: Range methods a spec can name (all computed from one histogram observer).
OBSERVERS = ("minmax", "percentile", "entropy", "mse")


class QType(str, enum.Enum):
    """Integer element types for quantized tensors."""

    S8 = "s8"
    U8 = "u8"
    S4 = "s4"
    U4 = "u4"

    @property
    def qmin(self) -> int:
        return {"s8": -128, "u8": 0, "s4": -8, "u4": 0}[self.value]

    @property
    def qmax(self) -> int:
        return {"s8": 127, "u8": 255, "s4": 7, "u4": 15}[self.value]

    @property
    def signed(self) -> bool:
        return self.value.startswith("s")

    @property
    def dtype(self) -> DType:
        return {"s8": DType.INT8, "u8": DType.UINT8, "s4": DType.INT4, "u4": DType.UINT4}[self.value]

    @property
    def numpy(self) -> np.dtype:
        return np.dtype(np.int8) if self.value in ("s8", "s4") else np.dtype(np.uint8)

    @classmethod
    def parse(cls, text: str | QType) -> QType:
        if isinstance(text, QType):
            return text
        aliases = {"int8": "s8", "uint8": "u8", "int4": "s4", "uint4": "u4", "i8": "s8", "i4": "s4"}
        t = aliases.get(str(text).lower(), str(text).lower())
        try:
            return cls(t)
        except ValueError:
            raise GraphoptError(f"unknown quantized dtype '{text}'; use s8, u8, s4 or u4") from None


@dataclass(frozen=True)
class QuantSpec:
    """How one tensor is quantized.

    ``axis`` is the channel axis for ``per_channel`` (None: chosen by the
    annotator from the op); ``group_size`` > 0 means group-wise along the
    reduction axis (weight-only int4); ``observer`` names the range method.
    """

    dtype: QType = QType.U8
    symmetric: bool = False
    per_channel: bool = False
    axis: int | None = None
    observer: str = "minmax"
    percentile: float = 99.999
    group_size: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", QType.parse(self.dtype))
        if self.observer not in OBSERVERS:
            raise GraphoptError(f"unknown observer '{self.observer}'; choose one of {', '.join(OBSERVERS)}")
        if not 50.0 < self.percentile <= 100.0:
            raise GraphoptError(f"percentile must be in (50, 100], got {self.percentile}")

    def with_(self, **kw: Any) -> QuantSpec:
        return replace(self, **kw)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["dtype"] = self.dtype.value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], base: QuantSpec | None = None) -> QuantSpec:
        base = base or cls()
        known = set(cls.__dataclass_fields__)
        bad = set(d) - known
        if bad:
            raise GraphoptError(f"unknown quant spec field(s) {sorted(bad)}; known: {sorted(known)}")
        return replace(base, **d)


@dataclass(frozen=True)
class QParams:
    """Scale and zero point (scalars, or 1-D along ``axis``) of a quantized tensor."""

    scale: np.ndarray
    zero_point: np.ndarray
    qtype: QType
    axis: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"scale": np.asarray(self.scale).tolist(), "zero_point": np.asarray(self.zero_point).tolist(),
                "qtype": self.qtype.value, "axis": self.axis}


def qparams_from_range(lo: np.ndarray | float, hi: np.ndarray | float, spec: QuantSpec) -> QParams:
    """Affine parameters covering [lo, hi] (widened to include 0, as ONNX requires)."""
    lo = np.minimum(np.asarray(lo, np.float64), 0.0)
    hi = np.maximum(np.asarray(hi, np.float64), 0.0)
    qmin, qmax = spec.dtype.qmin, spec.dtype.qmax
    if spec.symmetric:
        amax = np.maximum(np.abs(lo), np.abs(hi))
        if spec.dtype.signed:
            scale = amax / qmax  # the symmetric range excludes qmin (-128): no asymmetric corner
            zp = np.zeros_like(scale)
        else:  # unsigned symmetric: centre at the middle code
            scale = 2 * amax / (qmax - qmin)
            zp = np.full_like(scale, (qmax + qmin + 1) // 2)
    else:
        scale = (hi - lo) / (qmax - qmin)
        scale = np.where(scale > 0, scale, 1.0)
        zp = np.clip(np.round(qmin - lo / scale), qmin, qmax)
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)  # all-zero tensors: any scale works
    return QParams(scale, zp.astype(spec.dtype.numpy), spec.dtype, spec.axis if spec.per_channel else None)


def _bshape(qp: QParams, ndim: int) -> tuple[int, ...]:
    if qp.axis is None or np.ndim(qp.scale) == 0:
        return ()
    shape = [1] * ndim
    shape[qp.axis % ndim] = -1
    return tuple(shape)


def quantize_array(x: np.ndarray, qp: QParams) -> np.ndarray:
    """Round-to-nearest-even, saturating (ONNX QuantizeLinear semantics)."""
    b = _bshape(qp, x.ndim)
    s = np.reshape(qp.scale, b) if b else qp.scale
    z = np.reshape(qp.zero_point, b).astype(np.int32) if b else np.int32(qp.zero_point)
    q = np.rint(x / s) + z
    return np.clip(q, qp.qtype.qmin, qp.qtype.qmax).astype(qp.qtype.numpy)


def dequantize_array(q: np.ndarray, qp: QParams) -> np.ndarray:
    b = _bshape(qp, q.ndim)
    s = np.reshape(qp.scale, b) if b else qp.scale
    z = np.reshape(qp.zero_point, b).astype(np.int32) if b else np.int32(qp.zero_point)
    return ((q.astype(np.int32) - z) * s).astype(np.float32)


#: node meta: input index -> QuantSpec (written by the annotate pass).
QUANT_INPUTS: MetaKey[dict[int, QuantSpec]] = MetaKey("quant_inputs")
#: value meta: the calibration observer (ranges, histogram) of an activation.
CALIB: MetaKey[Any] = MetaKey("calib")
#: value meta: per-channel (last axis) abs max of an activation, for SmoothQuant.
CHANNEL_MAX: MetaKey[np.ndarray] = MetaKey("channel_max")
#: value meta: the Gram matrix X^T X of a linear layer's input (GPTQ).
GRAM: MetaKey[np.ndarray] = MetaKey("gram")
#: value meta: the quantization parameters insert-qdq used for the value.
QPARAMS: MetaKey[QParams] = MetaKey("qparams")
#: node meta: the precision a node runs in: "int8", "fp32", "bf16", "fp16".
PRECISION: MetaKey[str] = MetaKey("precision")
