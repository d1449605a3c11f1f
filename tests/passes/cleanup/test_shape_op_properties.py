"""Hypothesis: random chains of shape ops (Reshape with 0/-1, Transpose, Squeeze,
Unsqueeze, Flatten, Expand, Pad, Cast, Identity, Concat of one) through O1
give exactly onnxruntime's outputs, verify after every pass, and are
idempotent."""

import numpy as np
from hypothesis import given, note, settings
from hypothesis import strategies as st

from graphopt.ir import DType, Graph, Model, Node, TensorType
from graphopt.ir.clone import clone
from graphopt.pattern.testing import run_ort
from graphopt.pm import CheckUnmodified, PassManager


def _i64(g: Graph, vals) -> object:
    return g.add_initializer(g.unique_name("c"), np.array(vals, np.int64))


@st.composite
def shape_chains(draw, max_ops: int = 8):
    g = Graph("chain")
    x = g.add_input("x", TensorType(DType.FLOAT, (2, 3, 4)))
    cur, shape = x, [2, 3, 4]
    outs = []
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(st.sampled_from(["Identity", "Cast", "Reshape", "Transpose", "Unsqueeze", "Squeeze", "Flatten",
                                   "Expand", "Pad", "Concat", "Relu", "CastRoundTrip"]))
        attrs: dict = {}
        ins = [cur]
        new_shape = list(shape)
        if op == "Cast":
            attrs = {"to": DType.FLOAT.value}
        elif op == "CastRoundTrip":
            d = g.append(Node("Cast", [cur], {"to": DType.DOUBLE.value}))
            d.output.type = TensorType(DType.DOUBLE, tuple(shape))
            op, ins, attrs = "Cast", [d.output], {"to": DType.FLOAT.value}
        elif op == "Reshape":
            n = int(np.prod(shape))
            cands = [s for s in ([n], [1, n], [2, n // 2], [n // 4, 4], list(shape), list(reversed(shape)),
                                 [*shape, 1], [1, *shape]) if int(np.prod(s)) == n]
            tgt = list(draw(st.sampled_from(cands)))
            new_shape = list(tgt)
            spec = list(tgt)
            if draw(st.booleans()):
                spec[draw(st.integers(0, len(spec) - 1))] = -1
            for i in range(min(len(spec), len(shape))):
                if spec[i] != -1 and spec[i] == shape[i] and draw(st.booleans()):
                    spec[i] = 0  # copy the input dim
            ins = [cur, _i64(g, spec)]
        elif op == "Transpose":
            perm = draw(st.permutations(range(len(shape))))
            attrs = {"perm": list(perm)}
            new_shape = [shape[p] for p in perm]
        elif op == "Unsqueeze":
            ax = draw(st.integers(0, len(shape)))
            ins = [cur, _i64(g, [ax])]
            new_shape = shape[:ax] + [1] + shape[ax:]
        elif op == "Squeeze":
            ones = [i for i, d in enumerate(shape) if d == 1]
            if ones and draw(st.booleans()):
                ax = draw(st.sampled_from(ones))
                ins = [cur, _i64(g, [ax])]
                new_shape = shape[:ax] + shape[ax + 1:]
            else:
                new_shape = [d for d in shape if d != 1]
        elif op == "Flatten":
            ax = draw(st.integers(0, len(shape)))
            attrs = {"axis": ax}
            new_shape = [int(np.prod(shape[:ax])), int(np.prod(shape[ax:]))]
        elif op == "Expand":
            tgt = [d if draw(st.booleans()) else 1 for d in shape]
            if shape and shape[0] == 1 and draw(st.booleans()):
                tgt[0] = 2
                new_shape[0] = 2
            ins = [cur, _i64(g, tgt)]
        elif op == "Concat":
            attrs = {"axis": 0}
        elif op == "Pad":
            pads = [draw(st.sampled_from([0, 0, 0, 1])) for _ in range(2 * len(shape))]
            ins = [cur, _i64(g, pads)]
            new_shape = [d + pads[i] + pads[i + len(shape)] for i, d in enumerate(shape)]
        node = g.append(Node(op, ins, attrs))
        node.output.type = TensorType(DType.FLOAT, tuple(new_shape))
        cur, shape = node.output, new_shape
        if draw(st.integers(0, 5)) == 0:
            outs.append(cur)
    if not outs or outs[-1] is not cur:
        outs.append(cur)
    g.outputs = outs
    return Model(g, opset_imports={"": 17})


X = {"x": np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 7.5}


@settings(max_examples=40, deadline=None)
@given(shape_chains())
def test_o1_on_shape_op_chains(model):
    original = clone(model, copy_constants=True)
    note(str(original))
    want = run_ort(original, X)
    PassManager.from_text("O1", verify_each=True, instruments=[CheckUnmodified()])(model)
    got = run_ort(model, X)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    assert not PassManager.from_text("O1")(model).modified
    assert [v.name for v in model.graph.outputs] == [v.name for v in original.graph.outputs]
