"""Native lowering of the index and small element-wise ops that position ids, masks and
relative-position buckets are built from (RoBERTa's CumSum/GatherElements, GatherND of
dynamo's masks, MobileBERT's Pad, DeBERTa's Sign/Abs/Clip/Tile buckets, MobileNet's
HardSwish): one step each on csrc/runtime/ops/index.cpp. Entries of
:data:`graphopt.runtime.lowering_table.LOWERING`; each checks dtypes and attributes and
returns False (the node falls back) for what the kernel does not take.

>>> from graphopt.runtime.lowering_table import LOWERING
>>> LOWERING[("", "CumSum", "int8")]    # doctest: +ELLIPSIS
<function cumsum at ...>
"""

from __future__ import annotations

import numpy as np

from ..ir import DType, Node
from .lower import _INT_T, _SIZED, Tmp, _Lowerer, _s

__all__ = ["cumsum", "gather_elements", "gather_nd", "tile", "pad", "sign", "abs_neg", "clip",
           "hard_sigmoid", "hard_swish"]

# element types of the arithmetic kernels (dispatch_num in index.cpp)
_ARITH = (DType.FLOAT, DType.DOUBLE, DType.INT8, DType.UINT8, DType.INT16, DType.UINT16, DType.INT32, DType.UINT32,
          DType.INT64, DType.UINT64)
_INTS = tuple(d for d in _ARITH if d not in (DType.FLOAT, DType.DOUBLE))
_PAD_MODES = {"constant": 0, "reflect": 1, "edge": 2, "wrap": 3}


def _emit(lw: _Lowerer, n: Node, kind: str, ins: list, **kw) -> bool:
    lw.emit(kind, n, ins, [n.outputs[0]], **kw)
    return True


def cumsum(lw: _Lowerer, n: Node) -> bool:
    if lw.dt(n.inputs[0]) not in _ARITH or lw.dt(n.inputs[1]) not in _INT_T:
        return False
    return _emit(lw, n, "CumSum", list(n.inputs[:2]),
                 iattrs={"exclusive": int(n.attr("exclusive", 0)), "reverse": int(n.attr("reverse", 0))})


def gather_elements(lw: _Lowerer, n: Node) -> bool:
    if lw.dt(n.inputs[0]) not in _SIZED or lw.dt(n.inputs[1]) not in _INT_T:
        return False
    return _emit(lw, n, "GatherElements", list(n.inputs[:2]), iattrs={"axis": int(n.attr("axis", 0))})


def gather_nd(lw: _Lowerer, n: Node) -> bool:
    if lw.dt(n.inputs[0]) not in _SIZED or lw.dt(n.inputs[1]) not in _INT_T:
        return False
    return _emit(lw, n, "GatherND", list(n.inputs[:2]), iattrs={"batch_dims": int(n.attr("batch_dims", 0))})


def tile(lw: _Lowerer, n: Node) -> bool:
    if lw.opset < 6 or lw.dt(n.inputs[0]) not in _SIZED or lw.dt(n.inputs[1]) not in _INT_T:
        return False
    return _emit(lw, n, "Tile", list(n.inputs[:2]))


def pad(lw: _Lowerer, n: Node) -> bool:
    mode = _PAD_MODES.get(_s(n.attr("mode", "constant")))
    x = n.inputs[0]
    if mode is None or lw.dt(x) not in _SIZED:
        return False
    if lw.opset < 11:  # pads and value as attributes
        value = float(n.attr("value", 0.0))
        if value != 0.0 and lw.dt(x) != DType.FLOAT:
            return False
        ins: list = [x, None, None, None]
        if value != 0.0:
            t = Tmp((n.name or n.outputs[0].name) + "/value")
            lw.consts[t] = np.array([value], np.float32)
            ins[2] = t
        return _emit(lw, n, "Pad", ins, iattrs={"mode": mode, "pads": list(n.attr("pads"))})
    ins = list(n.inputs) + [None] * (4 - len(n.inputs))
    pads, value, axes = ins[1], ins[2], ins[3]
    if lw.dt(pads) not in _INT_T or (axes is not None and lw.dt(axes) not in _INT_T):
        return False
    if value is not None and lw.dt(value) != lw.dt(x):
        return False
    if mode == 3:  # wrap with negative pads (crop, then wrap what?) differs between runtimes: keep it to onnxruntime
        p = lw.const(pads)
        if p is None or (p < 0).any():
            return False
    return _emit(lw, n, "Pad", [x, pads, value, axes], iattrs={"mode": mode})


def sign(lw: _Lowerer, n: Node) -> bool:
    return lw.dt(n.inputs[0]) in _ARITH and _emit(lw, n, "Sign", [n.inputs[0]])


def abs_neg(lw: _Lowerer, n: Node) -> bool:
    dt = lw.dt(n.inputs[0])
    if dt == DType.FLOAT:
        return _emit(lw, n, n.op_type, [n.inputs[0]])  # the vectorised fp32 kernels
    if dt not in _INTS:
        return False
    return _emit(lw, n, "Int" + n.op_type, [n.inputs[0]])


def clip(lw: _Lowerer, n: Node) -> bool:
    dt = lw.dt(n.inputs[0])
    if dt == DType.FLOAT:
        from .lower_ops import _clip as clip_f32

        return clip_f32(lw, n)
    if dt not in _INTS or lw.opset < 12:  # integer Clip exists from opset 12
        return False
    ins = list(n.inputs) + [None] * (3 - len(n.inputs))
    if any(v is not None and lw.dt(v) != dt for v in ins[1:3]):
        return False
    return _emit(lw, n, "IntClip", ins[:3])


def hard_sigmoid(lw: _Lowerer, n: Node) -> bool:
    if lw.dt(n.inputs[0]) != DType.FLOAT:
        return False
    return _emit(lw, n, "HardSigmoid", [n.inputs[0]],
                 fattrs={"alpha": float(n.attr("alpha", 0.2)), "beta": float(n.attr("beta", 0.5))})


def hard_swish(lw: _Lowerer, n: Node) -> bool:
    return lw.dt(n.inputs[0]) == DType.FLOAT and _emit(lw, n, "HardSwish", [n.inputs[0]])
