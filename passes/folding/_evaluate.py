"""Evaluate one node on constant inputs: onnxruntime first (the runtime the
original model is checked against, so folding is bit-exact with it), then
onnx's reference evaluator for what onnxruntime cannot run."""

from __future__ import annotations

import logging
import warnings

import numpy as np

from graphopt.ir import Attr, Graph, Model, Node, Value

__all__ = ["evaluate_node"]

logger = logging.getLogger(__name__)


def _one_node_model(node: Node, inputs: list[np.ndarray | None], opsets: dict[str, int], ir_version: int) -> Model:
    g = Graph("fold")
    ins: list[Value | None] = []
    for i, arr in enumerate(inputs):
        ins.append(None if arr is None else g.add_initializer(f"i{i}", arr))
    attrs = [Attr(a.name, a.kind, a.value, "", a.ref_attr_name) for a in node.attrs.values()]
    outs = [Value(f"o{j}", o.type if o.type is not None else None) for j, o in enumerate(node.outputs)]
    n = Node(node.op_type, ins, attrs, domain=node.domain, outputs=outs)
    g.append(n)
    g.outputs = list(n.outputs)
    for o in g.outputs:
        o.type = None  # let the runtime decide (a stale declared type must not mask a mismatch)
    return Model(g, opset_imports=dict(opsets), ir_version=ir_version)


def evaluate_node(node: Node, inputs: list[np.ndarray | None], opsets: dict[str, int],
                  ir_version: int = 8) -> list[np.ndarray] | None:
    """The node's outputs, or None if neither runtime can compute them."""
    from graphopt.io import to_onnx

    try:
        proto = to_onnx(_one_node_model(node, inputs, opsets, max(ir_version, 4)), value_info=False)
    except Exception as e:  # noqa: BLE001
        logger.debug("fold: cannot export %s: %s", node.label(), e)
        return None
    try:
        from graphopt._ort import ort_session, session_options

        so = session_options(threads=1)
        so.log_severity_level = 4
        sess = ort_session(proto, options=so)
        return [np.asarray(x) for x in sess.run(None, {})]
    except Exception as e:  # noqa: BLE001 - fall back to the reference implementation
        logger.debug("fold: onnxruntime cannot evaluate %s: %s", node.label(), str(e).splitlines()[0][:200])
    try:
        from onnx.reference import ReferenceEvaluator

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            outs = ReferenceEvaluator(proto).run(None, {})
        return [np.asarray(x) for x in outs]
    except Exception as e:  # noqa: BLE001
        logger.debug("fold: reference evaluator cannot evaluate %s: %s", node.label(), e)
        return None
