"""Fallback execution of one node from inside the native plan.

A node without a native kernel becomes a ``PyCall`` step: the C++ executor
re-acquires the GIL and calls the callable built here with the node's input
arrays. Standard-domain nodes run in a one-node onnxruntime session (built on
first call for the dtypes actually seen, then cached), with onnx's reference
evaluator as the last resort; ``graphopt``-domain nodes run their numpy
reference from :mod:`graphopt.ops`.

>>> run = make_fallback(node, node_proto, {"": 17})   # doctest: +SKIP
>>> run([np.ones((2, 3), np.float32)])                  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import UnsupportedError
from ..ir import Node

__all__ = ["make_fallback", "OrtNodeRunner", "WholeGraphRunner"]

logger = logging.getLogger(__name__)


class OrtNodeRunner:
    """Runs one ONNX node with onnxruntime (or onnx.reference if ORT cannot load it)."""

    def __init__(self, node_proto: onnx.NodeProto, opsets: dict[str, int], implicit: list[str], label: str,
                 consts: dict[str, np.ndarray] | None = None) -> None:
        self.proto = node_proto
        self.opsets = dict(opsets)
        self.implicit = list(implicit)
        self.label = label
        # Constant inputs become initializers of the one-node model, so onnxruntime can prepack
        # them once (MatMulNBits fed its int4 weight at run time re-unpacks it on every call).
        self.consts = dict(consts or {})
        self.in_names = list(node_proto.input) + self.implicit
        self.out_names = [o for o in node_proto.output]
        self._sessions: dict[tuple, Any] = {}
        self.engine = "onnxruntime"

    def _model(self, arrays: list[np.ndarray | None]) -> onnx.ModelProto:
        inputs, seen = [], set()
        for name, a in zip(self.in_names, arrays):
            if not name or a is None or name in seen or name in self.consts:
                continue
            seen.add(name)
            et = helper.np_dtype_to_tensor_dtype(a.dtype)
            # distinct symbolic dims per input: shared names would assert equal sizes
            inputs.append(helper.make_tensor_value_info(name, et, [f"{len(inputs)}_d{i}" for i in range(a.ndim)]))
        outputs = [helper.make_empty_tensor_value_info(o) if o else None for o in self.out_names]
        inits = [numpy_helper.from_array(np.asarray(a), n) for n, a in self.consts.items()]
        graph = helper.make_graph([self.proto], "fallback", inputs, [o for o in outputs if o is not None], inits)
        ops = [helper.make_opsetid(d, v) for d, v in self.opsets.items()]
        m = helper.make_model(graph, opset_imports=ops, producer_name="graphopt-fallback")
        m.ir_version = min(m.ir_version, 10)
        return m

    def _session(self, arrays: list[np.ndarray | None]) -> Any:
        key = tuple(None if a is None else (a.dtype.str, a.ndim) for a in arrays)
        sess = self._sessions.get(key)
        if sess is not None:
            return sess
        mp = self._model(arrays)
        try:
            from .._ort import ort_session, session_options

            so = session_options(optimize=True, threads=1)
            so.inter_op_num_threads = 1
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            sess = ort_session(mp, options=so)
            self.engine = "onnxruntime"
        except Exception as e:  # noqa: BLE001 - any ORT load failure -> reference evaluator
            logger.info("%s: onnxruntime cannot run it alone (%s); using onnx.reference", self.label, e)
            from onnx.reference import ReferenceEvaluator

            sess = _RefSession(ReferenceEvaluator(mp))
            self.engine = "onnx.reference"
        self._sessions[key] = sess
        return sess

    def __call__(self, arrays: list[np.ndarray | None]) -> list[np.ndarray]:
        sess = self._session(arrays)
        feeds = {n: a for n, a in zip(self.in_names, arrays) if n and a is not None and n not in self.consts}
        names = [o for o in self.out_names if o]
        try:
            res = sess.run(names, feeds)
        except Exception as e:  # noqa: BLE001 - ORT may reject a node alone that it runs in context
            if isinstance(sess, _RefSession):
                raise
            logger.info("%s: onnxruntime failed on the node alone (%s); retrying with onnx.reference", self.label, e)
            from onnx.reference import ReferenceEvaluator

            sess = _RefSession(ReferenceEvaluator(self._model(arrays)))
            key = tuple(None if a is None else (a.dtype.str, a.ndim) for a in arrays)
            self._sessions[key] = sess
            self.engine = "onnx.reference"
            res = sess.run(names, feeds)
        outs = dict(zip(names, res))
        return [np.require(outs[o], requirements="C") if o else np.zeros(0, np.float32) for o in self.out_names]


class _RefSession:
    def __init__(self, ev: Any) -> None:
        self.ev = ev

    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(x) for x in self.ev.run(names, feeds)]


def _graphopt_reference(node: Node) -> Callable[[list], list]:
    from ..ops import get_op

    op = get_op(node)
    attrs = op.attributes(node)

    def run(arrays: list[np.ndarray | None]) -> list[np.ndarray]:
        outs = op.reference(arrays, attrs)
        res = [np.require(np.asarray(o), requirements="C") for o in outs]
        while len(res) < len(node.outputs):
            res.append(np.zeros(0, np.float32))
        return res[:len(node.outputs)]
    return run


def make_fallback(node: Node, node_proto: onnx.NodeProto | None, opsets: dict[str, int], *,
                  bake_constants: bool = False) -> Callable[[list], list]:
    """A callable running ``node`` outside the native kernels (see module docstring).
    ``bake_constants``: the node's constant inputs are fixed in its onnxruntime session."""
    if node.domain == "graphopt":
        try:
            return _graphopt_reference(node)
        except Exception as e:  # noqa: BLE001
            raise UnsupportedError(f"{node.label()}: no native kernel and no reference implementation ({e})") from e
    if node_proto is None:
        raise UnsupportedError(f"{node.label()}: no native kernel and the node cannot be exported for onnxruntime")
    _check_runnable(node, opsets)
    implicit = [v.name for v in node.implicit_inputs()] if node.subgraphs() else []
    consts = {v.name: v.const for v in node.inputs if v is not None and v.const is not None} if bake_constants else {}
    return OrtNodeRunner(node_proto, opsets, implicit, node.label(), consts)


_ONNX_DOMAINS = frozenset({"", "ai.onnx.ml", "ai.onnx.preview", "ai.onnx.preview.training"})
_ORT_DOMAINS = frozenset({"com.microsoft"})  # onnxruntime's contrib ops: no onnx schema to check against


def _check_runnable(node: Node, opsets: dict[str, int]) -> None:
    """Refuse at compile time a node onnxruntime could not run either (else run() fails later)."""
    if node.domain in _ONNX_DOMAINS:
        version = opsets.get(node.domain)
        if version is None or not onnx.defs.has(node.op_type, version, node.domain):
            where = f"domain '{node.domain}'" if node.domain else "the default ONNX domain"
            raise UnsupportedError(f"{node.label()}: unknown op type '{node.op_type}' in {where} at opset {version} "
                                   "(no ONNX schema, no native kernel)")
    elif node.domain not in _ORT_DOMAINS:
        raise UnsupportedError(f"{node.label()}: op '{node.op_type}' of custom domain '{node.domain}' has no native "
                               "kernel and no fallback (graphopt runs ONNX, com.microsoft and graphopt ops)")


class WholeGraphRunner:
    """Runs a whole model in onnxruntime (for graphs with string/sequence values the plan cannot hold)."""

    def __init__(self, proto: onnx.ModelProto, inputs: list[str], outputs: list[str]) -> None:
        from .._ort import ort_session

        self.inputs, self.outputs = list(inputs), list(outputs)
        self.sess = ort_session(proto, optimize=True)

    def __call__(self, arrays: list[Any]) -> list[Any]:
        return self.sess.run(self.outputs, dict(zip(self.inputs, arrays)))
