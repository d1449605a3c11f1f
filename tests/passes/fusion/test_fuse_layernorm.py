import pytest

from fusion_testlib import assert_not_fused, f32, fuse, load, run_pass
from graphopt.passes.fusion.fuse_layernorm import FuseLayerNorm
from graphopt.testing.asserts import assert_op_counts

H = 32


def _text(opset=17, axes="-1", div="n = Div(d, sd)", beta=True, sq="p = Pow(d, two)"):
    if opset >= 18:
        mean = "mu = ReduceMean(x, ax)\n v = ReduceMean(p, ax)"
        ax = f" ax = Constant<value = int64[1] {{{axes}}}>()\n"
    else:
        mean = f"mu = ReduceMean<axes=[{axes}]>(x)\n v = ReduceMean<axes=[{axes}]>(p)"
        ax = ""
    mean1, mean2 = mean.split("\n")
    tail = "s = Mul(n, g)\n y = Add(s, b)" if beta else "y = Mul(g, n)"
    return (f'<ir_version: 8, opset_import: ["" : {opset}]>\n'
            f"g (float[2, 5, {H}] x) => (float[2, 5, {H}] y) {{\n{ax}"
            " two = Constant<value = float {2.0}>()\n eps = Constant<value = float {1e-5}>()\n"
            f" {mean1}\n d = Sub(x, mu)\n {sq}\n {mean2}\n e = Add(v, eps)\n sd = Sqrt(e)\n {div}\n {tail}\n}}")


INITS = {"g": f32(H), "b": f32(H)}
FEEDS = {"x": f32(2, 5, H, scale=2)}


@pytest.mark.parametrize("opset", [17, 18])
@pytest.mark.parametrize("div", ["n = Div(d, sd)", "r = Reciprocal(sd)\n n = Mul(d, r)"])
def test_fused(opset, div):
    after, stats = fuse(_text(opset, div=div), "fuse-layernorm", FEEDS, INITS)
    assert stats == {"fuse-layernorm": 1}
    assert_op_counts(after, LayerNormalization=1, ReduceMean=0, Sqrt=0)


def test_square_as_mul_and_no_beta():
    after, _ = fuse(_text(sq="p = Mul(d, d)", beta=False), "fuse-layernorm", FEEDS, INITS)
    assert_op_counts(after, LayerNormalization=1, Mul=0, Add=0)


def test_not_last_axis():
    assert_not_fused(_text(axes="1"), "fuse-layernorm", FuseLayerNorm(), "does not reduce only the last axis",
                     INITS)


def test_gamma_of_wrong_length_is_rejected():
    inits = {"g": f32(1, H), "b": f32(2, 1, H)}
    assert_not_fused(_text(), "fuse-layernorm", FuseLayerNorm(), "beta is not a vector over the last axis", inits)


def test_opset_16_is_skipped():
    m = load(_text(opset=16), INITS)
    assert run_pass(m, "fuse-layernorm") == {}
    assert_op_counts(m, LayerNormalization=0)
