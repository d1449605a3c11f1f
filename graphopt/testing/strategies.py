"""Hypothesis strategies that build random *valid* small graphs.

>>> from hypothesis import given
>>> @given(graphs())
... def test_verifies(model):
...     model.verify()
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from ..ir import DType, Graph, Model, Node, TensorType

__all__ = ["graphs", "ELEMENTWISE_BINARY", "ELEMENTWISE_UNARY"]

ELEMENTWISE_BINARY = ("Add", "Sub", "Mul", "Max", "Min")
ELEMENTWISE_UNARY = ("Relu", "Neg", "Abs", "Sigmoid", "Tanh", "Identity")


@st.composite
def graphs(draw: st.DrawFn, max_nodes: int = 8, ops: tuple[str, ...] = ELEMENTWISE_BINARY + ELEMENTWISE_UNARY,
           allow_transpose: bool = True) -> Model:
    """A random DAG of element-wise ops over one [2,3] fp32 input, with constant
    operands that broadcast ([3], [1,3], scalars), occasional Transpose pairs and
    shared intermediates (values with several consumers)."""
    g = Graph("random")
    x = g.add_input("x", TensorType(DType.FLOAT, (2, 3)))
    pool = [x]
    n_nodes = draw(st.integers(1, max_nodes))
    for i in range(n_nodes):
        op = draw(st.sampled_from(ops + (("Transpose",) if allow_transpose else ())))
        a = draw(st.sampled_from(pool))
        if op == "Transpose":
            t = g.append(Node("Transpose", [a], {"perm": [1, 0]}, name=f"t{i}"))
            back = g.append(Node("Transpose", [t.output], {"perm": [1, 0]}, name=f"t{i}b"))
            pool.append(back.output)
            continue
        if op in ELEMENTWISE_BINARY:
            if draw(st.booleans()) and len(pool) > 1:
                b = draw(st.sampled_from(pool))
            else:
                shape = draw(st.sampled_from([(3,), (1, 3), (), (2, 3)]))
                vals = draw(st.lists(st.floats(-4, 4, allow_nan=False, width=32), min_size=int(np.prod(shape)),
                                     max_size=int(np.prod(shape))))
                b = g.add_initializer(g.unique_name(f"c{i}"), np.array(vals, np.float32).reshape(shape))
            node = g.append(Node(op, [a, b], name=f"n{i}"))
        else:
            node = g.append(Node(op, [a], name=f"n{i}"))
        node.output.type = TensorType(DType.FLOAT, (2, 3))
        pool.append(node.output)
    outs = [pool[-1]]
    if draw(st.booleans()) and len(pool) > 2:
        extra = draw(st.sampled_from(pool[1:-1]))
        if extra is not outs[0]:
            outs.append(extra)
    g.outputs = outs
    return Model(g, opset_imports={"": 17})
