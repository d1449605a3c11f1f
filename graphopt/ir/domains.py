"""Operator domains and opsets: the one home of the domain names and of ``opset_of``.

>>> from graphopt.ir import Graph, Model
>>> opset_of(Model(Graph("g"), opset_imports={"": 13}))
13
>>> opset_of(Model(Graph("g"), opset_imports={}))
17
"""

from __future__ import annotations

from ._core import Graph, Model

__all__ = ["GRAPHOPT_DOMAIN", "MS_DOMAIN", "DEFAULT_OPSET", "opset_of", "has_fused_ops"]

#: graphopt's own fused ops (specs in :mod:`graphopt.ops`).
GRAPHOPT_DOMAIN = "graphopt"
#: onnxruntime's contrib ops.
MS_DOMAIN = "com.microsoft"
#: The default-domain opset assumed when a model does not say (what graphopt exports).
DEFAULT_OPSET = 17


def opset_of(model: Model | Graph | None, domain: str = "") -> int:
    """The opset ``model`` imports for ``domain`` (default domain: ``DEFAULT_OPSET`` when unknown; others: 1)."""
    fallback = DEFAULT_OPSET if domain in ("", "ai.onnx") else 1
    if not isinstance(model, Model):
        return fallback
    imports = model.opset_imports
    if domain in ("", "ai.onnx"):
        return int(imports.get("", imports.get("ai.onnx", fallback)))
    return int(imports.get(domain, fallback))


def has_fused_ops(model: Model | Graph) -> bool:
    """True if any node (subgraphs included) is a graphopt-domain fused op."""
    g = model.graph if isinstance(model, Model) else model
    return any(n.domain == GRAPHOPT_DOMAIN for n in g.walk())
