"""GELU ops and the activation epilogues shared by Linear and FusedConv.

Activation epilogue vocabulary (the ``activation`` string attribute of
``Linear`` and ``FusedConv``; ``activation_params`` holds its floats):

=============  ==================  =======================================
name           activation_params   y =
=============  ==================  =======================================
``""``         —                   x
``Relu``       —                   max(x, 0)
``Sigmoid``    —                   1 / (1 + exp(-x))
``Tanh``       —                   tanh(x)
``LeakyRelu``  [alpha]             x if x >= 0 else alpha * x
``Clip``       [min, max]          min(max(x, min), max)
``HardSigmoid`` [alpha, beta]      max(0, min(1, alpha * x + beta))
``Gelu``       —                   x * 0.5 * (1 + erf(x / sqrt(2)))
``FastGelu``   —                   x * 0.5 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))
=============  ==================  =======================================
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import UnsupportedError
from ..ir import Node, TensorType, Value
from ._registry import MS_DOMAIN, Emitter, OpDef, register_op

__all__ = ["ACTIVATIONS", "apply_activation", "emit_activation", "gelu_ref", "GELU", "BIAS_GELU"]

ACTIVATIONS: dict[str, int] = {  # name -> number of activation_params
    "": 0, "Relu": 0, "Sigmoid": 0, "Tanh": 0, "LeakyRelu": 1, "Clip": 2, "HardSigmoid": 2,
    "Gelu": 0, "FastGelu": 0,
}
#: Activations onnxruntime's com.microsoft FusedConv accepts (its MLAS epilogues).
ORT_FUSED_CONV_ACTIVATIONS = frozenset({"Relu", "Sigmoid", "Tanh", "LeakyRelu", "Clip", "HardSigmoid"})

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _erf(x: np.ndarray) -> np.ndarray:
    from math import erf

    return np.vectorize(erf, otypes=[np.float64])(x)


def gelu_ref(x: np.ndarray, approximate: str = "none") -> np.ndarray:
    """GELU in float64, returned in x's dtype."""
    xd = x.astype(np.float64)
    if approximate == "tanh":
        y = 0.5 * xd * (1.0 + np.tanh(_SQRT_2_OVER_PI * (xd + 0.044715 * xd ** 3)))
    else:
        y = 0.5 * xd * (1.0 + _erf(xd / math.sqrt(2.0)))
    return y.astype(x.dtype)


def check_activation(label: str, name: str, params: Sequence[float]) -> None:
    if name not in ACTIVATIONS:
        raise UnsupportedError(f"{label}: unknown activation '{name}' (known: {sorted(a for a in ACTIVATIONS if a)})")
    if len(params) != ACTIVATIONS[name]:
        raise UnsupportedError(f"{label}: activation '{name}' takes {ACTIVATIONS[name]} activation_params, "
                               f"got {len(params)}")


def apply_activation(x: np.ndarray, name: str, params: Sequence[float]) -> np.ndarray:
    """numpy reference of an activation epilogue."""
    p = list(params)
    if name == "":
        return x
    if name == "Relu":
        return np.maximum(x, 0).astype(x.dtype)
    if name == "Sigmoid":
        return (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(x.dtype)
    if name == "Tanh":
        return np.tanh(x)
    if name == "LeakyRelu":
        return np.where(x >= 0, x, x * p[0]).astype(x.dtype)
    if name == "Clip":
        return np.clip(x, p[0], p[1]).astype(x.dtype)
    if name == "HardSigmoid":
        return np.clip(x * p[0] + p[1], 0, 1).astype(x.dtype)
    if name == "Gelu":
        return gelu_ref(x, "none")
    if name == "FastGelu":
        return gelu_ref(x, "tanh")
    raise UnsupportedError(f"unknown activation '{name}'")


def emit_gelu_std(e: Emitter, x: Value, approximate: str) -> Value:
    """GELU in standard ONNX: the Gelu op from opset 20, else its formula."""
    if e.opset >= 20:
        return e.op("Gelu", [x], {"approximate": approximate})
    dt = e.dtype_np(x)
    half = e.const("half", 0.5, dt)
    one = e.const("one", 1.0, dt)
    if approximate == "tanh":
        c = e.const("gelu_c", 0.044715, dt)
        k = e.const("sqrt_2_over_pi", _SQRT_2_OVER_PI, dt)
        x3 = e.op("Mul", [e.op("Mul", [x, x]), x])
        inner = e.op("Mul", [k, e.op("Add", [x, e.op("Mul", [c, x3])])])
        t = e.op("Tanh", [inner])
    else:
        t = e.op("Erf", [e.op("Div", [x, e.const("sqrt2", math.sqrt(2.0), dt)])])
    return e.op("Mul", [e.op("Mul", [x, half]), e.op("Add", [t, one])])


def emit_activation(e: Emitter, x: Value, name: str, params: Sequence[float], *, ort: bool) -> Value:
    """An activation epilogue as standard ONNX (or contrib Gelu/FastGelu when ``ort``)."""
    p = [float(v) for v in params]
    if name == "":
        return x
    if name in ("Relu", "Sigmoid", "Tanh"):
        return e.op(name, [x])
    if name == "LeakyRelu":
        return e.op("LeakyRelu", [x], {"alpha": p[0]})
    if name == "HardSigmoid":
        return e.op("HardSigmoid", [x], {"alpha": p[0], "beta": p[1]})
    if name == "Clip":
        if e.opset < 11:
            return e.op("Clip", [x], {"min": p[0], "max": p[1]})
        dt = e.dtype_np(x)
        return e.op("Clip", [x, e.const("clip_min", p[0], dt), e.const("clip_max", p[1], dt)])
    if name in ("Gelu", "FastGelu"):
        if ort:
            return e.op(name, [x], domain=MS_DOMAIN)
        return emit_gelu_std(e, x, "tanh" if name == "FastGelu" else "none")
    raise UnsupportedError(f"unknown activation '{name}'")


def same_type_rule(node: Node) -> list[Any]:
    x = node.inputs[0]
    return [x.type if x is not None and isinstance(x.type, TensorType) else None]


# --- Gelu --------------------------------------------------------------------

def _gelu_ref(inputs: Sequence[np.ndarray | None], attrs: dict[str, Any]) -> list[np.ndarray]:
    return [gelu_ref(inputs[0], attrs["approximate"])]


def _gelu_ort(node: Node, e: Emitter) -> list[Value | None]:
    approx = node.attr("approximate", "none")
    if isinstance(approx, bytes):
        approx = approx.decode()
    return [e.op("FastGelu" if approx == "tanh" else "Gelu", [node.inputs[0]], domain=MS_DOMAIN)]


def _gelu_decompose(node: Node, e: Emitter) -> list[Value | None]:
    approx = node.attr("approximate", "none")
    if isinstance(approx, bytes):
        approx = approx.decode()
    return [emit_gelu_std(e, node.inputs[0], approx)]


GELU = register_op(OpDef(
    op_type="Gelu",
    spec="""graphopt::Gelu(X) -> Y

X: float tensor of any shape. Attribute approximate: "none" (default) or "tanh".
Y has X's shape and type:
  none: Y = X * 0.5 * (1 + erf(X / sqrt(2)))
  tanh: Y = X * 0.5 * (1 + tanh(sqrt(2/pi) * (X + 0.044715 * X^3)))
onnxruntime: com.microsoft Gelu / FastGelu. Standard ONNX: Gelu (opset 20) or the formula.""",
    attrs={"approximate": "none"},
    reference=_gelu_ref,
    shape_rule=same_type_rule,
    to_onnxruntime=_gelu_ort,
    decompose=_gelu_decompose,
))


# --- BiasGelu ---------------------------------------------------------------

def _bias_gelu_ref(inputs: Sequence[np.ndarray | None], attrs: dict[str, Any]) -> list[np.ndarray]:
    return [gelu_ref(inputs[0] + inputs[1], attrs["approximate"])]


def _bias_gelu_ort(node: Node, e: Emitter) -> list[Value | None]:
    approx = node.attr("approximate", "none")
    x, b = node.inputs[0], node.inputs[1]
    if approx in ("tanh", b"tanh"):
        return [e.op("FastGelu", [x, b], domain=MS_DOMAIN)]
    return [e.op("BiasGelu", [x, b], domain=MS_DOMAIN)]


def _bias_gelu_decompose(node: Node, e: Emitter) -> list[Value | None]:
    approx = node.attr("approximate", "none")
    approx = approx.decode() if isinstance(approx, bytes) else approx
    return [emit_gelu_std(e, e.op("Add", [node.inputs[0], node.inputs[1]]), approx)]


BIAS_GELU = register_op(OpDef(
    op_type="BiasGelu",
    spec="""graphopt::BiasGelu(X, B) -> Y

X: float [..., N]; B: float [N] (a bias added along the last axis).
Attribute approximate: "none" (default, erf GELU) or "tanh".
Y = Gelu(X + B), shape and type of X.
onnxruntime: com.microsoft BiasGelu (erf) / FastGelu(X, B) (tanh). Standard ONNX: Add + Gelu.""",
    attrs={"approximate": "none"},
    reference=_bias_gelu_ref,
    shape_rule=same_type_rule,
    to_onnxruntime=_bias_gelu_ort,
    decompose=_bias_gelu_decompose,
))
