"""fuse-linear-epilogue: the bias (and GELU) that O2's transformer fusions leave beside a MatMul
become its graphopt::Linear, so every GEMM of the fused graph is one Linear node.

    BiasGelu(MatMul(X, W), B)                  -> Linear(X, W, B, activation=Gelu|FastGelu)
    SkipLayerNorm(MatMul(X, W), S, G, Be, B)   -> SkipLayerNorm(Linear(X, W, B), S, G, Be)
    (the MatMul as X or as S)
    Act(Reshape(dense(X, W, B), shape))        -> Reshape(Linear(X, W, B, activation=Act), shape)
    (dense: MatMul / Gemm / Linear; GPT-2's MLP in every export form: a 2-D Gemm, a Reshape back to
    [B, S, 4H], tanh-GELU -- an element-wise activation commutes with the Reshape)

Runs after fuse-bias-gelu / fuse-skip-layernorm (which take the bias Adds first, the forms
onnxruntime's contrib kernels want) and fuse-matmul-add; the Linear keeps the MatMul's name (the
plan's step names, node_precision by name). The native lowering then maps each node
to its kernel one-to-one (the bias and GELU in the GEMM epilogue); the onnxruntime export of
Linear -> SkipLayerNorm gives the bias back to SkipLayerNormalization (graphopt.ops.linear), so
that export keeps its form.
"""

from __future__ import annotations

from typing import Any

from graphopt.pattern import A, Const, MatchResult, Optional, P, Rule, RuleSet, Var
from graphopt.pm import register_pass

from ._common import GRAPHOPT, FusionPass, activation_pattern
from .fuse_gemm_activation import check_dense, dense_pattern, linear_with_activation

__all__ = ["FUSE_LINEAR_EPILOGUE", "FuseLinearEpiloguePass"]


def _dense():
    return P.MatMul(Var("x"), Const("w").rank(2), bind="mm").uses(1)


def _bias_ok(m: Any) -> MatchResult:
    w, b = m.const("w"), m.const("bias")
    if b.ndim != 1 or b.shape[0] != w.shape[1]:
        return MatchResult.fail(f"bias shape {list(b.shape)} is not [{w.shape[1]}] (the GEMM's width)", m["bias"])
    if b.dtype != w.dtype:
        return MatchResult.fail("bias and weight dtypes differ", m["bias"])
    if m["x"].rank is not None and m["x"].rank < 1:
        return MatchResult.fail("MatMul input is a scalar", m["x"])
    return MatchResult.ok()


class LinearBiasGelu(Rule):
    """BiasGelu(MatMul(X, W), B) -> Linear(X, W, B, activation=Gelu | FastGelu)."""

    name = "linear-bias-gelu"
    benefit = 2

    def pattern(self, p):
        return P.BiasGelu(_dense(), Const("bias"), domain=GRAPHOPT, approximate=A("approximate", default="none"),
                          bind="gelu")

    def check(self, m):
        return _bias_ok(m)

    def rewrite(self, b, m):
        approx = m.attr("approximate")
        approx = approx.decode() if isinstance(approx, bytes) else approx
        return b.Linear(m["x"], m["w"], m["bias"], activation="FastGelu" if approx == "tanh" else "Gelu",
                        _domain=GRAPHOPT, _name=m.node("mm").name)


class _LinearIntoSkipLayerNorm(Rule):
    """SkipLayerNorm with the MatMul at input ``slot`` and a bias -> the bias in a Linear."""

    slot = 0
    benefit = 2

    def pattern(self, p):
        dense, other = _dense(), Var("skip")
        x, skip = (dense, other) if self.slot == 0 else (other, dense)
        return P.SkipLayerNorm(x, skip, Var("gamma"), Optional(Var("beta")), Const("bias"), domain=GRAPHOPT,
                               bind="sln")

    def check(self, m):
        return _bias_ok(m)

    def rewrite(self, b, m):
        sln = m.node("sln")
        lin = b.Linear(m["x"], m["w"], m["bias"], _domain=GRAPHOPT, _name=m.node("mm").name)
        x, skip = (lin, m["skip"]) if self.slot == 0 else (m["skip"], lin)
        ins = [x, skip, m["gamma"], m.get_or_none("beta")]
        return b.op("SkipLayerNorm", ins, dict(sln.attrs), domain=GRAPHOPT, num_outputs=len(sln.outputs)).outputs


class LinearIntoSkipLayerNorm(_LinearIntoSkipLayerNorm):
    name = "linear-into-skip-layernorm"


class LinearIntoSkipLayerNormSkip(_LinearIntoSkipLayerNorm):
    name = "linear-into-skip-layernorm-skip"
    slot = 1


class LinearActivationThroughReshape(Rule):
    """Act(Reshape(dense, shape)) -> Reshape(Linear(..., activation=Act), shape)."""

    name = "linear-activation-through-reshape"
    benefit = 2

    def pattern(self, p):
        return activation_pattern(P.Reshape(dense_pattern(), Var("shape"), allowzero=A("allowzero", default=0),
                                            bind="reshape"))

    def check(self, m):
        return check_dense(m)

    def rewrite(self, b, m):
        attrs = {"allowzero": m.attr("allowzero")} if m.attr("allowzero") else {}
        return b.Reshape(linear_with_activation(b, m), m["shape"], **attrs)


FUSE_LINEAR_EPILOGUE = RuleSet([LinearBiasGelu(), LinearIntoSkipLayerNorm(), LinearIntoSkipLayerNormSkip(),
                                LinearActivationThroughReshape()], name="fuse-linear-epilogue")


@register_pass
class FuseLinearEpiloguePass(FusionPass):
    name = "fuse-linear-epilogue"
    description = ("MatMul -> BiasGelu / SkipLayerNorm(bias), dense -> Reshape -> activation: the bias and "
                   "activation into a graphopt::Linear")
    rules = FUSE_LINEAR_EPILOGUE
