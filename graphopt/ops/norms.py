"""graphopt::SkipLayerNorm and graphopt::EmbedLayerNorm (LayerNorm itself is ONNX LayerNormalization)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import UnsupportedError
from ..io.onnx_import import OMITTED
from ..ir import DType, Node, TensorType, Value
from ._registry import MS_DOMAIN, Emitter, OpDef, register_op

__all__ = ["SKIP_LAYER_NORM", "EMBED_LAYER_NORM", "layer_norm_ref", "emit_layer_norm"]


def layer_norm_ref(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray | None, eps: float) -> np.ndarray:
    """LayerNorm over the last axis, computed in float64."""
    xd = x.astype(np.float64)
    mean = xd.mean(-1, keepdims=True)
    var = ((xd - mean) ** 2).mean(-1, keepdims=True)
    y = (xd - mean) / np.sqrt(var + eps) * gamma
    if beta is not None:
        y = y + beta
    return y.astype(x.dtype)


def emit_layer_norm(e: Emitter, x: Value, gamma: Value, beta: Value | None, eps: float) -> Value:
    """LayerNorm over the last axis in standard ONNX (LayerNormalization from opset 17)."""
    if e.opset >= 17:
        return e.op("LayerNormalization", [x, gamma, beta], {"axis": -1, "epsilon": float(eps)})
    dt = e.dtype_np(x)
    axes = e.const("axes", [-1], np.int64)
    red = (lambda v: e.op("ReduceMean", [v, axes], {"keepdims": 1})) if e.opset >= 18 else \
        (lambda v: e.op("ReduceMean", [v], {"axes": [-1], "keepdims": 1}))
    d = e.op("Sub", [x, red(x)])
    var = red(e.op("Mul", [d, d]))
    y = e.op("Div", [d, e.op("Sqrt", [e.op("Add", [var, e.const("eps", eps, dt)])])])
    y = e.op("Mul", [y, gamma])
    return e.op("Add", [y, beta]) if beta is not None else y


def _opt(inputs: Sequence[Any], i: int) -> Any:
    return inputs[i] if len(inputs) > i else None


# --- SkipLayerNorm -----------------------------------------------------------

def _skip_ln_ref(inputs: Sequence[np.ndarray | None], attrs: dict[str, Any]) -> list[np.ndarray]:
    x, skip, gamma = inputs[0], inputs[1], inputs[2]
    beta, bias = _opt(inputs, 3), _opt(inputs, 4)
    s = x + skip
    if bias is not None:
        s = s + bias
    s = s.astype(x.dtype)
    return [layer_norm_ref(s, gamma, beta, attrs["epsilon"]), s]


def _skip_ln_shape(node: Node) -> list[Any]:
    x = node.inputs[0]
    t = x.type if x is not None and isinstance(x.type, TensorType) else None
    return [t, t]


def _skip_ln_ort(node: Node, e: Emitter) -> list[Value | None]:
    ins = list(node.inputs) + [None] * (5 - len(node.inputs))
    e.op("SkipLayerNormalization", ins[:5], {"epsilon": float(node.attr("epsilon", 1e-5))},
         domain=MS_DOMAIN, num_outputs=4)
    outs = e.nodes[-1].outputs
    for o in outs[1:3]:
        o.meta[OMITTED] = True  # mean / inv_std_var: exported as "" (not computed)
    if node.outputs[1].num_uses() == 0 and not node.outputs[1].is_graph_output():
        outs[3].meta[OMITTED] = True
    return [outs[0], outs[3]]


def _skip_ln_decompose(node: Node, e: Emitter) -> list[Value | None]:
    x, skip, gamma = node.inputs[0], node.inputs[1], node.inputs[2]
    beta, bias = _opt(node.inputs, 3), _opt(node.inputs, 4)
    s = e.op("Add", [x, skip])
    if bias is not None:
        s = e.op("Add", [s, bias])
    return [emit_layer_norm(e, s, gamma, beta, float(node.attr("epsilon", 1e-5))), s]


SKIP_LAYER_NORM = register_op(OpDef(
    op_type="SkipLayerNorm",
    spec="""graphopt::SkipLayerNorm(X, Skip, Gamma, Beta?, Bias?) -> (Y, Sum)

X, Skip: float [..., H] of the same shape; Gamma, Beta, Bias: float [H].
Attribute epsilon (float, default 1e-5).
Sum = X + Skip (+ Bias); Y = LayerNorm over the last axis of Sum, scaled by Gamma, shifted by Beta.
Sum is the residual stream, an optional second output (leave it unused if not needed).
onnxruntime: com.microsoft SkipLayerNormalization (outputs 0 and 3).
Standard ONNX: Add (+ Add) + LayerNormalization.""",
    attrs={"epsilon": 1e-5},
    reference=_skip_ln_ref,
    shape_rule=_skip_ln_shape,
    to_onnxruntime=_skip_ln_ort,
    decompose=_skip_ln_decompose,
))


# --- EmbedLayerNorm ----------------------------------------------------------

def _embed_ln_ref(inputs: Sequence[np.ndarray | None], attrs: dict[str, Any]) -> list[np.ndarray]:
    ids, seg, word, pos, segw, gamma, beta = (_opt(inputs, i) for i in range(7))
    pos_ids = _opt(inputs, 7)
    if pos_ids is None:
        pos_ids = np.arange(ids.shape[1])[None, :]
    e = word[ids] + pos[pos_ids]
    if seg is not None and segw is not None:
        e = e + segw[seg]
    return [layer_norm_ref(e.astype(word.dtype), gamma, beta, attrs["epsilon"])]


def _embed_ln_shape(node: Node) -> list[Any]:
    ids, word = node.inputs[0], node.inputs[2]
    if ids is None or word is None or ids.shape is None or word.shape is None:
        return [None]
    return [TensorType(word.dtype, tuple(ids.shape) + (word.shape[-1],))]


def _embed_ln_ort(node: Node, e: Emitter) -> list[Value | None]:
    ins = list(node.inputs) + [None] * (8 - len(node.inputs))
    ids, seg, word, pos, segw, gamma, beta, pos_ids = ins[:8]

    def i32(v: Value | None) -> Value | None:
        return None if v is None or v.dtype == DType.INT32 else e.cast_once(v, DType.INT32)

    if beta is None:  # onnxruntime's kernel requires beta
        width = word.shape[-1] if word.shape is not None else None
        if not isinstance(width, int):
            raise UnsupportedError(f"{node.label()}: no Beta and the embedding width is unknown")
        beta = e.const("beta", np.zeros(width, e.dtype_np(word)))
    ort_ins = [i32(ids), i32(seg), word, pos, segw, gamma, beta, None, i32(pos_ids)]
    while ort_ins and ort_ins[-1] is None:
        ort_ins.pop()
    e.op("EmbedLayerNormalization", ort_ins, {"epsilon": float(node.attr("epsilon", 1e-12))},
         domain=MS_DOMAIN, num_outputs=2)
    return [e.nodes[-1].outputs[0]]


def _embed_ln_decompose(node: Node, e: Emitter) -> list[Value | None]:
    ins = list(node.inputs) + [None] * (8 - len(node.inputs))
    ids, seg, word, pos, segw, gamma, beta, pos_ids = ins[:8]
    acc = e.op("Gather", [word, ids])
    if pos_ids is None:
        # positions 0..S-1 taken from the ids' own shape
        shape = e.op("Shape", [ids])
        s = e.op("Gather", [shape, e.const("one", 1, np.int64)], {"axis": 0})
        pos_ids = e.op("Range", [e.const("zero", 0, np.int64), s, e.const("step", 1, np.int64)])
    acc = e.op("Add", [acc, e.op("Gather", [pos, pos_ids])])
    if seg is not None and segw is not None:
        acc = e.op("Add", [acc, e.op("Gather", [segw, seg])])
    return [emit_layer_norm(e, acc, gamma, beta, float(node.attr("epsilon", 1e-12)))]


EMBED_LAYER_NORM = register_op(OpDef(
    op_type="EmbedLayerNorm",
    spec="""graphopt::EmbedLayerNorm(InputIds, SegmentIds?, WordEmb, PosEmb, SegmentEmb?, Gamma, Beta, PositionIds?) -> Y

InputIds, SegmentIds: int [B, S]; WordEmb [V, H], PosEmb [P, H], SegmentEmb [T, H]: float tables;
Gamma, Beta: float [H]; PositionIds: int [B or 1, S], default arange(S).
Attribute epsilon (float, default 1e-12).
Y = LayerNorm(WordEmb[InputIds] + PosEmb[PositionIds] + SegmentEmb[SegmentIds]) over the last axis: [B, S, H].
onnxruntime: com.microsoft EmbedLayerNormalization (ids cast to int32).
Standard ONNX: Gather + Add + LayerNormalization.""",
    attrs={"epsilon": 1e-12},
    reference=_embed_ln_ref,
    shape_rule=_embed_ln_shape,
    to_onnxruntime=_embed_ln_ort,
    decompose=_embed_ln_decompose,
))
