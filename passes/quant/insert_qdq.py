"""``insert-qdq``: materialise QUANT_INPUTS annotations as QuantizeLinear/DequantizeLinear.

- Activations: one Q->DQ pair per (value, spec), shared by every consumer
  that asks for the same spec; scale/zero point from the value's calibration
  observer (``meta[CALIB]``) with the spec's range method.
- Weights: quantized offline to an integer initializer + DequantizeLinear
  (per-channel along the spec's axis).
- Embedding tables (Gather): int8 rows gathered first, then scaled by the
  gathered per-row scale, so the table is never dequantized whole.
- A node is quantized only if *all* its annotated inputs can be; quantizing
  half of an op would only add work and error.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from graphopt.errors import PreconditionError
from graphopt.ir import DType, Graph, Model, Node, TensorType, Value
from graphopt.ir.mapped import release_pages
from graphopt.pm import Pass, PassContext, PassResult, register_config, register_pass
from graphopt.quant._build import add_node, const
from graphopt.quant.specs import CALIB, QPARAMS, QUANT_INPUTS, QParams, QuantSpec, qparams_from_range
from graphopt.quant.weights import quantize_weight

__all__ = ["InsertQDQPass", "activation_qparams"]

logger = logging.getLogger(__name__)

register_config("insert_qdq.require_calibration", bool, True,
                "raise when an annotated activation has no calibration (False: leave that node float)")


def activation_qparams(v: Value, spec: QuantSpec) -> QParams:
    """Per-tensor parameters of activation ``v`` from its calibration observer."""
    obs = v.meta.get(CALIB)
    if obs is None:
        raise PreconditionError(f"insert-qdq: activation %{v.name} has no calibration statistics; "
                                "run calibration (graphopt.quant.calibrate) and attach the result first")
    lo, hi = obs.range(spec.observer, spec)
    return qparams_from_range(lo, hi, spec.with_(per_channel=False))


def _is_dq_output(v: Value) -> bool:
    p = v.producer()
    return p is not None and p.op_type == "DequantizeLinear"


@register_pass
class InsertQDQPass(Pass):
    """QDQ form: standard ONNX that onnxruntime runs with its int8 kernels."""

    name = "insert-qdq"
    description = "insert QuantizeLinear/DequantizeLinear per quant annotations and calibration"

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        g = model.graph
        cache: dict[tuple[int, QuantSpec], Value] = {}
        stats = {"qdq_pairs": 0, "weights": 0, "embeddings": 0, "skipped_nodes": 0}
        for node in list(g):
            specs = node.meta.get(QUANT_INPUTS)
            if not specs:
                continue
            if node.op_type == "Gather":
                self._gather(g, node, specs[0], stats)
                continue
            if any(_is_dq_output(node.inputs[i]) for i in specs):
                continue  # already materialised (idempotence)
            try:
                params = {i: (None if node.inputs[i].const is not None else activation_qparams(node.inputs[i], s))
                          for i, s in specs.items()}
            except PreconditionError:
                if ctx.get("insert_qdq.require_calibration"):
                    raise
                logger.info("insert-qdq: %s left float (an input has no calibration)", node.label())
                stats["skipped_nodes"] += 1
                continue
            for i, spec in specs.items():
                v = node.inputs[i]
                key = (id(v), spec)
                dq = cache.get(key)
                if dq is None:
                    dq = self._weight(g, node, v, spec) if v.const is not None else \
                        self._activation(g, node, v, spec, params[i])
                    cache[key] = dq
                    stats["weights" if v.const is not None else "qdq_pairs"] += 1
                node.set_input(i, dq)
        for v in list(g.initializers.values()):
            if v.num_uses() == 0 and not v.is_graph_input:
                g.remove_initializer(v)
        changed = stats["qdq_pairs"] + stats["weights"] + stats["embeddings"] > 0
        return PassResult(changed, stats)

    # --- materialisation -------------------------------------------------------
    def _activation(self, g: Graph, before: Node, v: Value, spec: QuantSpec, qp: QParams) -> Value:
        s = const(g, f"{v.name}_scale", np.float32(qp.scale))
        z = const(g, f"{v.name}_zero_point", np.asarray(qp.zero_point, spec.dtype.numpy).reshape(()))
        q = add_node(g, before, "QuantizeLinear", [v, s, z], out_name=f"{v.name}_quantized",
                     out_type=TensorType(spec.dtype.dtype, v.shape))
        dq = add_node(g, before, "DequantizeLinear", [q.output, s, z], out_name=f"{v.name}_dequantized",
                      out_type=TensorType(DType.FLOAT, v.shape))
        v.meta[QPARAMS] = qp
        return dq.output

    def _weight(self, g: Graph, before: Node, w: Value, spec: QuantSpec) -> Value:
        q, qp = quantize_weight(w.const.astype(np.float32), spec)
        qv = const(g, f"{w.name}_quantized", q)
        s = const(g, f"{w.name}_scale", qp.scale.astype(np.float32))
        z = const(g, f"{w.name}_zero_point", np.asarray(qp.zero_point, spec.dtype.numpy))
        attrs = {"axis": int(qp.axis)} if qp.axis is not None else {}
        dq = add_node(g, before, "DequantizeLinear", [qv, s, z], attrs, out_name=f"{w.name}_dequantized",
                      out_type=TensorType(DType.FLOAT, tuple(w.const.shape)))
        qv.meta[QPARAMS] = qp
        return dq.output

    def _gather(self, g: Graph, node: Node, spec: QuantSpec, stats: dict[str, int]) -> None:
        table, ids = node.inputs[0], node.inputs[1]
        if table.const is None or table.const.dtype.kind != "f":
            return
        q, qp = _quantize_rows(table.const, spec.with_(axis=0, per_channel=True))
        out = node.output
        qt = const(g, f"{table.name}_quantized", q)
        st = const(g, f"{table.name}_row_scale", qp.scale.astype(np.float32))
        node.set_input(0, qt)
        # rows and their scales are gathered with the same indices; then dequantize the rows only
        gi = TensorType(DType.INT8, out.shape)
        out_q = Value(g.unique_name(f"{out.name}_int8"), gi)
        gq = Node("Gather", [qt, ids], {"axis": 0}, outputs=[out_q], name=g.unique_name(f"{node.name or 'Gather'}_q"))
        g.insert_before(node, gq)
        scale_rows = add_node(g, node, "Gather", [st, ids], {"axis": 0}, out_name=f"{out.name}_row_scale")
        axes = const(g, f"{out.name}_axes", np.array([-1], np.int64))
        scale_col = add_node(g, node, "Unsqueeze", [scale_rows.output, axes], out_name=f"{out.name}_scale_col")
        cast = add_node(g, node, "Cast", [out_q], {"to": DType.FLOAT.value}, out_name=f"{out.name}_rows",
                        out_type=TensorType(DType.FLOAT, out.shape))
        mul = add_node(g, node, "Mul", [cast.output, scale_col.output], out_name=f"{out.name}_deq",
                       out_type=TensorType(DType.FLOAT, out.shape))
        out.replace_all_uses_with(mul.output, outputs=True)
        g.remove(node)
        if table.num_uses() == 0 and table.is_initializer:
            g.remove_initializer(table)
            release_pages(table.const)
        stats["embeddings"] += 1


def _quantize_rows(table: np.ndarray, spec: QuantSpec, chunk_bytes: int = 16 * 2**20) -> tuple[np.ndarray, QParams]:
    """Per-row quantization of an embedding table, ``chunk_bytes`` of rows at a time: rows are
    independent, and a whole-table pass would hold several fp32 temporaries of its size."""
    rows = max(1, chunk_bytes // max(1, table[0].nbytes)) if table.ndim > 1 and len(table) else max(1, len(table))
    parts = [quantize_weight(np.asarray(table[i:i + rows], np.float32), spec) for i in range(0, len(table), rows)]
    if len(parts) == 1:
        return parts[0]
    qp = parts[0][1]
    return np.concatenate([q for q, _ in parts]), dataclasses.replace(
        qp, scale=np.concatenate([p.scale for _, p in parts]), zero_point=np.concatenate([p.zero_point for _, p in parts]))
