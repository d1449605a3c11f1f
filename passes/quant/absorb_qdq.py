"""``absorb-qdq``: a QDQ file's QuantizeLinear/DequantizeLinear become per-node int8 decisions.

Whoever wrote the file -- ``graphopt.quantize``, onnxruntime's ``quantize_static`` (QDQ format,
per channel or per tensor), NNCF, a QAT export (fake-quantized weights as ``Q(W)->DQ``) -- the
pass leaves the float graph the fusions know, plus the file's own grids, so ``compile`` builds the
same fused int8 plan as for the float file at int8 (no re-calibration):

- a GEMM (MatMul, Gemm, Conv, graphopt Linear / MultiHeadAttention / FusedConv) whose weight is
  ``DQ(int8 W)`` or ``DQ(Q(float W))`` (through an optional 2-D Transpose) gets the dequantized
  float weight, whose value keeps the per-output-channel scales (``meta[WEIGHT_GRID]``), and the
  decision ``int8`` when its input is ``DQ(Q(x))`` per tensor, with that grid (static int8; the GEMM
  reads ``x``); with float activations (weight-only QDQ) the precision stays the compile's (fp32 runs
  the dequantized weights, int8 quantizes the activations at run time on the file's weight grid);
- a pair whose grid a GEMM took stays for the other nodes that read it (onnxruntime shares one
  pair between a GEMM and the residual Add: the file quantizes that residual); every other
  activation ``Q->DQ`` pair is bypassed: the consumers read the float value, and the fused plan
  runs LayerNorm, softmax and the attention products in float (or bf16), as for the float file;
  ``DQ`` of a constant (biases, tables) is folded to its float value;
- GEMMs of the file that the file left float are decided ``fp32``; so are embedding tables
  (Gather of a constant) the file left float (``int8`` where it quantized them); the products of
  activation x activation MatMuls (attention) are ``int8`` where the file quantized both inputs
  (the kernel's bf16 products) and ``fp32`` otherwise.

The ``unk__N`` dims that onnxruntime's and NNCF's shape inference leave in a file are forgotten
(O2's shape inference derives them again), so the attention of dynamo exports fuses.

Run by ``graphopt.compile`` before O2 when the file has Q/DQ nodes; not part of O2 (an exported
QDQ file must keep its Q/DQ for onnxruntime).
"""

from __future__ import annotations

from typing import TypeGuard

import numpy as np

from graphopt.ir import Graph, Model, Node, TensorType, Value
from graphopt.pattern import const_value
from graphopt.pm import Pass, PassContext, PassResult, register_pass
from graphopt.quant.decision import WEIGHT_GRID, attention_precision, decide, decide_attention, precision_of

__all__ = ["AbsorbQDQPass", "has_qdq"]

_QDQ = ("QuantizeLinear", "DequantizeLinear")
# (op, domain) -> (weight input index, rank of the weight)
_GEMMS = {("MatMul", ""): (1, 2), ("Gemm", ""): (1, 2), ("Conv", ""): (1, 4),
          ("Linear", "graphopt"): (1, 2), ("MultiHeadAttention", "graphopt"): (1, 2),
          ("FusedConv", "graphopt"): (1, 4)}


def has_qdq(model: Model) -> bool:
    return any(n.op_type in _QDQ and n.domain == "" for n in model.graph)


def _is(n: Node | None, op: str) -> TypeGuard[Node]:
    return n is not None and n.op_type == op and n.domain == ""


def _params(n: Node) -> tuple[np.ndarray, np.ndarray, int] | None:
    """(scale, zero point, axis) of a Q or DQ node with constant parameters (plain per-tensor or
    per-axis; no blocks, no output_dtype), else None."""
    if int(n.attr("block_size", 0) or 0) or n.attr("output_dtype"):
        return None
    s = const_value(n.inputs[1])
    z = const_value(n.inputs[2]) if len(n.inputs) > 2 and n.inputs[2] is not None else None
    if s is None or s.dtype != np.float32 or (len(n.inputs) > 2 and n.inputs[2] is not None and z is None):
        return None
    if z is None:
        z = np.zeros(s.shape, np.uint8)
    return s, z, int(n.attr("axis", 1))


def _dequantize(q: np.ndarray, s: np.ndarray, z: np.ndarray, axis: int) -> np.ndarray:
    """What DequantizeLinear computes, (q - z) * s in float32 (s, z per tensor or along ``axis``)."""
    shape = [1] * q.ndim
    if s.size > 1:
        shape[axis % q.ndim] = s.size
    return ((q.astype(np.float32) - z.astype(np.float32).reshape(shape)) * s.reshape(shape)).astype(np.float32)


def _quantize(x: np.ndarray, s: np.ndarray, z: np.ndarray, axis: int) -> np.ndarray:
    """What QuantizeLinear computes: saturate(round_half_even(x / s) + z) in z's type."""
    shape = [1] * x.ndim
    if s.size > 1:
        shape[axis % x.ndim] = s.size
    info = np.iinfo(z.dtype)
    q = np.rint(x.astype(np.float32) / s.reshape(shape)) + z.astype(np.float32).reshape(shape)
    return np.clip(q, info.min, info.max).astype(z.dtype)


def _weight_grid(n: Node, idx: int, rank: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(float weight in the node's layout, per-output-channel scales) of an int8 weight, else None."""
    v = n.inputs[idx] if len(n.inputs) > idx else None
    p = v.producer() if v is not None else None
    transposed = False
    if _is(p, "Transpose") and rank == 2 and list(p.attr("perm", [1, 0])) == [1, 0]:
        transposed, v = True, p.inputs[0]
        p = v.producer() if v is not None else None
    if not _is(p, "DequantizeLinear"):
        return None
    dq = _params(p)
    if dq is None:
        return None
    s, z, axis = dq
    q = const_value(p.inputs[0])
    src = p.inputs[0].producer() if q is None and p.inputs[0] is not None else None
    if q is None and _is(src, "QuantizeLinear"):  # fake-quant of a float weight (QAT export): quantize it here
        w, qp = const_value(src.inputs[0]), _params(src)
        if w is None or qp is None or w.dtype != np.float32 or any(
                not np.array_equal(a, np.asarray(b)) for a, b in zip(qp, (s, z, axis)) if isinstance(a, np.ndarray)):
            return None
        q = _quantize(w, s, z, axis)
    if q is None or q.dtype != np.int8 or q.ndim != rank or np.any(z != 0):
        return None  # the native kernels take symmetric s8 weights
    if s.size > 1 and (s.ndim != 1 or s.size != q.shape[axis % rank]):
        return None
    f = _dequantize(q, s, z, axis)
    out_axis = 0 if rank == 4 or (n.op_type == "Gemm" and int(n.attr("transB", 0))) else 1
    w_axis = axis % rank
    if transposed:
        f, w_axis = np.ascontiguousarray(f.T), 1 - w_axis
    channels = f.shape[out_axis]
    if s.size > 1 and w_axis != out_axis:
        return None  # scales along the input dimension: not a per-output-channel grid
    return f, np.ascontiguousarray(np.broadcast_to(s.reshape(-1), (channels,)).astype(np.float32))


def _act_pair(v: Value | None) -> tuple[Value, float, int] | None:
    """v = DQ(Q(x, s, z), s, z) per tensor -> (x, s, zero point on the u8 grid)."""
    dq = v.producer() if v is not None else None
    if not _is(dq, "DequantizeLinear") or dq.inputs[0] is None:
        return None
    q = dq.inputs[0].producer()
    if not _is(q, "QuantizeLinear"):
        return None
    a, b = _params(q), _params(dq)
    if a is None or b is None or a[0].size != 1 or b[0].size != 1 or a[1].size != 1 or b[1].size != 1:
        return None
    if float(a[0].reshape(-1)[0]) != float(b[0].reshape(-1)[0]) or a[1].dtype != b[1].dtype or \
            int(a[1].reshape(-1)[0]) != int(b[1].reshape(-1)[0]) or a[1].dtype not in (np.uint8, np.int8):
        return None
    zp = int(a[1].reshape(-1)[0]) + (128 if a[1].dtype == np.int8 else 0)  # s8 grid = u8 grid shifted by 128
    x = q.inputs[0]
    return None if x is None else (x, float(a[0].reshape(-1)[0]), zp)


@register_pass
class AbsorbQDQPass(Pass):
    """QDQ -> float graph + per-node int8 decisions with the file's grids."""

    name = "absorb-qdq"
    description = "a QDQ file's Q/DQ nodes -> per-node int8 decisions (the file's scales), float graph for the fusions"

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        g = model.graph
        if not has_qdq(model):
            return PassResult(False, {})
        stats = {"static": 0, "weights_only": 0, "float_gemms": 0, "bypassed": 0, "kept": 0, "folded": 0, "tables": 0}
        graded: set[Node] = set()  # DQ nodes of activation pairs whose grid a GEMM took
        for n in list(g):
            if _is(n, "Gather") and n.inputs[0] is not None and precision_of(n) is None:
                table = n.inputs[0].producer()
                if const_value(n.inputs[0]) is not None or _is(table, "DequantizeLinear"):
                    # an embedding table: int8 rows where the file quantized it, else float
                    decide(n, "int8" if _is(table, "DequantizeLinear") else "fp32")
                    stats["tables"] += 1
                continue
            if n.domain == "graphopt" and n.op_type == "EmbedLayerNorm" and precision_of(n) is None:
                decide(n, "fp32")  # an O2 file's embedding: its table is a float constant
                stats["tables"] += 1
                continue
            spec = _GEMMS.get((n.op_type, n.domain))
            if (n.op_type, n.domain) == ("Attention", "graphopt") and attention_precision(n) is None:
                decide_attention(n, "fp32")  # as MultiHeadAttention's: float products in the file
            if spec is None:
                continue
            if n.domain == "graphopt" and n.op_type == "MultiHeadAttention" and attention_precision(n) is None:
                decide_attention(n, "fp32")  # an O2 file's attention core: float products in the file
            if _is(n, "MatMul") and all(v is not None and const_value(v) is None and _weight_grid(n, 1, 2) is None
                                        and (v.producer() is None or not _is(v.producer(), "DequantizeLinear")
                                             or _act_pair(v) is not None) for v in n.inputs):
                # activation x activation (attention scores / context): the file's precision for them,
                # unless the quantizer recorded its config's (graphopt.quantize: bf16 / fp32 / int8)
                if attention_precision(n) is None:
                    decide_attention(n, "int8" if all(_act_pair(v) is not None for v in n.inputs) else "fp32")
                continue
            grid = _weight_grid(n, *spec)
            if grid is None:
                if n.inputs[spec[0]] is not None and const_value(n.inputs[spec[0]]) is not None \
                        and precision_of(n) is None:
                    decide(n, "fp32")  # the file left this GEMM float
                    stats["float_gemms"] += 1
                continue
            w, scales = grid
            old_w = n.inputs[spec[0]]
            assert old_w is not None  # _weight_grid found its DequantizeLinear
            wv = g.add_initializer(g.unique_name(f"{old_w.name}_absorbed"), w)
            wv.meta[WEIGHT_GRID] = scales
            n.set_input(spec[0], wv)
            x0 = n.inputs[0]
            act = _act_pair(x0)
            if act is not None and x0 is not None:
                dq = x0.producer()
                assert dq is not None  # _act_pair found it
                graded.add(dq)
                n.set_input(0, act[0])
            if act is not None:  # a per-node choice made before (node_precision) beats the file
                decide(n, precision_of(n) or "int8", act=act[1:])
                stats["static"] += 1
            else:  # int8 weights, float activations: the weights' grid stays, the precision is the compile's
                stats["weights_only"] += 1
        for n in list(g):
            if not _is(n, "DequantizeLinear") or n.graph is None or n.outputs[0].is_graph_output() \
                    or not n.outputs[0].num_uses():
                continue
            pair = _act_pair(n.outputs[0])
            if pair is not None and n in graded and not all(_is(c, "MatMul") for c in n.outputs[0].consumers()):
                stats["kept"] += 1  # a GEMM's grid that other nodes read too (a residual): as the file says
                continue
            if pair is not None:
                n.outputs[0].replace_all_uses_with(pair[0])
                stats["bypassed"] += 1
                continue
            c = self._folded(n)
            if c is not None:
                n.outputs[0].replace_all_uses_with(g.add_initializer(g.unique_name(n.outputs[0].name + "_f"), c))
                stats["folded"] += 1
        _sweep(g)
        stats["forgotten_dims"] = _forget_tool_dims(g)
        return PassResult(True, stats)

    @staticmethod
    def _folded(dq: Node) -> np.ndarray | None:
        """DQ(const) or DQ(Q(const)): the float value it computes."""
        prm = _params(dq)
        if prm is None or dq.inputs[0] is None:
            return None
        q = const_value(dq.inputs[0])
        src = dq.inputs[0].producer()
        if q is None and _is(src, "QuantizeLinear"):
            x, qp = const_value(src.inputs[0]), _params(src)
            if x is None or qp is None:
                return None
            q = _quantize(x, *qp)
        if q is None or q.dtype.kind not in "iu":
            return None
        return _dequantize(q, *prm)


def _forget_tool_dims(g: Graph) -> int:
    """onnxruntime's and NNCF's symbolic shape inference leave ``unk__N`` dims in the file's
    value_info: names that no other value shares (the head Reshape's [batch, seq] stop matching the
    input's, and the attention fusion cannot prove heads are split per token). Forget them (shape
    inference in O2 derives the dims again from the inputs')."""
    n_forgot = 0
    for n in g:
        for o in n.outputs:
            shape = o.shape
            if shape is not None and any(isinstance(d, str) and d.startswith("unk__") for d in shape):
                o.type = TensorType(o.dtype, None) if o.dtype is not None else None
                n_forgot += 1
    return n_forgot


def _sweep(g: Graph) -> None:
    """Remove the Q/DQ/Transpose/Constant nodes and initializers this pass left without uses."""
    changed = True
    while changed:
        changed = False
        for n in list(g):
            if n.domain == "" and n.op_type in (*_QDQ, "Transpose", "Constant") and \
                    all(o.num_uses() == 0 and not o.is_graph_output() for o in n.outputs):
                g.remove(n)
                changed = True
    for v in list(g.initializers.values()):
        if v.num_uses() == 0 and not v.is_graph_input and not v.is_graph_output():
            g.remove_initializer(v)
