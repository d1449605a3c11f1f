"""The direct depthwise conv (csrc/runtime/ops/depthwise.cpp) and the activation epilogues of
Linear / FusedConv that run as a step after the GEMM (graphopt/runtime/lower_epilogue.py),
against onnxruntime: strides, dilations, pads, auto_pad, channel multipliers, bias or not,
ReLU/ReLU6 inline, other activations as a step; no Python fallback anywhere."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import graphopt

_RNG = np.random.default_rng(1)
F = TensorProto.FLOAT


def _ort(m: onnx.ModelProto, feeds):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feeds)


def _conv_model(C, mult, k, act=None, bias=True, dyn_channels=False, **attrs):
    w = _RNG.standard_normal((C * mult, 1, *k)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w")]
    ins = ["x", "w"]
    if bias:
        inits.append(numpy_helper.from_array(_RNG.standard_normal(C * mult).astype(np.float32), "b"))
        ins.append("b")
    nodes = [helper.make_node("Conv", ins, ["c" if act else "y"], name="dw", group=C, **attrs)]
    if act == "Relu6":
        inits += [numpy_helper.from_array(np.array(0, np.float32), "lo"), numpy_helper.from_array(np.array(6, np.float32), "hi")]
        nodes.append(helper.make_node("Clip", ["c", "lo", "hi"], ["y"]))
    elif act:
        nodes.append(helper.make_node(act, ["c"], ["y"]))
    x = helper.make_tensor_value_info("x", F, ["n", "c" if dyn_channels else C, "h", "w"])
    g = helper.make_graph(nodes, "dw", [x], [helper.make_tensor_value_info("y", F, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("k,attrs", [
    ((3, 3), {"pads": [1, 1, 1, 1]}),
    ((3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 2]}),
    ((5, 5), {"pads": [2, 1, 0, 2], "strides": [2, 1]}),
    ((3, 3), {"dilations": [2, 2], "pads": [2, 2, 2, 2]}),
    ((1, 3), {"auto_pad": "SAME_UPPER", "strides": [1, 2]}),
    ((3, 3), {"auto_pad": "VALID"}),
    ((3, 3), {"auto_pad": "SAME_LOWER", "strides": [3, 3]}),
])
@pytest.mark.parametrize("mult,bias", [(1, True), (2, False)])
def test_depthwise_matches_onnxruntime(k, attrs, mult, bias):
    m = _conv_model(6, mult, k, bias=bias, **attrs)
    x = _RNG.standard_normal((2, 6, 11, 9)).astype(np.float32)
    want = _ort(m, {"x": x})[0]
    for prec in ("fp32", "bf16", "int8"):  # the depthwise loop is fp32 at every precision
        sess = graphopt.compile(m, precision=prec, level="O0")
        assert sess.fallbacks == []
        assert sess.summary().kernel_counts.get("DepthwiseConv") == 1
        np.testing.assert_allclose(sess.run({"x": x})[0], want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("act", ["Relu", "Relu6", "Sigmoid", "Tanh", "HardSigmoid", "LeakyRelu"])
@pytest.mark.parametrize("group", [1, 8])
def test_fused_conv_activations(act, group):
    m = _conv_model(8, 1, (3, 3), act=act, pads=[1, 1, 1, 1])
    if group == 1:  # a dense conv: same activation after the im2col GEMM
        w = _RNG.standard_normal((8, 8, 3, 3)).astype(np.float32)
        m.graph.initializer[0].CopyFrom(numpy_helper.from_array(w, "w"))
        for a in m.graph.node[0].attribute:
            if a.name == "group":
                a.i = 1
    x = _RNG.standard_normal((1, 8, 7, 7)).astype(np.float32)
    want = _ort(m, {"x": x})[0]
    sess = graphopt.compile(m, precision="fp32", level="O2")
    assert sess.fallbacks == []
    np.testing.assert_allclose(sess.run({"x": x})[0], want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("act", ["Tanh", "Sigmoid"])
def test_linear_with_post_activation(act):
    # BERT's pooler: dense + Tanh, fused by O2 into graphopt::Linear(activation=Tanh)
    w = _RNG.standard_normal((16, 12)).astype(np.float32)
    b = _RNG.standard_normal(12).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["a"]),
             helper.make_node(act, ["a"], ["y"])]
    g = helper.make_graph(nodes, "pool", [helper.make_tensor_value_info("x", F, ["n", 16])],
                          [helper.make_tensor_value_info("y", F, None)],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    x = _RNG.standard_normal((3, 16)).astype(np.float32)
    want = _ort(m, {"x": x})[0]
    opt = graphopt.optimize(m, level="O2")
    assert [n.op_type for n in opt.graph] == ["Linear"] and opt.graph.nodes[0].attr("activation") == act
    for prec, tol in (("fp32", 1e-5), ("bf16", 3e-2), ("int8", 5e-2)):
        sess = graphopt.compile(m, precision=prec, level="O2")
        assert sess.fallbacks == []
        np.testing.assert_allclose(sess.run({"x": x})[0], want, rtol=tol, atol=tol)


def test_depthwise_bad_input_names_the_node():
    m = _conv_model(4, 1, (3, 3), dyn_channels=True, pads=[1, 1, 1, 1])
    sess = graphopt.compile(m, level="O0")
    with pytest.raises(Exception) as ei:
        sess.run({"x": np.ones((1, 3, 5, 5), np.float32)})
    assert "dw" in str(ei.value) and "channels" in str(ei.value), str(ei.value)
