"""Element types, shapes and value types of the IR. No protobuf here."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Union

import numpy as np

try:  # ml_dtypes (a dependency of onnx) gives numpy bf16 / fp8 / int4
    import ml_dtypes as _mld
except ImportError:  # pragma: no cover
    _mld = None

__all__ = [
    "DType",
    "Dim",
    "Shape",
    "TensorType",
    "SparseTensorType",
    "SequenceType",
    "OptionalType",
    "MapType",
    "ValueType",
    "shape_str",
]


def _np(name: str) -> np.dtype | None:
    if name.startswith("ml:"):
        if _mld is None:
            return None
        t = getattr(_mld, name[3:], None)
        return np.dtype(t) if t is not None else None
    return np.dtype(name)


class DType(enum.Enum):
    """Every ONNX tensor element type. The value is the ONNX TensorProto code."""

    UNDEFINED = 0
    FLOAT = 1
    UINT8 = 2
    INT8 = 3
    UINT16 = 4
    INT16 = 5
    INT32 = 6
    INT64 = 7
    STRING = 8
    BOOL = 9
    FLOAT16 = 10
    DOUBLE = 11
    UINT32 = 12
    UINT64 = 13
    COMPLEX64 = 14
    COMPLEX128 = 15
    BFLOAT16 = 16
    FLOAT8E4M3FN = 17
    FLOAT8E4M3FNUZ = 18
    FLOAT8E5M2 = 19
    FLOAT8E5M2FNUZ = 20
    UINT4 = 21
    INT4 = 22
    FLOAT4E2M1 = 23
    FLOAT8E8M0 = 24
    UINT2 = 25
    INT2 = 26
    FLOAT6E2M3 = 27
    FLOAT6E3M2 = 28

    @property
    def short(self) -> str:
        """Compact name used by the printer: ``f32``, ``bf16``, ``i8``..."""
        return _SHORT.get(self, self.name.lower())

    @property
    def numpy(self) -> np.dtype:
        """The numpy dtype that holds this element type (ml_dtypes for bf16/fp8/int4)."""
        dt = _NUMPY.get(self)
        if dt is None:
            raise TypeError(f"no numpy dtype can hold {self.name}")
        return dt

    @property
    def itemsize_bits(self) -> int:
        return _BITS.get(self, 0)

    @property
    def is_float(self) -> bool:
        return self in _FLOATS

    @property
    def is_integer(self) -> bool:
        return self in _INTS

    @classmethod
    def from_numpy(cls, dtype: np.dtype | type) -> DType:
        dt = np.dtype(dtype)
        for k, v in _NUMPY.items():
            if v == dt and k not in (DType.UNDEFINED,):
                # object arrays are strings; several ml_dtypes compare unequal, which is what we want
                return k
        if dt.kind in ("U", "S", "O"):
            return DType.STRING
        raise TypeError(f"numpy dtype {dt} has no ONNX element type")

    @classmethod
    def parse(cls, text: str) -> DType:
        """Parse a short or ONNX name: ``'f32'``, ``'float'``, ``'BFLOAT16'``."""
        t = text.strip()
        for k, v in _SHORT.items():
            if v == t:
                return k
        try:
            return cls[t.upper()]
        except KeyError:
            raise ValueError(f"unknown dtype '{text}'") from None


_SHORT = {
    DType.FLOAT: "f32", DType.DOUBLE: "f64", DType.FLOAT16: "f16", DType.BFLOAT16: "bf16",
    DType.INT8: "i8", DType.UINT8: "u8", DType.INT16: "i16", DType.UINT16: "u16",
    DType.INT32: "i32", DType.UINT32: "u32", DType.INT64: "i64", DType.UINT64: "u64",
    DType.BOOL: "bool", DType.STRING: "str", DType.INT4: "i4", DType.UINT4: "u4",
    DType.INT2: "i2", DType.UINT2: "u2", DType.COMPLEX64: "c64", DType.COMPLEX128: "c128",
    DType.FLOAT8E4M3FN: "f8e4m3fn", DType.FLOAT8E4M3FNUZ: "f8e4m3fnuz", DType.FLOAT8E5M2: "f8e5m2",
    DType.FLOAT8E5M2FNUZ: "f8e5m2fnuz", DType.FLOAT8E8M0: "f8e8m0", DType.FLOAT4E2M1: "f4e2m1",
    DType.FLOAT6E2M3: "f6e2m3", DType.FLOAT6E3M2: "f6e3m2", DType.UNDEFINED: "?",
}
_NUMPY_NAMES = {
    DType.FLOAT: "float32", DType.DOUBLE: "float64", DType.FLOAT16: "float16", DType.INT8: "int8",
    DType.UINT8: "uint8", DType.INT16: "int16", DType.UINT16: "uint16", DType.INT32: "int32",
    DType.UINT32: "uint32", DType.INT64: "int64", DType.UINT64: "uint64", DType.BOOL: "bool",
    DType.STRING: "object", DType.COMPLEX64: "complex64", DType.COMPLEX128: "complex128",
    DType.BFLOAT16: "ml:bfloat16", DType.FLOAT8E4M3FN: "ml:float8_e4m3fn",
    DType.FLOAT8E4M3FNUZ: "ml:float8_e4m3fnuz", DType.FLOAT8E5M2: "ml:float8_e5m2",
    DType.FLOAT8E5M2FNUZ: "ml:float8_e5m2fnuz", DType.FLOAT8E8M0: "ml:float8_e8m0fnu",
    DType.INT4: "ml:int4", DType.UINT4: "ml:uint4", DType.INT2: "ml:int2", DType.UINT2: "ml:uint2",
    DType.FLOAT4E2M1: "ml:float4_e2m1fn", DType.FLOAT6E2M3: "ml:float6_e2m3fn",
    DType.FLOAT6E3M2: "ml:float6_e3m2fn",
}
_NUMPY = {k: d for k, n in _NUMPY_NAMES.items() if (d := _np(n)) is not None}
_BITS = {
    DType.FLOAT: 32, DType.DOUBLE: 64, DType.FLOAT16: 16, DType.BFLOAT16: 16, DType.INT8: 8,
    DType.UINT8: 8, DType.INT16: 16, DType.UINT16: 16, DType.INT32: 32, DType.UINT32: 32,
    DType.INT64: 64, DType.UINT64: 64, DType.BOOL: 8, DType.COMPLEX64: 64, DType.COMPLEX128: 128,
    DType.FLOAT8E4M3FN: 8, DType.FLOAT8E4M3FNUZ: 8, DType.FLOAT8E5M2: 8, DType.FLOAT8E5M2FNUZ: 8,
    DType.FLOAT8E8M0: 8, DType.INT4: 4, DType.UINT4: 4, DType.INT2: 2, DType.UINT2: 2,
    DType.FLOAT4E2M1: 4, DType.FLOAT6E2M3: 6, DType.FLOAT6E3M2: 6,
}
_FLOATS = frozenset({
    DType.FLOAT, DType.DOUBLE, DType.FLOAT16, DType.BFLOAT16, DType.FLOAT8E4M3FN,
    DType.FLOAT8E4M3FNUZ, DType.FLOAT8E5M2, DType.FLOAT8E5M2FNUZ, DType.FLOAT8E8M0,
    DType.FLOAT4E2M1, DType.FLOAT6E2M3, DType.FLOAT6E3M2,
})
_INTS = frozenset({
    DType.INT8, DType.UINT8, DType.INT16, DType.UINT16, DType.INT32, DType.UINT32, DType.INT64,
    DType.UINT64, DType.INT4, DType.UINT4, DType.INT2, DType.UINT2,
})

#: A dimension: a fixed size, a symbolic name ("batch"), or None when unknown.
Dim = Union[int, str, None]
#: A shape: a tuple of dims, or None when even the rank is unknown.
Shape = Union[tuple[Dim, ...], None]


def shape_str(shape: Shape) -> str:
    if shape is None:
        return "[*]"
    return "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"


@dataclass(frozen=True)
class TensorType:
    dtype: DType
    shape: Shape = None

    def __str__(self) -> str:
        return f"{self.dtype.short}{shape_str(self.shape)}"


@dataclass(frozen=True)
class SparseTensorType:
    dtype: DType
    shape: Shape = None

    def __str__(self) -> str:
        return f"sparse<{self.dtype.short}{shape_str(self.shape)}>"


@dataclass(frozen=True)
class SequenceType:
    elem: ValueType | None

    def __str__(self) -> str:
        return f"seq<{self.elem if self.elem is not None else '?'}>"


@dataclass(frozen=True)
class OptionalType:
    elem: ValueType | None

    def __str__(self) -> str:
        return f"opt<{self.elem if self.elem is not None else '?'}>"


@dataclass(frozen=True)
class MapType:
    key: DType
    value: ValueType | None

    def __str__(self) -> str:
        return f"map<{self.key.short},{self.value}>"


ValueType = Union[TensorType, SparseTensorType, SequenceType, OptionalType, MapType]
