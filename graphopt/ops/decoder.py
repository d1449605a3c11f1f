"""Decoder (LLaMA-style) ops: graphopt::RMSNorm, SkipRMSNorm, Silu, SiluMul, RotaryEmbedding."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..io.onnx_import import OMITTED
from ..ir import Node, TensorType, Value
from ._registry import MS_DOMAIN, Emitter, OpDef, register_op

__all__ = ["RMS_NORM", "SKIP_RMS_NORM", "SILU", "SILU_MUL", "ROTARY_EMBEDDING", "rms_norm_ref", "emit_rms_norm",
           "rotate_half_ref"]


def _opt(inputs: Sequence[Any], i: int) -> Any:
    return inputs[i] if len(inputs) > i else None


def _same_type(node: Node) -> list[Any]:
    x = node.inputs[0]
    t = x.type if x is not None and isinstance(x.type, TensorType) else None
    return [t] * len(node.outputs)


def rms_norm_ref(x: np.ndarray, gamma: np.ndarray, eps: float) -> np.ndarray:
    """RMSNorm over the last axis, computed in float64: x / sqrt(mean(x^2) + eps) * gamma."""
    xd = x.astype(np.float64)
    y = xd / np.sqrt((xd * xd).mean(-1, keepdims=True) + eps) * gamma.astype(np.float64)
    return y.astype(x.dtype)


def emit_rms_norm(e: Emitter, x: Value, gamma: Value, eps: float) -> Value:
    """RMSNorm over the last axis in standard ONNX (RMSNormalization from opset 23)."""
    if e.opset >= 23:
        return e.op("RMSNormalization", [x, gamma], {"axis": -1, "epsilon": float(eps)})
    dt = e.dtype_np(x)
    if e.opset >= 18:
        ms = e.op("ReduceMean", [e.op("Mul", [x, x]), e.const("axes", [-1], np.int64)], {"keepdims": 1})
    else:
        ms = e.op("ReduceMean", [e.op("Mul", [x, x])], {"axes": [-1], "keepdims": 1})
    rms = e.op("Sqrt", [e.op("Add", [ms, e.const("eps", eps, dt)])])
    return e.op("Mul", [e.op("Div", [x, rms]), gamma])


# --- RMSNorm -----------------------------------------------------------------

def _rms_ref(inputs: Sequence[np.ndarray | None], attrs: dict[str, Any]) -> list[np.ndarray]:
    return [rms_norm_ref(inputs[0], inputs[1], attrs["epsilon"])]


def _rms_ort(node: Node, e: Emitter) -> list[Value | None]:
    # SimplifiedLayerNormalization: onnxruntime registers it in the default domain (opset 1).
    y = e.op("SimplifiedLayerNormalization", [node.inputs[0], node.inputs[1]],
             {"axis": -1, "epsilon": float(node.attr("epsilon", 1e-6)), "stash_type": 1})
    return [y]


def _rms_decompose(node: Node, e: Emitter) -> list[Value | None]:
    return [emit_rms_norm(e, node.inputs[0], node.inputs[1], float(node.attr("epsilon", 1e-6)))]


RMS_NORM = register_op(OpDef(
    op_type="RMSNorm",
    spec="""graphopt::RMSNorm(X, Gamma) -> Y

X: float [..., H]; Gamma: float [H]. Attribute epsilon (float, default 1e-6).
Y = X / sqrt(mean(X^2 over the last axis) + epsilon) * Gamma, computed in float32 (LLaMA's
RMSNorm; the Cast-to-float32 pairs of transformers' exports are folded into the op when X is float32).
Shape: Y has X's shape and type.
onnxruntime: SimplifiedLayerNormalization (axis -1, stash_type 1).
Standard ONNX: RMSNormalization (opset 23+), else Mul/ReduceMean/Add/Sqrt/Div/Mul.""",
    attrs={"epsilon": 1e-6},
    reference=_rms_ref,
    shape_rule=_same_type,
    to_onnxruntime=_rms_ort,
    decompose=_rms_decompose,
))


# --- SkipRMSNorm -------------------------------------------------------------

def _skip_rms_ref(inputs: Sequence[np.ndarray | None], attrs: dict[str, Any]) -> list[np.ndarray]:
    x, skip, gamma, bias = inputs[0], inputs[1], inputs[2], _opt(inputs, 3)
    s = x + skip
    if bias is not None:
        s = s + bias
    s = s.astype(x.dtype)
    return [rms_norm_ref(s, gamma, attrs["epsilon"]), s]


def _skip_rms_ort(node: Node, e: Emitter) -> list[Value | None]:
    ins = list(node.inputs) + [None] * (4 - len(node.inputs))
    e.op("SkipSimplifiedLayerNormalization", [i for i in ins[:4]] if ins[3] is not None else ins[:3],
         {"epsilon": float(node.attr("epsilon", 1e-6))}, domain=MS_DOMAIN, num_outputs=4)
    outs = e.nodes[-1].outputs
    for o in outs[1:3]:
        o.meta[OMITTED] = True  # mean / inv_std_var: exported as "" (not computed)
    if len(node.outputs) < 2 or (node.outputs[1].num_uses() == 0 and not node.outputs[1].is_graph_output()):
        outs[3].meta[OMITTED] = True
    return [outs[0], outs[3]][:len(node.outputs)]


def _skip_rms_decompose(node: Node, e: Emitter) -> list[Value | None]:
    x, skip, gamma, bias = node.inputs[0], node.inputs[1], node.inputs[2], _opt(node.inputs, 3)
    s = e.op("Add", [x, skip])
    if bias is not None:
        s = e.op("Add", [s, bias])
    return [emit_rms_norm(e, s, gamma, float(node.attr("epsilon", 1e-6))), s][:len(node.outputs)]


SKIP_RMS_NORM = register_op(OpDef(
    op_type="SkipRMSNorm",
    spec="""graphopt::SkipRMSNorm(X, Skip, Gamma, Bias?) -> (Y, Sum?)

X, Skip: float [..., H] of the same shape; Gamma, Bias: float [H]. Attribute epsilon (float, default 1e-6).
Sum = X + Skip (+ Bias); Y = RMSNorm(Sum) scaled by Gamma (see graphopt::RMSNorm).
Sum is the residual stream of a pre-norm decoder, an optional second output (unused when not needed).
Shape: Y and Sum have X's shape and type.
onnxruntime: com.microsoft SkipSimplifiedLayerNormalization (outputs 0 and 3).
Standard ONNX: Add (+ Add) + the RMSNorm decomposition.""",
    attrs={"epsilon": 1e-6},
    reference=_skip_rms_ref,
    shape_rule=_same_type,
    to_onnxruntime=_skip_rms_ort,
    decompose=_skip_rms_decompose,
))


# --- Silu / SiluMul ----------------------------------------------------------

def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


def _silu_ref(inputs: Sequence[np.ndarray | None], attrs: dict[str, Any]) -> list[np.ndarray]:
    x = inputs[0]
    return [(x.astype(np.float64) * _sigmoid(x)).astype(x.dtype)]


def _silu_ort(node: Node, e: Emitter) -> list[Value | None]:
    return [e.op("QuickGelu", [node.inputs[0]], {"alpha": 1.0}, domain=MS_DOMAIN)]  # x * sigmoid(1.0 * x)


def _silu_decompose(node: Node, e: Emitter) -> list[Value | None]:
    x = node.inputs[0]
    return [e.op("Mul", [x, e.op("Sigmoid", [x])])]


SILU = register_op(OpDef(
    op_type="Silu",
    spec="""graphopt::Silu(X) -> Y

X: float tensor. Y = X * Sigmoid(X) (SiLU / Swish-1), elementwise; Y has X's shape and type.
onnxruntime: com.microsoft QuickGelu(alpha=1.0).
Standard ONNX: Sigmoid + Mul.""",
    attrs={},
    reference=_silu_ref,
    shape_rule=_same_type,
    to_onnxruntime=_silu_ort,
    decompose=_silu_decompose,
))


def _silu_mul_ref(inputs: Sequence[np.ndarray | None], attrs: dict[str, Any]) -> list[np.ndarray]:
    x = inputs[0]
    i = x.shape[-1] // 2
    g, u = x[..., :i].astype(np.float64), x[..., i:].astype(np.float64)
    return [(g * _sigmoid(g) * u).astype(x.dtype)]


def _silu_mul_shape(node: Node) -> list[Any]:
    x = node.inputs[0]
    if x is None or not isinstance(x.type, TensorType) or x.shape is None or not x.shape:
        return [None]
    d = x.shape[-1]
    last = d // 2 if isinstance(d, int) else None
    return [TensorType(x.dtype, tuple(x.shape[:-1]) + (last,))]


def _split_halves(e: Emitter, x: Value) -> tuple[Value, Value]:
    """The two equal halves of ``x`` along its last axis (no static size needed)."""
    e.op("Split", [x], {"axis": -1, "num_outputs": 2} if e.opset >= 18 else {"axis": -1}, num_outputs=2)
    lo, hi = e.nodes[-1].outputs
    return lo, hi


def _silu_mul_ort(node: Node, e: Emitter) -> list[Value | None]:
    g, u = _split_halves(e, node.inputs[0])
    return [e.op("Mul", [e.op("QuickGelu", [g], {"alpha": 1.0}, domain=MS_DOMAIN), u])]


def _silu_mul_decompose(node: Node, e: Emitter) -> list[Value | None]:
    g, u = _split_halves(e, node.inputs[0])
    return [e.op("Mul", [e.op("Mul", [g, e.op("Sigmoid", [g])]), u])]


SILU_MUL = register_op(OpDef(
    op_type="SiluMul",
    spec="""graphopt::SiluMul(X) -> Y

X: float [..., 2I], the packed output of a gated MLP's gate and up projections (gate columns first).
Y = Silu(X[..., :I]) * X[..., I:]: float [..., I]. The gated MLP of LLaMA-style decoders,
down(silu(gate(x)) * up(x)), is fused as MatMul(x, [W_gate | W_up]) -> SiluMul -> MatMul(., W_down):
the packed projection stays an ordinary MatMul, so it quantizes and lowers like every other linear.
onnxruntime: Split + com.microsoft QuickGelu(alpha=1) + Mul.
Standard ONNX: Split + Sigmoid + Mul + Mul.""",
    attrs={},
    reference=_silu_mul_ref,
    shape_rule=_silu_mul_shape,
    to_onnxruntime=_silu_mul_ort,
    decompose=_silu_mul_decompose,
))


# --- RotaryEmbedding ---------------------------------------------------------

def rotate_half_ref(x: np.ndarray) -> np.ndarray:
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)


def _rotary_ref(inputs: Sequence[np.ndarray | None], attrs: dict[str, Any]) -> list[np.ndarray]:
    x, cos, sin = inputs[0], inputs[1], inputs[2]
    y = x.astype(np.float64) * cos + rotate_half_ref(x.astype(np.float64)) * sin
    return [y.astype(x.dtype)]


def _rotary_decompose(node: Node, e: Emitter) -> list[Value | None]:
    x, cos, sin = node.inputs[0], node.inputs[1], node.inputs[2]
    x1, x2 = _split_halves(e, x)
    rot = e.op("Concat", [e.op("Neg", [x2]), x1], {"axis": -1})
    return [e.op("Add", [e.op("Mul", [x, cos]), e.op("Mul", [rot, sin])])]


ROTARY_EMBEDDING = register_op(OpDef(
    op_type="RotaryEmbedding",
    spec="""graphopt::RotaryEmbedding(X, Cos, Sin) -> Y

X: float [..., S, D] (D even; LLaMA: Q or K as [B, heads, S, D]); Cos, Sin: float tensors of the
same shape that broadcast to X and end in D (LLaMA: [B or 1, 1, S, D], computed once per model
from the position ids, or folded constants).
Y = X * Cos + rotate_half(X) * Sin, rotate_half(X) = Concat(-X[..., D/2:], X[..., :D/2]) (the
non-interleaved, "rotate_half" form of transformers). Y has X's shape and type.
onnxruntime: the same standard-ONNX decomposition (com.microsoft RotaryEmbedding takes cos/sin caches
indexed by position ids, not per-token tensors).
Standard ONNX: Split + Neg + Concat + Mul + Mul + Add.""",
    attrs={},
    reference=_rotary_ref,
    shape_rule=_same_type,
    to_onnxruntime=_rotary_decompose,
    decompose=_rotary_decompose,
))
