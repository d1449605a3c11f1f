"""``quant-annotate``: write per-input quantization specs (``node.meta[QUANT_INPUTS]``) per a QuantConfig.

It also records the config's precision decisions that no Q/DQ pair can say (``graphopt.quant.decision``,
saved with the file): a GEMM the config keeps in fp32 or bf16, and every attention core's products
(an activation x activation MatMul, or a fused attention node of a model quantized after O2), so
``graphopt.compile`` runs what the config chose whichever order O2 and quantize ran in.
"""

from __future__ import annotations

from graphopt.ir import Model
from graphopt.pm import Pass, PassContext, PassResult, register_pass
from graphopt.quant.annotate import annotate_node
from graphopt.quant.config import QuantConfig
from graphopt.quant.decision import decide, decide_attention, decision_kind, is_attention_core
from graphopt.quant.specs import PRECISION, QUANT_INPUTS

__all__ = ["AnnotateQuantPass"]


@register_pass
class AnnotateQuantPass(Pass):
    """Mark what to quantize; nothing is materialised (PT2E's annotate step).

    >>> AnnotateQuantPass(QuantConfig.transformer()).run(model, PassContext())   # doctest: +SKIP
    PassResult(modified=True, stats={'annotated': 42, ...})
    """

    name = "quant-annotate"
    description = "annotate inputs to quantize per a QuantConfig (meta only)"

    def __init__(self, config: QuantConfig | None = None) -> None:
        self.config = config or QuantConfig.transformer()

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        self.config.validate(model)
        annotated = weights = acts = decided = 0
        for node in model.graph:
            plan, specs = annotate_node(node, self.config)
            if is_attention_core(node):
                decide_attention(node, self.config.attention_precision(node))
                decided += 1
            if decision_kind(node) == "gemm" and not specs and plan.precision in ("fp32", "bf16"):
                decide(node, plan.precision)  # kept float by the config (int8 GEMMs: their Q/DQ say so)
                decided += 1
            node.meta.pop(QUANT_INPUTS, None)  # re-annotation replaces
            if specs:
                node.meta[QUANT_INPUTS] = specs
                node.meta[PRECISION] = "int8"
                annotated += 1
                for i in specs:
                    if node.inputs[i].const is not None:
                        weights += 1
                    else:
                        acts += 1
            elif plan.precision != "int8":
                node.meta[PRECISION] = plan.precision
        return PassResult(annotated > 0 or decided > 0,
                          {"annotated": annotated, "weights": weights, "activations": acts, "decided": decided})
