"""Activation epilogues of graphopt::Linear / FusedConv that the GEMM epilogue does not take
(Tanh of BERT's pooler, Sigmoid, LeakyRelu, Clip/ReLU6, HardSigmoid), as one native
element-wise step after the GEMM; and the depthwise-conv choice of :func:`lower_ops.conv`.

The GEMM epilogue keeps Relu/Gelu/FastGelu fused; the rest costs one memory-bound pass over
the output, which is small next to the GEMM (a pooler row, a conv feature map).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..ir import Node, Value
from .lower import Tmp, _Lowerer

__all__ = ["POST_ACTS", "emit_post_act", "depthwise_act"]

#: activation name -> (step kind, attrs builder) for the separate element-wise step
POST_ACTS: dict[str, tuple[str, Any]] = {
    "Relu": ("Relu", lambda p: {}),
    "Sigmoid": ("Sigmoid", lambda p: {}),
    "Tanh": ("Tanh", lambda p: {}),
    "LeakyRelu": ("LeakyRelu", lambda p: {"fattrs": {"alpha": float(p[0])}}),
    "Clip": ("Clip", lambda p: {"fattrs": {"min": float(p[0]), "max": float(p[1])}}),
    "HardSigmoid": ("HardSigmoid", lambda p: {"fattrs": {"alpha": float(p[0]), "beta": float(p[1])}}),
    "Gelu": ("Gelu", lambda p: {"iattrs": {"tanh": 0}}),
    "FastGelu": ("Gelu", lambda p: {"iattrs": {"tanh": 1}}),
}
_NPARAMS = {"LeakyRelu": 1, "Clip": 2, "HardSigmoid": 2}


def post_act_ok(name: str, params: Sequence[float]) -> bool:
    return name in POST_ACTS and len(params) == _NPARAMS.get(name, 0)


def emit_post_act(lw: _Lowerer, n: Node, name: str, params: Sequence[float], x: Value | Tmp, out: Value) -> None:
    """One native step out = name(x; params), labelled as part of ``n``."""
    kind, attrs = POST_ACTS[name]
    s = lw.emit(kind, (n.name or n.outputs[0].name) + "/" + name.lower(), [x], [out], origin=[n.label()], **attrs(params))
    s.detail = f"{name} epilogue of {n.op_type}"


def depthwise_act(name: str, params: Sequence[float]) -> dict[str, Any] | None:
    """The DepthwiseConv step's inline epilogue for ``name``, or None (then a separate step)."""
    if name == "":
        return {"iattrs": {"act": 0}, "fattrs": {}}
    if name == "Relu":
        return {"iattrs": {"act": 1}, "fattrs": {}}
    if name == "Clip" and len(params) == 2:
        return {"iattrs": {"act": 2}, "fattrs": {"min": float(params[0]), "max": float(params[1])}}
    return None
