import pytest

from fusion_testlib import assert_not_fused, f32, fuse, load, run_pass
from graphopt.passes.fusion.fuse_gemm_activation import FuseGemmActivation
from graphopt.testing.asserts import assert_op_counts

HEAD = '<ir_version: 8, opset_import: ["" : 17]>\ng (float[3, 8] x) => (float[3, 5] y) {\n'


@pytest.mark.parametrize("dense", ["g = Gemm<transB=1>(x, wt, b)", "g = Gemm(x, w, b)", "g = MatMul(x, w)",
                                   "g = Gemm(x, w)"])
def test_dense_relu(dense):
    after, stats = fuse(HEAD + f" {dense}\n y = Relu(g)\n}}", "fuse-gemm-activation", {"x": f32(3, 8)},
                        {"w": f32(8, 5), "wt": f32(5, 8), "b": f32(5)})
    assert stats == {"fuse-gemm-activation": 1}
    assert_op_counts(after, graphopt__Linear=1, Relu=0, Gemm=0, MatMul=0)


def test_linear_then_gelu_after_matmul_add():
    text = HEAD + " m = MatMul(x, w)\n a = Add(m, b)\n y = Tanh(a)\n}"
    m = load(text, {"w": f32(8, 5), "b": f32(5)})
    assert run_pass(m, "fuse-matmul-add") == {"fuse-matmul-add": 1}
    assert run_pass(m, "fuse-gemm-activation") == {"fuse-gemm-activation": 1}
    lin = [n for n in m.graph if n.op_type == "Linear"]
    assert len(lin) == 1 and lin[0].attr("activation") == "Tanh" and len(m.graph) == 1


def test_gemm_with_matrix_c():
    assert_not_fused(HEAD + " g = Gemm(x, w, c)\n y = Relu(g)\n}", "fuse-gemm-activation", FuseGemmActivation(),
                     "C is a matrix", {"w": f32(8, 5), "c": f32(3, 5)})


def test_gemm_alpha():
    # alpha != 1 fails the Gemm alternative at the same depth as the Linear alternative; the
    # tracer reports the first of equal-depth failures, so only "not fused" is asserted here
    m = load(HEAD + " g = Gemm<alpha=2.0>(x, w)\n y = Relu(g)\n}", {"w": f32(8, 5)})
    assert run_pass(m, "fuse-gemm-activation") == {}
    assert_op_counts(m, Gemm=1, Relu=1)
