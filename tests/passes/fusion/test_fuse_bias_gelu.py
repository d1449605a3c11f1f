from fusion_testlib import assert_not_fused, f32, fuse
from graphopt.passes.fusion.fuse_bias_gelu import FuseBiasGelu
from graphopt.testing.asserts import assert_op_counts


def _text(bias_shape="16", xshape="2, 3, 16"):
    return ('<ir_version: 8, opset_import: ["" : 17, "graphopt" : 1]>\n'
            f"g (float[{xshape}] x) => (float[{xshape}] y) {{\n"
            " a = Add(bias, x)\n y = graphopt.Gelu(a)\n}")


def test_fused():
    after, stats = fuse(_text(), "fuse-bias-gelu", {"x": f32(2, 3, 16)}, {"bias": f32(16)})
    assert stats == {"fuse-bias-gelu": 1}
    assert_op_counts(after, graphopt__BiasGelu=1, graphopt__Gelu=0, Add=0)


def test_matrix_bias():
    assert_not_fused(_text(), "fuse-bias-gelu", FuseBiasGelu(), "needs a 1-D bias", {"bias": f32(3, 16)})


def test_broadcast_scalar_bias():
    assert_not_fused(_text(), "fuse-bias-gelu", FuseBiasGelu(), "bias length 1 != last dimension 16",
                     {"bias": f32(1)})


def test_unknown_hidden_size():
    assert_not_fused(_text(xshape="2, 3, N"), "fuse-bias-gelu", FuseBiasGelu(), "last dimension is unknown",
                     {"bias": f32(16)})
