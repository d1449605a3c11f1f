"""graphopt::Linear (MatMul + bias + activation epilogue) and graphopt::FusedConv."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..ir import Node, TensorType, Value
from ._registry import MS_DOMAIN, Emitter, OpDef, register_op
from .activations import ORT_FUSED_CONV_ACTIVATIONS, apply_activation, check_activation, emit_activation

__all__ = ["LINEAR", "FUSED_CONV", "CONV_ATTRS"]


def _act(node: Node) -> tuple[str, list[float]]:
    name = node.attr("activation", "")
    name = name.decode() if isinstance(name, bytes) else name
    params = [float(p) for p in node.attr("activation_params", [])]
    check_activation(node.label(), name, params)
    return name, params


# --- Linear ------------------------------------------------------------------

def _linear_ref(inputs: Sequence[np.ndarray | None], attrs: dict[str, Any]) -> list[np.ndarray]:
    x, w = inputs[0], inputs[1]
    y = np.matmul(x, w)
    if len(inputs) > 2 and inputs[2] is not None:
        y = y + inputs[2]
    return [apply_activation(y.astype(x.dtype), attrs["activation"], attrs["activation_params"])]


def _linear_shape(node: Node) -> list[Any]:
    x, w = node.inputs[0], node.inputs[1]
    if x is None or w is None or x.shape is None or w.shape is None or len(w.shape) != 2:
        return [None]
    return [TensorType(x.dtype, tuple(x.shape[:-1]) + (w.shape[1],))]


def _bias_to_skip_ln(node: Node, b: Value) -> bool:
    """Linear(X, W, B) whose only reader is a bias-less graphopt::SkipLayerNorm (as X or Skip): give
    that SkipLayerNorm the bias (its sum is X + Skip + Bias either way) and return True."""
    y = node.outputs[0]
    if y.is_graph_output() or y.num_uses() != 1:
        return False
    sln = y.consumers()[0]
    if sln.op_type != "SkipLayerNorm" or sln.domain != node.domain or y not in sln.inputs[:2] \
            or any(v is not None for v in sln.inputs[4:]) or (len(sln.inputs) > 1 and sln.inputs[0] is sln.inputs[1]):
        return False
    while len(sln.inputs) < 4:
        sln.append_input(None)
    if len(sln.inputs) == 4:
        sln.append_input(b)
    else:
        sln.set_input(4, b)
    return True


def _linear_emit(node: Node, e: Emitter, ort: bool) -> list[Value | None]:
    act, params = _act(node)
    x, w = node.inputs[0], node.inputs[1]
    b = node.inputs[2] if len(node.inputs) > 2 else None
    y = e.op("MatMul", [x, w])
    if ort and b is not None and not act and _bias_to_skip_ln(node, b):
        return [y]  # SkipLayerNormalization takes the bias (one kernel fewer, as before fuse-linear-epilogue)
    if ort and b is not None and act in ("Gelu", "FastGelu"):
        # onnxruntime's fused bias+GELU kernels take the bias directly
        return [e.op("BiasGelu" if act == "Gelu" else "FastGelu", [y, b], domain=MS_DOMAIN)]
    if b is not None:
        y = e.op("Add", [y, b])
    return [emit_activation(e, y, act, params, ort=ort)]


LINEAR = register_op(OpDef(
    op_type="Linear",
    spec="""graphopt::Linear(X, W, B?) -> Y

X: float [..., K]; W: float [K, N] (usually an initializer); B: optional float [N].
Attributes: activation (string, "" = none; see graphopt.ops.activations), activation_params (floats).
Y = act(MatMul(X, W) + B): shape [..., N], X's type (numpy matmul broadcasting).
onnxruntime: MatMul + Add (+ activation; BiasGelu/FastGelu take the bias for GELU epilogues).
Standard ONNX: MatMul + Add + activation ops.""",
    attrs={"activation": "", "activation_params": []},
    reference=_linear_ref,
    shape_rule=_linear_shape,
    to_onnxruntime=lambda n, e: _linear_emit(n, e, True),
    decompose=lambda n, e: _linear_emit(n, e, False),
))


# --- FusedConv ---------------------------------------------------------------

CONV_ATTRS = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")


def _conv_ref(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, attrs: dict[str, Any]) -> np.ndarray:
    """Direct N-d convolution in float64 (NOTSET/explicit pads; SAME_* resolved like ONNX)."""
    nd = x.ndim - 2
    strides = list(attrs.get("strides") or [1] * nd)
    dil = list(attrs.get("dilations") or [1] * nd)
    group = int(attrs.get("group") or 1)
    kshape = list(w.shape[2:])
    pads = list(attrs.get("pads") or [0] * (2 * nd))
    auto_pad = attrs.get("auto_pad") or "NOTSET"
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = [0] * (2 * nd)
        for i in range(nd):
            out = -(-x.shape[2 + i] // strides[i])
            total = max(0, (out - 1) * strides[i] + (kshape[i] - 1) * dil[i] + 1 - x.shape[2 + i])
            lo = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
            pads[i], pads[nd + i] = lo, total - lo
    elif auto_pad == "VALID":
        pads = [0] * (2 * nd)
    xp = np.pad(x.astype(np.float64), [(0, 0), (0, 0)] + [(pads[i], pads[nd + i]) for i in range(nd)])
    n, c = x.shape[:2]
    m = w.shape[0]
    cg, mg = c // group, m // group
    outs = [(xp.shape[2 + i] - ((kshape[i] - 1) * dil[i] + 1)) // strides[i] + 1 for i in range(nd)]
    y = np.zeros((n, m, *outs))
    for g in range(group):
        xg = xp[:, g * cg:(g + 1) * cg]
        wg = w[g * mg:(g + 1) * mg].astype(np.float64)
        for kidx in np.ndindex(*kshape):
            sl = tuple(slice(kidx[i] * dil[i], kidx[i] * dil[i] + (outs[i] - 1) * strides[i] + 1, strides[i])
                       for i in range(nd))
            patch = xg[(slice(None), slice(None)) + sl]  # [n, cg, *outs]
            y[:, g * mg:(g + 1) * mg] += np.einsum("nc...,mc->nm...", patch, wg[(slice(None), slice(None)) + kidx])
    if b is not None:
        y += b.reshape((1, m) + (1,) * nd)
    return y.astype(x.dtype)


def _fused_conv_ref(inputs: Sequence[np.ndarray | None], attrs: dict[str, Any]) -> list[np.ndarray]:
    b = inputs[2] if len(inputs) > 2 else None
    y = _conv_ref(inputs[0], inputs[1], b, attrs)
    return [apply_activation(y, attrs["activation"], attrs["activation_params"])]


def _conv_shape(node: Node) -> list[Any]:
    # Conv's output-size rule; spatial dims stay unknown unless X and W are static.
    x, w = node.inputs[0], node.inputs[1]
    if x is None or w is None or x.shape is None or w.shape is None:
        return [None]
    nd = len(x.shape) - 2
    if any(not isinstance(d, int) for d in list(x.shape[2:]) + list(w.shape)):
        return [TensorType(x.dtype, (x.shape[0], w.shape[0]) + (None,) * nd)]
    attrs = {k: node.attr(k) for k in CONV_ATTRS}
    probe = _conv_out_dims(list(x.shape[2:]), list(w.shape[2:]), attrs, nd)
    return [TensorType(x.dtype, (x.shape[0], w.shape[0], *probe))]


def _conv_out_dims(spatial: list[int], kshape: list[int], attrs: dict[str, Any], nd: int) -> list[int]:
    strides = list(attrs.get("strides") or [1] * nd)
    dil = list(attrs.get("dilations") or [1] * nd)
    pads = list(attrs.get("pads") or [0] * (2 * nd))
    auto_pad = attrs.get("auto_pad") or "NOTSET"
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return [-(-s // st) for s, st in zip(spatial, strides)]
    if auto_pad == "VALID":
        pads = [0] * (2 * nd)
    return [(spatial[i] + pads[i] + pads[nd + i] - ((kshape[i] - 1) * dil[i] + 1)) // strides[i] + 1
            for i in range(nd)]


def _conv_attrs(node: Node) -> dict[str, Any]:
    return {k: node.attrs[k] for k in CONV_ATTRS if k in node.attrs}


def _fused_conv_ort(node: Node, e: Emitter) -> list[Value | None]:
    act, params = _act(node)
    if act in ORT_FUSED_CONV_ACTIVATIONS:
        attrs: dict[str, Any] = dict(_conv_attrs(node))
        attrs["activation"] = act
        if params:
            attrs["activation_params"] = params
        return [e.op("FusedConv", list(node.inputs), attrs, domain=MS_DOMAIN)]
    y = e.op("Conv", list(node.inputs), _conv_attrs(node))
    return [emit_activation(e, y, act, params, ort=True)]


def _fused_conv_decompose(node: Node, e: Emitter) -> list[Value | None]:
    act, params = _act(node)
    y = e.op("Conv", list(node.inputs), _conv_attrs(node))
    return [emit_activation(e, y, act, params, ort=False)]


FUSED_CONV = register_op(OpDef(
    op_type="FusedConv",
    spec="""graphopt::FusedConv(X, W, B?) -> Y

X, W, B and the attributes auto_pad, dilations, group, kernel_shape, pads, strides are those of
ONNX Conv; plus activation (string, "" = none) and activation_params (floats).
Y = act(Conv(X, W, B)).
onnxruntime: com.microsoft FusedConv for Relu/Sigmoid/Tanh/LeakyRelu/Clip/HardSigmoid, else Conv + activation.
Standard ONNX: Conv + activation ops.""",
    attrs={"auto_pad": "NOTSET", "dilations": [], "group": 1, "kernel_shape": [], "pads": [], "strides": [],
           "activation": "", "activation_params": []},
    reference=_fused_conv_ref,
    shape_rule=_conv_shape,
    to_onnxruntime=_fused_conv_ort,
    decompose=_fused_conv_decompose,
))
