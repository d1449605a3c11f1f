"""``quant-annotate``: write per-input quantization specs (``node.meta[QUANT_INPUTS]``) per a QuantConfig."""

from __future__ import annotations

from graphopt.ir import Model
from graphopt.pm import Pass, PassContext, PassResult, register_pass
from graphopt.quant.annotate import annotate_node
from graphopt.quant.config import QuantConfig
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
        annotated = weights = acts = 0
        for node in model.graph:
            plan, specs = annotate_node(node, self.config)
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
        return PassResult(annotated > 0, {"annotated": annotated, "weights": weights, "activations": acts})
