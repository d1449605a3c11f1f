"""Property tests on random valid graphs: the verifier accepts them, and the
ONNX round trip is structurally and numerically exact."""

import numpy as np
from hypothesis import given

import graphopt
from graphopt.testing.asserts import assert_graph_equal, assert_numerically_close, structural_signature
from graphopt.testing.strategies import graphs


@given(graphs())
def test_random_graphs_verify(model):
    model.verify()
    assert len(structural_signature(model)) == len(model.graph) + 1


@given(graphs())
def test_onnx_roundtrip_is_structurally_equal(model):
    back = graphopt.from_onnx(graphopt.to_onnx(model))
    back.verify()
    assert_graph_equal(back, model)


@given(graphs(max_nodes=5))
def test_onnx_roundtrip_is_numerically_exact(model):
    back = graphopt.from_onnx(graphopt.to_onnx(model))
    x = np.linspace(-3, 3, 6, dtype=np.float32).reshape(2, 3)
    assert_numerically_close(model, back, {"x": x}, rtol=0, atol=0)


@given(graphs())
def test_sort_is_stable_on_ordered_graphs(model):
    before = [n.name for n in model.graph]
    model.graph.sort()
    assert [n.name for n in model.graph] == before


def test_assert_graph_equal_reports_a_difference():
    import pytest

    from graphopt.ir import DType, Graph, Node, TensorType

    def build(op):
        g = Graph("g")
        x = g.add_input("x", TensorType(DType.FLOAT, (2,)))
        g.outputs = [g.append(Node(op, [x])).output]
        return g

    assert_graph_equal(build("Relu"), build("Relu"))
    with pytest.raises(AssertionError, match="Neg"):
        assert_graph_equal(build("Neg"), build("Relu"))
