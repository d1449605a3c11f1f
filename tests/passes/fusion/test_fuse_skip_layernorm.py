from fusion_testlib import assert_not_fused, f32, fuse
from graphopt.passes.fusion.fuse_skip_layernorm import FuseSkipLayerNorm
from graphopt.testing.asserts import assert_op_counts

H = 32
INITS = {"w": f32(H, H, scale=0.2), "bias": f32(H), "g": f32(H), "b": f32(H)}


def _text(body: str, outs: str = f"float[2, 5, {H}] y", axis: int = -1, xshape: str = f"2, 5, {H}",
          rshape: str = f"2, 5, {H}") -> str:
    return ('<ir_version: 8, opset_import: ["" : 17]>\n'
            f"g (float[{xshape}] x, float[{rshape}] r) => ({outs}) {{\n"
            f" {body}\n y = LayerNormalization<axis={axis}, epsilon=1e-6>(s, g, b)\n}}")


DENSE = "m = MatMul(x, w)\n a = Add(bias, m)\n s = Add(a, r)"
FEEDS = {"x": f32(2, 5, H), "r": f32(2, 5, H)}


def test_with_dense_bias():
    after, stats = fuse(_text(DENSE), "fuse-skip-layernorm", FEEDS, INITS)
    assert stats == {"fuse-skip-layernorm": 1}
    assert_op_counts(after, graphopt__SkipLayerNorm=1, Add=0, LayerNormalization=0, MatMul=1)
    sln = [n for n in after.graph if n.op_type == "SkipLayerNorm"][0]
    assert sln.inputs[4].name == "bias"


def test_plain_residual():
    after, _ = fuse(_text("s = Add(x, r)"), "fuse-skip-layernorm", FEEDS, INITS)
    assert_op_counts(after, graphopt__SkipLayerNorm=1, Add=0)


def test_sum_used_downstream_comes_from_second_output():
    text = _text("s = Add(x, r)\n z = Relu(s)", outs=f"float[2, 5, {H}] y, float[2, 5, {H}] z")
    after, _ = fuse(text, "fuse-skip-layernorm", FEEDS, INITS)
    relu = [n for n in after.graph if n.op_type == "Relu"][0]
    assert relu.inputs[0].producer().op_type == "SkipLayerNorm" and relu.inputs[0].index() == 1


def test_not_last_axis():
    assert_not_fused(_text("s = Add(x, r)", axis=1), "fuse-skip-layernorm", FuseSkipLayerNorm(),
                     "is not the last axis", INITS)


def test_broadcast_first_operand():
    assert_not_fused(_text("s = Add(x, r)", xshape=f"1, 5, {H}", rshape=f"2, 1, {H}"), "fuse-skip-layernorm", FuseSkipLayerNorm(),
                     "broadcast", INITS)


def test_four_d_residual():
    text = _text("s = Add(x, r)", xshape=f"2, 1, 5, {H}", rshape=f"2, 1, 5, {H}").replace(
        f"=> (float[2, 5, {H}] y)", f"=> (float[2, 1, 5, {H}] y)")
    assert_not_fused(text, "fuse-skip-layernorm", FuseSkipLayerNorm(), "need 2-D or 3-D", INITS)


def test_gamma_of_other_width():
    inits = {**INITS, "g": f32(1), "b": f32(1)}
    assert_not_fused(_text("s = Add(x, r)"), "fuse-skip-layernorm", FuseSkipLayerNorm(), "hidden sizes", inits)
