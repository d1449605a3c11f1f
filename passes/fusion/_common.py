"""Helpers shared by the fusion rules: the fused-op domain, constant scalars,
activation patterns, and the base class of the fusion passes."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from graphopt.io import infer_shapes
from graphopt.ir import Model, Node, Value
from graphopt.pattern import AnyOf, Const, Optional, P, RewritePass, ValuePattern, const_value
from graphopt.pm import PassContext, PassResult

__all__ = ["GRAPHOPT", "FusionPass", "scalar", "matched_scale", "activation_pattern", "activation_of", "last_dim", "opset_of"]

from graphopt.ir.domains import GRAPHOPT_DOMAIN as GRAPHOPT, opset_of  # noqa: E402 - one home for both


def scalar(arr: np.ndarray | None) -> float | None:
    """The single value of a constant (any shape with one element), else None."""
    if arr is None or arr.size != 1:
        return None
    return float(arr.reshape(-1)[0])


def matched_scale(m: Any) -> float | None:
    """The attention scale of a match binding ``scaled`` (Mul by ``scale`` or Div by ``inv_scale``):
    1.0 without one, None when it is not a positive scalar constant."""
    if "scaled" not in m:
        return 1.0
    node = m.node("scaled")
    s = scalar(m.const("scale")) if node.op_type == "Mul" else scalar(m.const("inv_scale"))
    if s is None or s <= 0:
        return None
    return s if node.op_type == "Mul" else 1.0 / s


def last_dim(v: Value | None) -> Any:
    """The last dimension of ``v`` (int, symbolic name, or None when unknown)."""
    if v is None or v.shape is None or not v.shape:
        return None
    return v.shape[-1]


def activation_pattern(inner: ValuePattern) -> ValuePattern:
    """An activation epilogue applied to ``inner``; the activation node binds as ``act``.

    Clip needs constant bounds (inputs or, before opset 11, attributes).
    """
    return AnyOf(
        P.Relu(inner, bind="act"),
        P.Sigmoid(inner, bind="act"),
        P.Tanh(inner, bind="act"),
        P.LeakyRelu(inner, bind="act"),
        P.HardSigmoid(inner, bind="act"),
        P.Clip(inner, Optional(Const("clip_min")), Optional(Const("clip_max")), bind="act"),
        P.Gelu(inner, bind="act", domain=GRAPHOPT),
    )


def activation_of(node: Node) -> tuple[str, list[float]] | None:
    """``(activation, activation_params)`` of a node matched by :func:`activation_pattern`."""
    op = node.op_type
    if node.domain == GRAPHOPT and op == "Gelu":
        approx = node.attr("approximate", "none")
        approx = approx.decode() if isinstance(approx, bytes) else approx
        return ("FastGelu" if approx == "tanh" else "Gelu"), []
    if op in ("Relu", "Sigmoid", "Tanh"):
        return op, []
    if op == "LeakyRelu":
        return op, [float(node.attr("alpha", 0.01))]
    if op == "HardSigmoid":
        return op, [float(node.attr("alpha", 0.2)), float(node.attr("beta", 0.5))]
    if op == "Clip":
        lo_v = node.inputs[1] if len(node.inputs) > 1 else None
        hi_v = node.inputs[2] if len(node.inputs) > 2 else None
        lo = scalar(const_value(lo_v)) if lo_v is not None else node.attr("min", None)
        hi = scalar(const_value(hi_v)) if hi_v is not None else node.attr("max", None)
        if (lo_v is not None and lo is None) or (hi_v is not None and hi is None):
            return None
        return "Clip", [float(lo) if lo is not None else -3.4028234663852886e38,
                        float(hi) if hi is not None else 3.4028234663852886e38]
    return None


class FusionPass(RewritePass):
    """A RewritePass of the O2 fusion family. ``needs_shapes`` runs shape
    inference first (the checks read ranks and hidden sizes); ``min_opset``
    skips models whose default opset lacks the op the rewrite emits."""

    needs_shapes: ClassVar[bool] = False
    min_opset: ClassVar[int] = 1

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        if opset_of(model) < self.min_opset:
            return PassResult(False, {"skipped_opset_below_%d" % self.min_opset: 1})
        if self.needs_shapes and _untyped(model):
            infer_shapes(model)  # only when something lacks a type: O1 ends typed and rewrites keep types
        return super().run(model, ctx)


def _untyped(model: Model) -> bool:
    """Some used value lacks a type or shape (unused outputs, e.g. SkipLayerNorm's sum, do not count)."""
    return any(o.type is None or getattr(o.type, "shape", 0) is None
               for n in model.graph for o in n.outputs if o.num_uses() or o.is_graph_output())



