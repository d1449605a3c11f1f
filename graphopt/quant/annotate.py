"""Annotators: per op type, which inputs to quantize and with which spec (PT2E-style).

An annotator only *describes*; it returns ``{input_index: QuantSpec}`` and the
annotate pass stores it in ``node.meta[QUANT_INPUTS]``. Insert-qdq then
materialises it. Register a new op with ``@register_annotator("OpType")``.

>>> sorted(ANNOTATORS)[:3]
['Conv', 'Gather', 'Gemm']
"""

from __future__ import annotations

from collections.abc import Callable

from ..ir import Node, Value
from .config import NodePlan, QuantConfig
from .specs import QType, QuantSpec

__all__ = ["ANNOTATORS", "register_annotator", "annotate_node", "is_weight"]

Annotator = Callable[[Node, NodePlan, QuantConfig], "dict[int, QuantSpec]"]
ANNOTATORS: dict[str, Annotator] = {}


def register_annotator(*ops: str) -> Callable[[Annotator], Annotator]:
    """Decorator: ``@register_annotator("MatMul")`` (``domain::Op`` for non-ONNX domains)."""
    def deco(fn: Annotator) -> Annotator:
        for op in ops:
            ANNOTATORS[op] = fn
        return fn
    return deco


def is_weight(v: Value | None) -> bool:
    """A constant tensor (initializer) that can be quantized offline."""
    return v is not None and v.const is not None and v.const.dtype.kind == "f"


def _is_float_act(v: Value | None) -> bool:
    if v is None or v.const is not None:
        return False
    return v.dtype is None or v.dtype.is_float


def _weight_spec(plan: NodePlan, w: Value, axis: int) -> QuantSpec:
    spec = plan.weight
    return spec.with_(axis=axis % w.const.ndim) if spec.per_channel else spec.with_(axis=None)


@register_annotator("MatMul")
def _matmul(node: Node, plan: NodePlan, cfg: QuantConfig) -> dict[int, QuantSpec]:
    a, b = node.inputs[0], node.inputs[1]
    if _is_float_act(a) and is_weight(b) and b.const.ndim >= 2:
        return {0: plan.activation, 1: _weight_spec(plan, b, -1)}
    if _is_float_act(a) and _is_float_act(b) and cfg.attention_precision(node) == "int8":
        return {0: plan.activation, 1: plan.activation}
    return {}


@register_annotator("Gemm")
def _gemm(node: Node, plan: NodePlan, cfg: QuantConfig) -> dict[int, QuantSpec]:
    a, b = node.inputs[0], node.inputs[1]
    if node.attr("transA", 0) or not (_is_float_act(a) and is_weight(b)):
        return {}
    return {0: plan.activation, 1: _weight_spec(plan, b, 0 if node.attr("transB", 0) else 1)}


@register_annotator("Conv")
def _conv(node: Node, plan: NodePlan, cfg: QuantConfig) -> dict[int, QuantSpec]:
    x, w = node.inputs[0], node.inputs[1]
    if not (_is_float_act(x) and is_weight(w)):
        return {}
    return {0: plan.activation, 1: _weight_spec(plan, w, 0)}


@register_annotator("graphopt::FusedLinear", "graphopt::Linear")
def _fused_linear(node: Node, plan: NodePlan, cfg: QuantConfig) -> dict[int, QuantSpec]:
    # graphopt's fused linear: (x, W[K,N], bias?) -> x @ W + bias, like MatMul+Add
    x, w = node.inputs[0], node.inputs[1] if len(node.inputs) > 1 else None
    if not (_is_float_act(x) and is_weight(w)):
        return {}
    axis = 0 if node.attr("transB", 0) else -1
    return {0: plan.activation, 1: _weight_spec(plan, w, axis)}


@register_annotator("graphopt::MultiHeadAttention")
def _mha(node: Node, plan: NodePlan, cfg: QuantConfig) -> dict[int, QuantSpec]:
    # the fused QKV projection x @ W[K, 3H]: quantized like a MatMul; attention itself stays float
    x, w = node.inputs[0], node.inputs[1] if len(node.inputs) > 1 else None
    if not (_is_float_act(x) and is_weight(w) and w.const.ndim == 2):
        return {}
    return {0: plan.activation, 1: _weight_spec(plan, w, -1)}


@register_annotator("Gather")
def _gather(node: Node, plan: NodePlan, cfg: QuantConfig) -> dict[int, QuantSpec]:
    # embedding tables: weight-only, one scale per row (rows are what Gather picks)
    table = node.inputs[0]
    if not (cfg.embeddings and is_weight(table) and table.const.ndim == 2 and node.attr("axis", 0) == 0):
        return {}
    return {0: QuantSpec(QType.S8, symmetric=True, per_channel=True, axis=0)}


def annotate_node(node: Node, cfg: QuantConfig) -> tuple[NodePlan, dict[int, QuantSpec]]:
    """The node's plan and the inputs to quantize (empty when the node stays float)."""
    plan = cfg.plan(node)
    fn = ANNOTATORS.get(node.op) or (ANNOTATORS.get(node.op_type) if not node.domain else None)
    if plan.precision != "int8" or fn is None:
        return plan, {}
    return plan, fn(node, plan, cfg)
