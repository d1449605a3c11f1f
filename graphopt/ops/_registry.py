"""The op-definition record, the registry, and the small emitter used by lowerings.

An :class:`OpDef` carries everything graphopt knows about one fused op of the
``graphopt`` domain: its written spec (the class docstring), a numpy reference,
a shape rule, a lowering to onnxruntime and a decomposition to standard ONNX.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import UnsupportedError
from ..io import register_shape_rule
from ..ir import NODE_PROPS, Graph, Model, Node, Value, ValueType  # noqa: F401  (ValueType: in annotations)

__all__ = ["DOMAIN", "OpDef", "OPS", "register_op", "Emitter", "get_op", "opset_of"]

logger = logging.getLogger(__name__)

from ..ir.domains import GRAPHOPT_DOMAIN as DOMAIN, opset_of  # noqa: E402,F401 - one home
from ..ir.domains import MS_DOMAIN  # noqa: E402,F401

Reference = Callable[[Sequence["np.ndarray | None"], dict[str, Any]], list[np.ndarray]]
ShapeRule = Callable[[Node], "list[ValueType | None]"]
Lowering = Callable[[Node, "Emitter"], "list[Value | None]"]


@dataclass(frozen=True)
class OpDef:
    """One ``graphopt`` op: ``spec`` (text), ``reference`` (numpy), ``shape_rule``,
    ``to_onnxruntime`` (contrib/standard ops) and ``decompose`` (standard ONNX only).

    ``to_onnxruntime`` and ``decompose`` get the fused node and an :class:`Emitter`
    placed before it, and return one replacement Value per output (``None`` for an
    output that cannot be produced; it must then be unused).
    """

    op_type: str
    spec: str
    attrs: dict[str, Any]  # attribute name -> default (None: required)
    reference: Reference
    shape_rule: ShapeRule
    to_onnxruntime: Lowering
    decompose: Lowering

    def attributes(self, node: Node) -> dict[str, Any]:
        """The node's attributes with defaults filled in; raises on a missing required one."""
        out: dict[str, Any] = {}
        for k, default in self.attrs.items():
            v = node.attr(k, default)
            if v is None:
                raise UnsupportedError(f"{node.label()}: required attribute '{k}' is missing")
            out[k] = v.decode() if isinstance(v, bytes) else v
        unknown = set(node.attrs) - set(self.attrs)
        if unknown:
            raise UnsupportedError(f"{node.label()}: unknown attribute(s) {sorted(unknown)} for {DOMAIN}::{self.op_type}")
        return out


OPS: dict[str, OpDef] = {}

_LOWERED = "graphopt.ops.lowered"  # node meta flag: created by a lowering (see Emitter.cast_once)


def register_op(op: OpDef) -> OpDef:
    """Add ``op`` to :data:`OPS` and register its shape rule with graphopt.io."""
    OPS[op.op_type] = op
    register_shape_rule(DOMAIN, op.op_type)(op.shape_rule)
    return op


def get_op(node_or_type: Node | str) -> OpDef:
    """The OpDef of a ``graphopt`` node (or op type); UnsupportedError if unknown."""
    if isinstance(node_or_type, Node):
        if node_or_type.domain != DOMAIN:
            raise UnsupportedError(f"{node_or_type.label()} is not a {DOMAIN} op")
        op_type = node_or_type.op_type
    else:
        op_type = node_or_type
    try:
        return OPS[op_type]
    except KeyError:
        where = node_or_type.label() if isinstance(node_or_type, Node) else op_type
        raise UnsupportedError(f"{where}: unknown {DOMAIN} op (known: {sorted(OPS)})") from None


class Emitter:
    """Creates nodes and initializers right before ``anchor`` (the node being replaced).

    >>> e = Emitter(graph, fused_node, opset=17)          # doctest: +SKIP
    >>> y = e.op("MatMul", [x, w])                         # doctest: +SKIP
    >>> c = e.const("half", np.float32(0.5))              # doctest: +SKIP
    """

    def __init__(self, graph: Graph, anchor: Node, *, opset: int = 17) -> None:
        self.graph = graph
        self.anchor = anchor
        self.opset = opset
        self.nodes: list[Node] = []

    def op(self, op_type: str, inputs: Sequence[Value | None], attrs: dict[str, Any] | None = None, *,
           domain: str = "", num_outputs: int = 1) -> Value:
        """Insert one node; returns its first output (all outputs: ``self.nodes[-1].outputs``)."""
        base = self.anchor.name or op_type
        # node names must be unique for onnxruntime; unique_name draws from the graph's name pool
        n = Node(op_type, list(inputs), attrs or {}, domain=domain, num_outputs=num_outputs,
                 name=self.graph.unique_name(f"{base}/{op_type}"))
        props = self.anchor.meta.get(NODE_PROPS)
        if props:  # the fused node's ONNX metadata (e.g. a sparse-kernel mark) carries to what replaces it
            n.meta[NODE_PROPS] = props
        self.graph.insert_before(self.anchor, n)
        self.nodes.append(n)
        return n.outputs[0]

    def cast_once(self, v: Value, to: Any) -> Value:
        """``Cast(v, to)``, shared with an earlier lowering's identical Cast (six attention
        layers read one int32 mask). Only Casts a lowering created, hence placed before an
        earlier anchor, are reused, so the graph stays in topological order."""
        for u in v.consumers():
            if u.op_type == "Cast" and u.domain == "" and u.attr("to") == to.value and u.meta.get(_LOWERED) \
                    and u.graph is self.graph:
                return u.outputs[0]
        out = self.op("Cast", [v], {"to": to.value})
        self.nodes[-1].meta[_LOWERED] = True
        return out

    def const(self, base: str, array: Any, dtype: Any = None) -> Value:
        """A new initializer (name made unique from ``base``)."""
        arr = np.asarray(array, dtype=dtype)
        return self.graph.add_initializer(self.graph.unique_name(f"{self.anchor.name or 'graphopt'}/{base}"), arr)

    def dtype_np(self, v: Value) -> np.dtype:
        """numpy dtype of ``v`` (float32 when unknown), for constants that must match it."""
        dt = v.dtype
        try:
            return dt.numpy if dt is not None and dt.value != 0 else np.dtype(np.float32)
        except TypeError:
            return np.dtype(np.float32)
