"""``fold-qdq``: DQ -> op (-> Q) islands into integer ops (QOperator form).

- ``MatMul(DQ(x), DQ(w)) -> Q``  =>  ``QLinearMatMul``
- ``MatMul(DQ(x), DQ(w))``       =>  ``MatMulInteger -> Cast -> Mul(sx * sw)``
- ``Conv(DQ(x), DQ(w), b) [-> Relu] -> Q``  =>  ``QLinearConv`` (int32 bias; a Relu is
  absorbed when the output zero point is the lowest code, so saturation is the Relu)

Islands that do not match stay in QDQ form, which onnxruntime also runs.
"""

from __future__ import annotations

import numpy as np

from graphopt.ir import DType, Graph, Model, Node, TensorType, Value
from graphopt.pm import Pass, PassContext, PassResult, register_pass
from graphopt.quant._build import add_node, const
from graphopt.quant.specs import PRECISION

__all__ = ["FoldQDQPass"]


def _dq(v: Value | None) -> Node | None:
    p = v.producer() if v is not None else None
    if p is None or p.op_type != "DequantizeLinear" or p.domain:
        return None
    if any(i is not None and i.const is None for i in p.inputs[1:]):
        return None  # runtime scales: not foldable offline
    return p


def _only_q(v: Value) -> Node | None:
    cons = v.consumers()
    if len(cons) != 1 or v.is_graph_output() or v.num_uses() != 1:
        return None
    q = cons[0]
    if q.op_type != "QuantizeLinear" or q.domain or any(i is None or i.const is None for i in q.inputs[1:3]):
        return None
    return q


def _zp(dq: Node, g: Graph, dtype: np.dtype) -> Value:
    if len(dq.inputs) > 2 and dq.inputs[2] is not None:
        return dq.inputs[2]
    return const(g, "zero_point", np.zeros((), dtype))


@register_pass
class FoldQDQPass(Pass):
    """QDQ -> QOperator (QLinearMatMul, MatMulInteger, QLinearConv)."""

    name = "fold-qdq"
    description = "fold DQ->op->Q islands into integer ops (QOperator form)"

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        g = model.graph
        stats = {"qlinear_matmul": 0, "matmul_integer": 0, "qlinear_conv": 0}
        for node in list(g):
            if node.graph is None:
                continue
            if node.op_type == "MatMul" and not node.domain:
                self._matmul(g, node, stats)
            elif node.op_type == "Conv" and not node.domain:
                self._conv(g, node, stats)
        _sweep(g)
        return PassResult(sum(stats.values()) > 0, stats)

    def _matmul(self, g: Graph, node: Node, stats: dict[str, int]) -> None:
        da, db = _dq(node.inputs[0]), _dq(node.inputs[1])
        if da is None or db is None or np.size(da.inputs[1].const) != 1:
            return  # both inputs must be dequantized, and A per tensor (what these ops express)
        bq = db.inputs[0]
        if np.size(db.inputs[1].const) > 1 and (bq.rank != 2 or db.attr("axis", 1) % 2 != 1):
            return  # only per-column weight scales
        out = node.output
        q = _only_q(out)
        if q is not None:
            new = add_node(g, node, "QLinearMatMul",
                           [da.inputs[0], da.inputs[1], _zp(da, g, np.uint8), bq, db.inputs[1], _zp(db, g, np.int8),
                            q.inputs[1], q.inputs[2]], name=f"{node.name or 'MatMul'}_quant",
                           out_type=q.output.type)
            q.output.replace_all_uses_with(new.output, outputs=True)
            g.remove(q)
            g.remove(node)
            stats["qlinear_matmul"] += 1
        else:
            ft = TensorType(DType.FLOAT, out.shape)
            mmi = add_node(g, node, "MatMulInteger", [da.inputs[0], bq, _zp(da, g, np.uint8), _zp(db, g, np.int8)],
                           name=f"{node.name or 'MatMul'}_int", out_type=TensorType(DType.INT32, out.shape))
            cast = add_node(g, node, "Cast", [mmi.output], {"to": DType.FLOAT.value}, out_type=ft)
            scale = (da.inputs[1].const.astype(np.float32) * db.inputs[1].const.astype(np.float32)).astype(np.float32)
            new = add_node(g, node, "Mul", [cast.output, const(g, f"{out.name}_scale", scale)], out_type=ft)
            out.replace_all_uses_with(new.output, outputs=True)
            g.remove(node)
            stats["matmul_integer"] += 1
        new.meta[PRECISION] = "int8"

    def _conv(self, g: Graph, node: Node, stats: dict[str, int]) -> None:
        dx, dw = _dq(node.inputs[0]), _dq(node.inputs[1])
        if dx is None or dw is None or np.size(dx.inputs[1].const) != 1:
            return
        if np.size(dw.inputs[1].const) > 1 and dw.attr("axis", 1) != 0:
            return  # per-channel conv weights must be per output channel
        out = node.output
        relu = None
        q = _only_q(out)
        if q is None and len(out.consumers()) == 1 and out.num_uses() == 1 and not out.is_graph_output() \
                and out.consumers()[0].op_type == "Relu":
            relu = out.consumers()[0]
            q = _only_q(relu.output)
            if q is not None:
                zp = q.inputs[2].const
                if zp is None or int(np.asarray(zp).ravel()[0]) != (0 if zp.dtype == np.uint8 else -128):
                    q = None  # saturation is a Relu only when zp is the lowest code
        if q is None:
            return
        sx = dx.inputs[1].const.astype(np.float64)
        sw = dw.inputs[1].const.astype(np.float64)
        ins = [dx.inputs[0], dx.inputs[1], _zp(dx, g, np.uint8), dw.inputs[0], dw.inputs[1], _zp(dw, g, np.int8),
               q.inputs[1], q.inputs[2]]
        b = node.inputs[2] if len(node.inputs) > 2 else None
        if b is not None:
            if b.const is None:
                return
            ins.append(const(g, f"{b.name}_int32", np.rint(b.const / (sx * sw)).astype(np.int32)))
        new = add_node(g, node, "QLinearConv", ins, {k: a for k, a in node.attrs.items()},
                       name=f"{node.name or 'Conv'}_quant", out_type=q.output.type)
        q.output.replace_all_uses_with(new.output, outputs=True)
        g.remove(q)
        if relu is not None:
            g.remove(relu)
        g.remove(node)
        new.meta[PRECISION] = "int8"
        stats["qlinear_conv"] += 1


def _sweep(g: Graph) -> None:
    """Remove DQ/Q/Cast nodes and initializers left without uses."""
    changed = True
    while changed:
        changed = False
        for n in list(g):
            if n.op_type in ("DequantizeLinear", "QuantizeLinear") and all(
                    o.num_uses() == 0 and not o.is_graph_output() for o in n.outputs):
                g.remove(n)
                changed = True
    for v in list(g.initializers.values()):
        if v.num_uses() == 0 and not v.is_graph_input and not v.is_graph_output():
            g.remove_initializer(v)
