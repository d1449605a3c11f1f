import math

import pytest

from fusion_testlib import assert_not_fused, f32, fuse
from graphopt.passes.fusion.fuse_gelu import FuseErfGelu
from graphopt.testing.asserts import assert_op_counts

HEAD = "<ir_version: 8, opset_import: [\"\" : {opset}]>\ng (float[2, 16] x) => (float[2, 16] y) {{\n"

ERF_FORMS = {
    "hf": "d = Div(x, s2)\n e = Erf(d)\n a = Add(e, one)\n m = Mul(x, a)\n y = Mul(m, half)",
    "half_first": "d = Div(x, s2)\n e = Erf(d)\n a = Add(one, e)\n m = Mul(half, x)\n y = Mul(m, a)",
    "inner_half": "d = Mul(x, inv)\n e = Erf(d)\n a = Add(e, one)\n m = Mul(a, half)\n y = Mul(x, m)",
}
CONSTS = (f" s2 = Constant<value = float {{{math.sqrt(2)}}}>()\n one = Constant<value = float {{1.0}}>()\n"
          f" half = Constant<value = float {{0.5}}>()\n inv = Constant<value = float {{{1 / math.sqrt(2)}}}>()\n")


def _text(body: str, opset: int = 17) -> str:
    return HEAD.format(opset=opset) + CONSTS + " " + body + "\n}"


@pytest.mark.parametrize("form", sorted(ERF_FORMS))
def test_erf_forms(form):
    after, stats = fuse(_text(ERF_FORMS[form]), "fuse-gelu", {"x": f32(2, 16, scale=3)})
    assert stats == {"fuse-gelu-erf": 1}
    assert_op_counts(after, graphopt__Gelu=1, Erf=0, Mul=0)


@pytest.mark.parametrize("cube", ["p = Pow(x, three)", "xx = Mul(x, x)\n p = Mul(x, xx)"])
def test_tanh_form(cube):
    body = (f"{cube}\n c = Mul(p, k1)\n i = Add(x, c)\n j = Mul(i, k2)\n t = Tanh(j)\n a = Add(t, one)\n"
            " m = Mul(x, half)\n y = Mul(m, a)")
    consts = (f" three = Constant<value = float {{3.0}}>()\n k1 = Constant<value = float {{0.044715}}>()\n"
              f" k2 = Constant<value = float {{{math.sqrt(2 / math.pi)}}}>()\n")
    after, stats = fuse(_text(consts + " " + body), "fuse-gelu", {"x": f32(2, 16, scale=3)})
    assert stats == {"fuse-gelu-tanh": 1}
    gelu = [n for n in after.graph if n.op_type == "Gelu"][0]
    assert gelu.attr("approximate") == "tanh"


def test_onnx_gelu_opset20():
    after, stats = fuse(_text("y = Gelu<approximate=\"tanh\">(x)", opset=20), "fuse-gelu", {"x": f32(2, 16)})
    assert_op_counts(after, graphopt__Gelu=1, Gelu=0)


def test_wrong_constant_is_not_fused():
    text = _text(ERF_FORMS["hf"]).replace("{0.5}", "{0.6}")
    assert_not_fused(text, "fuse-gelu", FuseErfGelu(), "constant is not 0.5")


def test_shared_intermediate_is_not_fused():
    text = _text(ERF_FORMS["hf"]).replace("(float[2, 16] y)", "(float[2, 16] y, float[2, 16] e)")
    assert_not_fused(text, "fuse-gelu", FuseErfGelu(), "is a graph output")
