"""fuse-gelu: the GELU formulas exporters emit -> graphopt::Gelu.

erf form   x * 0.5 * (1 + erf(x / sqrt(2)))          (torch nn.GELU(), HF "gelu")
tanh form  x * 0.5 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))   (HF "gelu_new", FastGelu)

Exporters associate the products differently ((x*a)*b, x*(a*b), (x*b)*a) and
write x/sqrt(2) as Div or as Mul by 1/sqrt(2), x^3 as Pow or Mul(x, Mul(x, x));
the rule is commutative and lists each nesting as an alternative. ONNX's own
Gelu (opset 20) becomes graphopt::Gelu too, so later fusions see one op.
"""

from __future__ import annotations

import math

from graphopt.pattern import A, AnyOf, Const, P, Rule, RuleSet, Var
from graphopt.pm import register_pass

from ._common import GRAPHOPT, FusionPass

__all__ = ["FUSE_GELU", "FuseGeluPass"]

_TOL = dict(rtol=1e-3, atol=1e-4)


def _gelu_products(x: Var, one_plus: object) -> object:
    """x * 0.5 * one_plus in its three association orders."""
    half = Const(value=0.5, **_TOL)
    return AnyOf(
        P.Mul(P.Mul(x, one_plus), half),
        P.Mul(P.Mul(x, half), one_plus),
        P.Mul(x, P.Mul(one_plus, half)),
    )


def erf_gelu_pattern() -> object:
    x = Var("x")
    scaled = AnyOf(P.Div(x, Const(value=math.sqrt(2.0), **_TOL)), P.Mul(x, Const(value=1 / math.sqrt(2.0), **_TOL)))
    one_plus = P.Add(P.Erf(scaled), Const(value=1.0))
    return _gelu_products(x, one_plus)


def tanh_gelu_pattern() -> object:
    x = Var("x")
    cube = AnyOf(P.Pow(x, Const(value=3.0)), P.Mul(x, P.Mul(x, x)), P.Mul(P.Mul(x, x), x))
    inner = P.Add(x, P.Mul(cube, Const(value=0.044715, **_TOL)))
    one_plus = P.Add(P.Tanh(P.Mul(inner, Const(value=math.sqrt(2.0 / math.pi), **_TOL))), Const(value=1.0))
    return _gelu_products(x, one_plus)


class FuseErfGelu(Rule):
    """x * 0.5 * (1 + erf(x / sqrt(2))) -> graphopt::Gelu(x)."""

    name = "fuse-gelu-erf"
    benefit = 3
    commutative = True

    def pattern(self, p):
        return erf_gelu_pattern()

    def rewrite(self, b, m):
        return b.Gelu(m["x"], approximate="none", _domain=GRAPHOPT)


class FuseTanhGelu(FuseErfGelu):
    """x * 0.5 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))) -> graphopt::Gelu(x, approximate="tanh")."""

    name = "fuse-gelu-tanh"

    def pattern(self, p):
        return tanh_gelu_pattern()

    def rewrite(self, b, m):
        return b.Gelu(m["x"], approximate="tanh", _domain=GRAPHOPT)


class OnnxGeluToGraphopt(Rule):
    """ONNX Gelu (opset 20) -> graphopt::Gelu with the same approximation."""

    name = "fuse-gelu-onnx"
    benefit = 1

    def pattern(self, p):
        return p.Gelu(Var("x"), approximate=A("approximate", default="none"), bind="gelu")

    def rewrite(self, b, m):
        approx = m.attr("approximate")
        approx = approx.decode() if isinstance(approx, bytes) else approx
        return b.Gelu(m["x"], approximate=approx, _domain=GRAPHOPT)


FUSE_GELU = RuleSet([FuseErfGelu(), FuseTanhGelu(), OnnxGeluToGraphopt()], name="fuse-gelu")


@register_pass
class FuseGeluPass(FusionPass):
    name = "fuse-gelu"
    description = "GELU formulas (erf and tanh approximations, ONNX Gelu) -> graphopt::Gelu"
    rules = FUSE_GELU
