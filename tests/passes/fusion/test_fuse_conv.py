"""fuse-conv-bn and fuse-conv-activation."""

import numpy as np
import pytest

from fusion_testlib import assert_not_fused, f32, fuse
from graphopt.passes.fusion.fuse_conv_activation import FuseConvActivation
from graphopt.passes.fusion.fuse_conv_bn import FuseConvBatchNorm
from graphopt.testing.asserts import assert_op_counts

HEAD = '<ir_version: 8, opset_import: ["" : 17]>\ng (float[2, 3, 10, 10] x) => ({outs}) {{\n'


def _bn_inits(c=4, var=None):
    rng = np.random.default_rng(0)
    return {"w": f32(c, 3, 3, 3, scale=0.3), "cb": f32(c), "s": rng.uniform(0.5, 1.5, c).astype(np.float32),
            "t": f32(c), "mu": f32(c, scale=0.1),
            "var": rng.uniform(0.5, 1.5, c).astype(np.float32) if var is None else var}


def _bn_text(bias=True, outs="float[2, 4, 8, 8] y", extra=""):
    conv = "c = Conv(x, w, cb)" if bias else "c = Conv(x, w)"
    return HEAD.format(outs=outs) + f" {conv}\n y = BatchNormalization<epsilon=1e-3>(c, s, t, mu, var)\n{extra}}}"


@pytest.mark.parametrize("bias", [True, False])
def test_conv_bn(bias):
    after, stats = fuse(_bn_text(bias), "fuse-conv-bn", {"x": f32(2, 3, 10, 10)}, _bn_inits(), atol=1e-4,
                        rtol=1e-4)
    assert stats == {"fuse-conv-bn": 1}
    assert_op_counts(after, Conv=1, BatchNormalization=0)


def test_conv_bn_negative_variance():
    inits = _bn_inits(var=np.array([1.0, -2.0, 1.0, 1.0], np.float32))
    assert_not_fused(_bn_text(), "fuse-conv-bn", FuseConvBatchNorm(), "variance + epsilon is not positive", inits)


def test_conv_output_used_twice():
    text = _bn_text(outs="float[2, 4, 8, 8] y, float[2, 4, 8, 8] c")
    assert_not_fused(text, "fuse-conv-bn", FuseConvBatchNorm(), "is a graph output", _bn_inits())


ACTS = {
    "Relu": "y = Relu(c)",
    "Clip": "y = Clip(c, lo, hi)",
    "LeakyRelu": "y = LeakyRelu<alpha=0.2>(c)",
    "HardSigmoid": "y = HardSigmoid<alpha=0.3, beta=0.4>(c)",
    "Sigmoid": "y = Sigmoid(c)",
    "Tanh": "y = Tanh(c)",
}


@pytest.mark.parametrize("act", sorted(ACTS))
def test_conv_activation(act):
    text = (HEAD.format(outs="float[2, 4, 10, 10] y") + " lo = Constant<value = float {0.0}>()\n"
            " hi = Constant<value = float {6.0}>()\n c = Conv<pads=[1, 1, 1, 1]>(x, w, cb)\n " + ACTS[act] + "\n}")
    after, stats = fuse(text, "fuse-conv-activation", {"x": f32(2, 3, 10, 10, scale=3)},
                        {"w": f32(4, 3, 3, 3), "cb": f32(4)}, atol=1e-4, rtol=1e-4)
    assert stats == {"fuse-conv-activation": 1}
    assert_op_counts(after, graphopt__FusedConv=1, Conv=0)
    fc = [n for n in after.graph if n.op_type == "FusedConv"][0]
    assert fc.attr("activation") == act and fc.attr("pads") == [1, 1, 1, 1]


def test_conv_activation_with_dynamic_clip_bound():
    text = ('<ir_version: 8, opset_import: ["" : 17]>\n'
            "g (float[2, 3, 10, 10] x, float hi) => (float[2, 4, 8, 8] y) {\n"
            " lo = Constant<value = float {0.0}>()\n c = Conv(x, w)\n y = Clip(c, lo, hi)\n}")
    assert_not_fused(text, "fuse-conv-activation", FuseConvActivation(), "is not a constant", {"w": f32(4, 3, 3, 3)})
