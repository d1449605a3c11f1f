"""Small IR-building helpers shared by the quantization passes."""

from __future__ import annotations

import numpy as np

from ..ir import DType, Graph, Node, TensorType, Value

__all__ = ["const", "add_node", "float_type"]


def const(g: Graph, base: str, arr: np.ndarray) -> Value:
    """A new initializer with a unique name derived from ``base``."""
    return g.add_initializer(g.unique_name(base), np.asarray(arr))


def add_node(g: Graph, before: Node, op: str, inputs: list[Value | None], attrs: dict | None = None, *,
             domain: str = "", name: str = "", out_name: str = "", num_outputs: int = 1,
             out_type: TensorType | None = None) -> Node:
    """Create ``op`` and insert it before ``before`` (outputs get unique names)."""
    outs = [Value(g.unique_name(f"{out_name or name or op}{'' if i == 0 else f'_{i}'}")) for i in range(num_outputs)]
    n = Node(op, inputs, attrs or {}, domain=domain, outputs=outs, name=g.unique_name(name) if name else "")
    if out_type is not None:
        outs[0].type = out_type
    g.insert_before(before, n)
    return n


def float_type(v: Value, dtype: DType = DType.FLOAT) -> TensorType:
    return TensorType(dtype, v.shape)
