"""Lowering passes for the graphopt domain: to onnxruntime ops, or to standard ONNX only."""

from __future__ import annotations

from typing import ClassVar

from graphopt.ir import Model
from graphopt.ops import decompose_all, lower_to_onnxruntime
from graphopt.pm import Pass, PassContext, PassResult, register_pass

__all__ = ["LowerToOnnxRuntimePass", "DecomposeGraphoptOpsPass"]


@register_pass
class LowerToOnnxRuntimePass(Pass):
    """graphopt ops -> com.microsoft contrib ops (Attention, SkipLayerNormalization, BiasGelu,
    FastGelu, Gelu, EmbedLayerNormalization, FusedConv) or standard ONNX where none fits."""

    name: ClassVar[str] = "lower-to-onnxruntime"
    description: ClassVar[str] = "map graphopt fused ops to onnxruntime contrib / standard ops (before ONNX export)"

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        n = lower_to_onnxruntime(model)
        return PassResult(bool(n), {"lowered": n})


@register_pass
class DecomposeGraphoptOpsPass(Pass):
    """graphopt ops -> standard ONNX only (for runtimes without onnxruntime's contrib ops)."""

    name: ClassVar[str] = "decompose-graphopt-ops"
    description: ClassVar[str] = "rewrite graphopt fused ops as standard ONNX ops"

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        n = decompose_all(model)
        return PassResult(bool(n), {"decomposed": n})
