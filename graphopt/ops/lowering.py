"""Replace ``graphopt`` ops: by onnxruntime contrib/standard ops, or by standard ONNX only."""

from __future__ import annotations

import logging

from ..errors import UnsupportedError
from ..ir import Graph, Model, Node, Value
from ._registry import DOMAIN, Emitter, get_op, opset_of

__all__ = ["lower_to_onnxruntime", "decompose_all", "replace_with"]

logger = logging.getLogger(__name__)


def replace_with(node: Node, new_outputs: list[Value | None]) -> None:
    """Point the uses of ``node``'s outputs at ``new_outputs`` and remove ``node``.

    The new values take over types (when they have none) and graph-output names.
    """
    g = node.graph
    for old, new in zip(node.outputs, new_outputs):
        if new is None:
            if old.num_uses() or old.is_graph_output():
                raise UnsupportedError(f"{node.label()}: output %{old.name} is used but its replacement "
                                       "cannot produce it")
            continue
        if new.type is None and old.type is not None:
            new.type = old.type
        old.replace_all_uses_with(new, outputs=True)
    g.remove(node)


def _rewrite(model: Model, which: str) -> int:
    opset = opset_of(model)
    count = 0

    def visit(g: Graph) -> None:
        nonlocal count
        for n in g:
            for sg in n.subgraphs():
                visit(sg)
            if n.domain != DOMAIN:
                continue
            op = get_op(n)
            e = Emitter(g, n, opset=opset)
            outs = getattr(op, which)(n, e)
            replace_with(n, outs)
            count += 1

    visit(model.graph)
    if which == "decompose" or not any(n.domain == DOMAIN for n in model.graph.walk()):
        model.opset_imports.pop(DOMAIN, None)
    return count


def lower_to_onnxruntime(model: Model) -> int:
    """Map every ``graphopt`` op to onnxruntime ops (com.microsoft contrib ops where one
    fits, standard ONNX otherwise), in place. Returns the number of ops replaced.

    >>> n = lower_to_onnxruntime(model)   # doctest: +SKIP
    """
    return _rewrite(model, "to_onnxruntime")


def decompose_all(model: Model) -> int:
    """Rewrite every ``graphopt`` op as standard ONNX ops only (no contrib domain), in place.

    For exporters to targets without onnxruntime's contrib ops (OpenVINO, other runtimes).
    Returns the number of ops replaced.

    >>> n = decompose_all(model)          # doctest: +SKIP
    """
    return _rewrite(model, "decompose")
