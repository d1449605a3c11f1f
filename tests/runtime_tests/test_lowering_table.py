"""The lowering table: one builder per (domain, op type, precision); GEMM builders get the precision."""

from __future__ import annotations

import functools

import numpy as np
from onnx import TensorProto, helper, numpy_helper

import graphopt
from graphopt.runtime.lower import PRECISIONS
from graphopt.runtime.lowering_table import LOWERING


def test_every_op_has_a_builder_at_every_precision():
    ops = {(d, op) for d, op, _ in LOWERING}
    assert all((d, op, p) in LOWERING for d, op in ops for p in PRECISIONS)
    assert {p for _, _, p in LOWERING} == set(PRECISIONS)


def test_gemm_builders_are_bound_to_their_precision():
    for op in (("", "MatMul"), ("", "Gemm"), ("", "Conv"), ("graphopt", "Linear"), ("graphopt", "MultiHeadAttention"),
               ("graphopt", "FusedConv"), ("graphopt", "EmbedLayerNorm")):
        for p in PRECISIONS:
            b = LOWERING[(*op, p)]
            assert isinstance(b, functools.partial) and b.keywords == {"prec": p}, (op, p)


def test_the_decided_precision_picks_the_builder():
    """node_precision -> decide-precision -> the node's decision selects the table row."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((16, 8)).astype(np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "t",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    for p, mode in (("fp32", 0), ("bf16", 1), ("int8", 2)):
        sess = graphopt.compile(m, precision="fp32", node_precision={"mm": p})
        assert [(st.kind, st.iattrs["mode"]) for st in sess._steps] == [("Linear", mode)]
