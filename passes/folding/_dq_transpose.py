"""Transpose(DequantizeLinear(q, s, zp)) of a constant int weight -> DequantizeLinear(q^T, s, zp).

fold-constants leaves DequantizeLinear of a constant alone (it is how a QDQ graph stores an
int8 weight), so a Transpose after it -- torch's ``nn.Linear`` exported with fake-quant weights
writes ``MatMul(x, Transpose(DQ(W_q)))`` -- would stay a runtime dequantize + transpose of the
weight in front of a float GEMM. Transposing the integer constant instead (the per-channel
axis follows the permutation) is exact and leaves the weight where the int8 GEMM takes it.
"""

from __future__ import annotations

import numpy as np

from graphopt.ir import Graph, Node, Value
from graphopt.pattern import const_value, remove_dead

__all__ = ["transpose_dequantized"]


def transpose_dequantized(g: Graph, n: Node) -> bool:
    """Rewrite ``n`` (a Transpose) when its input is DQ of constants used by nothing else."""
    x = n.inputs[0] if n.inputs else None
    dq = x.producer() if x is not None else None
    if dq is None or dq.op_type != "DequantizeLinear" or dq.domain or int(dq.attr("block_size", 0) or 0):
        return False
    if x.num_uses() != 1 or x.is_graph_output() or dq.inputs[0] is None or dq.inputs[0].num_uses() != 1:
        return False  # another reader of the weight would keep a second copy alive
    if n.outputs[0].is_graph_output():
        return False  # (a graph output keeps its producer's name; not worth it for a weight)
    q = const_value(dq.inputs[0])
    scale = const_value(dq.inputs[1]) if len(dq.inputs) > 1 and dq.inputs[1] is not None else None
    zp_v = dq.inputs[2] if len(dq.inputs) > 2 else None
    if q is None or scale is None or (zp_v is not None and const_value(zp_v) is None) or q.ndim < 1:
        return False
    perm = n.attr("perm")
    perm = list(range(q.ndim - 1, -1, -1)) if perm is None else [int(p) % q.ndim for p in perm]
    if sorted(perm) != list(range(q.ndim)):
        return False
    attrs = dict(dq.attrs)
    if np.size(scale) > 1:  # per-axis scales: the axis moves with the permutation
        axis = int(dq.attr("axis", 1)) % q.ndim
        attrs["axis"] = perm.index(axis)
    new_q = g.add_initializer(g.unique_name(dq.inputs[0].name or "weight_q"), np.ascontiguousarray(q.transpose(perm)))
    out = Value(g.unique_name(n.outputs[0].name or "dequantized"))
    out.type = n.outputs[0].type
    new = Node("DequantizeLinear", [new_q, dq.inputs[1], zp_v] if zp_v is not None else [new_q, dq.inputs[1]],
               attrs, outputs=[out], name=g.unique_name(dq.name) if dq.name else "")
    g.insert_before(n, new)
    n.outputs[0].replace_all_uses_with(out)
    remove_dead(g, [n])
    return True
