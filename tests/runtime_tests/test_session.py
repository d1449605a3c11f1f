"""Native runtime on small graphs: numerics vs onnxruntime, input validation, dynamic shapes, fallbacks."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import graphopt
from graphopt.errors import GraphoptError, UnsupportedError
from graphopt.runtime import InputError

F = TensorProto.FLOAT


def _model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "t", inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def _ort(m, feeds):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feeds)


def _mlp(k=48, n=40):
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32) * 0.2, "w")
    b = numpy_helper.from_array(rng.standard_normal(n).astype(np.float32), "b")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["hb"]),
             helper.make_node("Relu", ["hb"], ["y"])]
    return _model(nodes, [helper.make_tensor_value_info("x", F, ["batch", "seq", k])],
                  [helper.make_tensor_value_info("y", F, None)], [w, b])


@pytest.mark.parametrize("precision,tol", [("fp32", 1e-5), ("bf16", 3e-2), ("int8", 5e-2)])
def test_linear_relu_fused_and_close(precision, tol):
    m = _mlp()
    x = np.random.default_rng(1).standard_normal((2, 5, 48)).astype(np.float32)
    want = _ort(m, {"x": x})[0]
    for level, kinds in (("O2", ["Linear"]), ("O0", ["Linear", "Add", "Relu"])):
        sess = graphopt.compile(m, precision=precision, level=level)
        got = sess.run({"x": x})[0]
        assert np.abs(got - want).max() <= tol * np.abs(want).max()
        # O2 fuses MatMul + Add + Relu into one Linear (a GEMM with a bias/ReLU epilogue); the
        # lowering maps node to step one-to-one, so O0 keeps the three
        assert [r[0] for r in sess.summary().rows] == kinds
        assert sess.fallbacks == []


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "Max", "Min", "Pow"])
@pytest.mark.parametrize("sa,sb", [((2, 3, 4), (2, 3, 4)), ((2, 3, 4), (4,)), ((2, 1, 4), (3, 1)), ((), (2, 3)),
                                   ((1, 3, 1), (2, 1, 5))])
def test_broadcast_binary(op, sa, sb):
    rng = np.random.default_rng(2)
    a = np.asarray(rng.random(sa) + 0.5, dtype=np.float32)
    b = np.asarray(rng.random(sb) + 0.5, dtype=np.float32)
    m = _model([helper.make_node(op, ["a", "b"], ["y"])],
               [helper.make_tensor_value_info("a", F, list(sa)), helper.make_tensor_value_info("b", F, list(sb))],
               [helper.make_tensor_value_info("y", F, None)])
    got = graphopt.compile(m, level="O0").run({"a": a, "b": b})[0]
    np.testing.assert_allclose(got, _ort(m, {"a": a, "b": b})[0], rtol=1e-6)


def test_shape_chain_and_views():
    # Shape -> Gather -> Unsqueeze -> Concat -> Reshape, Transpose, Slice, Where, Cast, ReduceMean, Softmax
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "i0"], ["b"], axis=0),
        helper.make_node("Unsqueeze", ["b", "ax0"], ["bu"]),
        helper.make_node("Concat", ["bu", "m1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["r"]),
        helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 1]),
        helper.make_node("Slice", ["t", "st", "en", "ax1"], ["sl"]),
        helper.make_node("Greater", ["sl", "zero"], ["gt"]),
        helper.make_node("Where", ["gt", "sl", "zero"], ["w"]),
        helper.make_node("Cast", ["gt"], ["c"], to=TensorProto.INT64),
        helper.make_node("ReduceMean", ["w"], ["rm"], axes=[-1], keepdims=1),
        helper.make_node("Softmax", ["w"], ["sm"], axis=-1),
    ]
    inits = [numpy_helper.from_array(np.array(0, np.int64), "i0"), numpy_helper.from_array(np.array([0], np.int64), "ax0"),
             numpy_helper.from_array(np.array([-1], np.int64), "m1"), numpy_helper.from_array(np.array([1], np.int64), "st"),
             numpy_helper.from_array(np.array([3], np.int64), "en"), numpy_helper.from_array(np.array([1], np.int64), "ax1"),
             numpy_helper.from_array(np.array(0.0, np.float32), "zero")]
    outs = [helper.make_tensor_value_info(n, t, None) for n, t in
            [("r", F), ("c", TensorProto.INT64), ("rm", F), ("sm", F)]]
    m = _model(nodes, [helper.make_tensor_value_info("x", F, ["b", 4, 6])], outs, inits, opset=13)
    sess = graphopt.compile(m, level="O0")
    assert sess.fallbacks == []
    for bsz in (1, 3):
        x = np.random.default_rng(bsz).standard_normal((bsz, 4, 6)).astype(np.float32)
        for g, w in zip(sess.run({"x": x}), _ort(m, {"x": x})):
            assert g.dtype == w.dtype and g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7)


def test_dynamic_shapes_replan_per_signature():
    m = _mlp()
    sess = graphopt.compile(m, level="O0")
    for b, s in [(1, 3), (4, 7), (1, 3)]:
        x = np.ones((b, s, 48), np.float32)
        assert sess.run({"x": x})[0].shape == (b, s, 40)
    sigs = sess.summary().peak_by_signature
    assert len(sigs) == 2


def test_input_validation():
    sess = graphopt.compile(_mlp(), level="O0")
    x = np.zeros((1, 2, 48), np.float32)
    with pytest.raises(InputError, match="unknown input name"):
        sess.run({"x": x, "extra": x})
    with pytest.raises(InputError, match="missing input"):
        sess.run({})
    with pytest.raises(InputError, match="expected dtype float32, got float64"):
        sess.run({"x": x.astype(np.float64)})
    with pytest.raises(InputError, match="expected rank 3"):
        sess.run({"x": x[0]})
    with pytest.raises(InputError, match="dim 2 must be 48"):
        sess.run({"x": np.zeros((1, 2, 47), np.float32)})
    assert issubclass(InputError, GraphoptError)


def test_symbolic_dims_must_agree():
    m = _model([helper.make_node("Add", ["a", "b"], ["y"])],
               [helper.make_tensor_value_info("a", F, ["n", 2]), helper.make_tensor_value_info("b", F, ["n", 2])],
               [helper.make_tensor_value_info("y", F, None)])
    sess = graphopt.compile(m, level="O0")
    with pytest.raises(InputError, match="'n'"):
        sess.run({"a": np.zeros((2, 2), np.float32), "b": np.zeros((3, 2), np.float32)})


def test_rare_op_falls_back_and_is_reported():
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Selu", ["r"], ["c"]),
             helper.make_node("Neg", ["c"], ["y"])]
    m = _model(nodes, [helper.make_tensor_value_info("x", F, [2, 5])], [helper.make_tensor_value_info("y", F, None)])
    x = np.random.default_rng(3).standard_normal((2, 5)).astype(np.float32)
    sess = graphopt.compile(m, level="O0")
    np.testing.assert_allclose(sess.run({"x": x})[0], _ort(m, {"x": x})[0], rtol=1e-6)
    summ = sess.summary()
    assert len(summ.fallbacks) == 1 and "Selu" in summ.fallbacks[0]
    assert "fallback nodes: 1" in str(summ)


def test_bad_arguments():
    with pytest.raises(UnsupportedError, match="precision"):
        graphopt.compile(_mlp(), precision="fp8")
    with pytest.raises(GraphoptError, match="num_threads"):
        graphopt.compile(_mlp(), num_threads=0)


def test_threads_and_summary():
    m = _mlp()
    x = np.random.default_rng(4).standard_normal((3, 9, 48)).astype(np.float32)
    a = graphopt.compile(m, level="O0", num_threads=1).run({"x": x})[0]
    sess = graphopt.compile(m, level="O0")
    b = sess.run({"x": x})[0]
    np.testing.assert_allclose(a, b, rtol=1e-6)
    s = sess.summary()
    assert s.peak_arena_bytes >= 0 and s.packed_bytes >= 48 * 40 * 4
    assert "arena peak" in str(s) and "Linear" in str(s)


def test_qdq_matmul_becomes_static_int8_linear():
    # x -> Q/DQ (static scale) -> MatMul(DQ(int8 W, per-channel)) + bias: one int8 Linear, no Q/DQ steps.
    rng = np.random.default_rng(5)
    k, n = 32, 24
    w = rng.standard_normal((k, n)).astype(np.float32)
    ws = (np.abs(w).max(0) / 127).astype(np.float32)
    wq = np.clip(np.rint(w / ws), -127, 127).astype(np.int8)
    inits = [numpy_helper.from_array(wq, "wq"), numpy_helper.from_array(ws, "ws"),
             numpy_helper.from_array(np.zeros(n, np.int8), "wz"), numpy_helper.from_array(np.array(0.02, np.float32), "xs"),
             numpy_helper.from_array(np.array(128, np.uint8), "xz"), numpy_helper.from_array(rng.standard_normal(n).astype(np.float32), "b")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=1),
             helper.make_node("MatMul", ["xd", "wd"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])]
    m = _model(nodes, [helper.make_tensor_value_info("x", F, ["n", k])], [helper.make_tensor_value_info("y", F, None)],
               inits, opset=13)
    x = rng.standard_normal((7, k)).astype(np.float32)
    want = _ort(m, {"x": x})[0]
    sess = graphopt.compile(m, precision="int8")  # absorb-qdq, then fuse-matmul-add takes the bias
    assert [r[0] for r in sess.summary().rows] == ["Linear"]
    np.testing.assert_allclose(sess.run({"x": x})[0], want, rtol=1e-4, atol=1e-4)
    sess = graphopt.compile(m, precision="int8", level="O0")  # no passes: the GEMM reads the Q/DQ itself
    assert [r[0] for r in sess.summary().rows] == ["Linear", "Add"]
    np.testing.assert_allclose(sess.run({"x": x})[0], want, rtol=1e-4, atol=1e-4)
    # fp32 precision keeps the fake-quant semantics of the QDQ graph
    np.testing.assert_allclose(graphopt.compile(m, level="O0").run({"x": x})[0], want, rtol=1e-4, atol=1e-4)


def test_concurrent_runs_from_python_threads():
    from concurrent.futures import ThreadPoolExecutor

    m = _mlp(k=64, n=96)
    sess_a = graphopt.compile(m, level="O0", num_threads=2)
    sess_b = graphopt.compile(m, precision="bf16", level="O0", num_threads=2)
    x = np.random.default_rng(6).standard_normal((4, 33, 64)).astype(np.float32)
    want_a, want_b = sess_a.run({"x": x})[0], sess_b.run({"x": x})[0]
    with ThreadPoolExecutor(4) as ex:
        futs = [ex.submit((sess_a if i % 2 == 0 else sess_b).run, {"x": x}) for i in range(16)]
        for i, f in enumerate(futs):
            np.testing.assert_array_equal(f.result()[0], want_a if i % 2 == 0 else want_b)
