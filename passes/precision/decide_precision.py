"""``decide-precision``: the one place a node's precision is chosen for the native runtime.

Before the fusions, every node that has a precision choice gets one decision (``graphopt.quant.decision``):
a GEMM with a constant weight (MatMul, Gemm, Conv and their fused forms), an embedding table
(Gather of a constant), an attention core's products (activation x activation MatMul). In order:

1. ``node_precision`` (the user's, by node name or ``"weight:NAME"``; default: the model's
   ``graphopt.node_precision`` metadata written by ``graphopt.tune``);
2. what the file says: a QDQ file's Q/DQ (``absorb-qdq``: int8 with its grids; GEMMs, tables and
   attention products it left float: fp32);
3. the compile default (``precision``).

The fusion driver carries the decisions to the fused nodes (the widest precision of the parts);
the lowering reads them and chooses nothing.

>>> DecidePrecisionPass("int8", {"weight:W": "fp32"}).run(model, PassContext())   # doctest: +SKIP
"""

from __future__ import annotations

import json

from graphopt.ir import Model
from graphopt.pm import Pass, PassContext, PassResult, register_pass
from graphopt.quant.decision import (NODE_PRECISIONS, apply_node_precision, attention_precision, decide,
                                     decide_attention, decision_kind, is_attention_core,
                                     precision_of)

from ..quant.absorb_qdq import AbsorbQDQPass, has_qdq

__all__ = ["DecidePrecisionPass"]

@register_pass
class DecidePrecisionPass(Pass):
    """Per-node precision: node_precision > the file's Q/DQ > ``default``."""

    name = "decide-precision"
    description = "one precision decision per GEMM / table / attention node: node_precision > the file > default"

    def __init__(self, default: str | None = None, node_precision: dict[str, str] | None = None, *,
                 absorb: bool = True) -> None:
        if default is not None and default not in NODE_PRECISIONS:
            raise ValueError(f"decide-precision: default must be one of {NODE_PRECISIONS}, got {default!r}")
        self.default, self.node_precision, self.absorb = default, node_precision, absorb

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        prec = self.node_precision
        if prec is None and "graphopt.node_precision" in model.metadata_props:
            prec = json.loads(model.metadata_props["graphopt.node_precision"])
        stats = {"user": apply_node_precision(model, prec) if prec else 0, "file": 0, "default": 0}
        if self.absorb and has_qdq(model):
            r = AbsorbQDQPass().run(model, ctx)
            stats["file"] = int(r.stats.get("static", 0) + r.stats.get("float_gemms", 0))
        if self.default is not None:
            for n in model.graph:
                if is_attention_core(n) and attention_precision(n) is None:
                    decide_attention(n, self.default)
                    stats["default"] += 1
                if decision_kind(n) in ("gemm", "table") and precision_of(n) is None:  # MultiHeadAttention: both
                    decide(n, self.default)
                    stats["default"] += 1
        return PassResult(any(stats.values()), stats)
