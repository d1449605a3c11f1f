import numpy as np
import pytest
from fusion_testlib import assert_not_fused, f32, fuse, load, run_pass
from graphopt.ir.clone import clone
from graphopt.ops import lower_to_onnxruntime
from graphopt.passes.fusion.fuse_linear_epilogue import LinearBiasGelu
from graphopt.testing.asserts import assert_op_counts

HEAD = '<ir_version: 8, opset_import: ["" : 17, "graphopt" : 1]>\n'


def _gelu(approx="none", bias="16"):
    return (HEAD + "g (float[2, 3, 8] x) => (float[2, 3, 16] y) {\n"
            f' h = MatMul(x, w)\n y = graphopt.BiasGelu<approximate="{approx}">(h, b)\n}}'), \
        {"w": f32(8, 16), "b": f32(*map(int, bias.split(",")))}


def _skip_ln(slot=0):
    args = "h, r" if slot == 0 else "r, h"
    return (HEAD + "g (float[2, 3, 8] x, float[2, 3, 16] r) => (float[2, 3, 16] y, float[2, 3, 16] s) {\n"
            f" h = MatMul(x, w)\n y, s = graphopt.SkipLayerNorm<epsilon=1e-5>({args}, gamma, beta, b)\n}}"), \
        {"w": f32(8, 16), "b": f32(16), "gamma": f32(16), "beta": f32(16)}


def test_bias_gelu_becomes_the_linear_epilogue():
    for approx, act in (("none", "Gelu"), ("tanh", "FastGelu")):
        text, inits = _gelu(approx)
        after, stats = fuse(text, "fuse-linear-epilogue", {"x": f32(2, 3, 8)}, inits)
        assert stats == {"linear-bias-gelu": 1}
        assert_op_counts(after, graphopt__Linear=1, graphopt__BiasGelu=0, MatMul=0)
        assert next(iter(after.graph)).attr("activation") == act


def test_skip_layernorm_bias_moves_into_the_linear():
    for slot in (0, 1):
        text, inits = _skip_ln(slot)
        after, stats = fuse(text, "fuse-linear-epilogue", {"x": f32(2, 3, 8), "r": f32(2, 3, 16)}, inits)
        assert sum(stats.values()) == 1
        assert_op_counts(after, graphopt__Linear=1, graphopt__SkipLayerNorm=1, MatMul=0)
        sln = next(n for n in after.graph if n.op_type == "SkipLayerNorm")
        assert len(sln.inputs) == 4  # no bias left on it
        # the onnxruntime export gives the bias back to SkipLayerNormalization: MatMul + SkipLN, no Add
        ort = clone(after)
        lower_to_onnxruntime(ort)
        assert ort.graph.op_counts() == {"MatMul": 1, "com.microsoft::SkipLayerNormalization": 1}


def test_the_linear_keeps_the_matmul_name():  # step names and node_precision by name stay what they were
    text, inits = _gelu()
    m = load(text, inits)
    next(iter(m.graph)).name = "layer.0/intermediate/MatMul"
    run_pass(m, "fuse-linear-epilogue")
    assert [n.name for n in m.graph] == ["layer.0/intermediate/MatMul"]


def test_bias_of_another_width():
    text, inits = _gelu()
    inits["b"] = f32(3, 16)
    assert_not_fused(text, "fuse-linear-epilogue", LinearBiasGelu(), "is not [16]", inits)


def _mlp(dense: str, act: str, uses: int = 1):
    """GPT-2's MLP as every exporter writes it: a 2-D dense layer, a Reshape back to [B, S, N], the activation."""
    extra = "\n z = Neg(h3)" if uses == 2 else ""
    outs = "float[2, 3, 16] y" + (", float[2, 3, 16] z" if uses == 2 else "")
    return (HEAD + f"g (float[2, 3, 8] x) => ({outs}) {{\n"
            " x2 = Reshape(x, s2)\n"
            f" h = {dense}\n h3 = Reshape(h, s3)\n y = {act}(h3){extra}\n}}"), \
        {"w": f32(8, 16), "wt": f32(16, 8), "b": f32(16), "s2": np.array([-1, 8]), "s3": np.array([2, 3, 16])}


@pytest.mark.parametrize("dense", ["Gemm(x2, w, b)", "Gemm<transB=1>(x2, wt, b)", "MatMul(x2, w)"])
@pytest.mark.parametrize("act,name", [('graphopt.Gelu<approximate="tanh">', "FastGelu"),
                                      ('graphopt.Gelu<approximate="none">', "Gelu"), ("Relu", "Relu")])
def test_activation_after_a_reshape_becomes_the_linear_epilogue(dense, act, name):
    text, inits = _mlp(dense, act)
    after, stats = fuse(text, "fuse-linear-epilogue", {"x": f32(2, 3, 8)}, inits)
    assert stats == {"linear-activation-through-reshape": 1}
    assert_op_counts(after, graphopt__Linear=1, graphopt__Gelu=0, Relu=0, Gemm=0, MatMul=0, Reshape=2)
    lin = next(n for n in after.graph if n.op_type == "Linear")
    assert lin.attr("activation") == name and lin.outputs[0].consumers()[0].op_type == "Reshape"


def test_activation_after_a_reshape_that_escapes_stays():
    """The pre-activation value is read elsewhere too: the GEMM cannot apply the activation."""
    text, inits = _mlp("Gemm(x2, w, b)", 'graphopt.Gelu<approximate="tanh">', uses=2)
    m = load(text, inits)
    before = m.graph.op_counts()
    assert run_pass(m, "fuse-linear-epilogue") == {}
    assert m.graph.op_counts() == before
