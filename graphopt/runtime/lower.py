"""Lowering: graphopt IR -> a list of executor steps (kernel kind, tensors, attributes, weights).

Each node maps to its steps one-to-one through :data:`graphopt.runtime.lowering_table.LOWERING`:
``(domain, op type, decided precision) -> builder`` (the builders live in lower_ops, lower_attention,
lower_epilogue, lower_index, lower_decoder and lower_int4). An op with no entry, or whose builder
declines it (dtypes, attributes), becomes a fallback step that calls back into Python (a one-node
onnxruntime session, or the numpy reference of a ``graphopt``-domain op), named in the summary.

Fusion is the passes' job (O2 leaves one node per kernel, e.g. fuse-linear-epilogue gives each GEMM
its bias and activation); precision is decide-precision's (the builders read ``prec(n)``). What stays
here: a GEMM reads an int8 weight through its DequantizeLinear and a Q/DQ'd input as its input grid
(a QDQ graph lowered without O2's absorb-qdq), and two plan peepholes over the steps that only kernel
choices make possible (:func:`fold_channel_mul`, :func:`chain_linears`, :func:`quantize_in_layernorm`).

>>> steps = lower(model, precision="fp32")     # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..errors import UnsupportedError
from ..ir import DType, Model, Node, Value

__all__ = ["Tmp", "StepSpec", "lower", "PRECISIONS", "quantize_weight_s8"]

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "int8")

# Step kinds whose output 0 is a view of input 0 (no copy; the arena keeps the base alive).
ALIAS_KINDS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"})

_ACT = {"": 0, "Relu": 1, "Gelu": 2, "FastGelu": 3}
_INT_T = (DType.INT64, DType.INT32)
_NUM_T = (DType.FLOAT, DType.INT64, DType.INT32, DType.DOUBLE)
_SIZED = (DType.FLOAT, DType.INT64, DType.INT32, DType.DOUBLE, DType.BOOL, DType.UINT8, DType.INT8,
          DType.INT16, DType.UINT16, DType.FLOAT16, DType.BFLOAT16, DType.UINT32, DType.UINT64)
_CAST_T = (DType.FLOAT, DType.DOUBLE, DType.INT64, DType.INT32, DType.INT8, DType.UINT8, DType.BOOL)


class Tmp:
    """An intermediate tensor created by the lowering (not a Value of the graph)."""

    def __init__(self, name: str, dtype: DType | None = DType.FLOAT) -> None:
        self.name = name
        self.dtype = dtype

    def __repr__(self) -> str:
        return f"Tmp({self.name})"


Key = Any  # Value | Tmp


@dataclass
class StepSpec:
    """One executor step before slots are assigned."""

    kind: str
    name: str
    inputs: list[Key | None]
    outputs: list[Key | None]
    iattrs: dict[str, Any] = field(default_factory=dict)
    fattrs: dict[str, Any] = field(default_factory=dict)
    weights: list[tuple[np.ndarray, str, bool, np.ndarray | None]] = field(default_factory=list)
    callback: Callable[[list], list] | None = None
    origin: list[str] = field(default_factory=list)  # labels of the graph nodes this step implements
    native: bool = True
    detail: str = ""


def quantize_weight_s8(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel symmetric int8 for W [K, N]: returns (q [K,N] int8, scale [N]).

    >>> q, s = quantize_weight_s8(np.eye(2, dtype=np.float32))
    >>> q.tolist(), s.shape
    ([[127, 0], [0, 127]], (2,))
    """
    amax = np.abs(w).max(axis=0).astype(np.float32)
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
    return q, scale


def sparse_kernel(n: Node) -> bool:
    """``n`` is marked for the 4x1-block sparse int8 kernel (by ``sparsify-weights``, in its ONNX metadata)."""
    from graphopt.passes.pruning.sparsify import sparse_mark

    return sparse_mark(n) == "4x1"


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else v


class _Lowerer:
    def __init__(self, model: Model, precision: str, fallback_factory: Callable[[Node], Callable[[list], list]],
                 threads: int = 1):
        self.model = model
        self.threads = max(1, int(threads))
        self.g = model.graph
        self.precision = precision
        self.opset = model.opset_imports.get("", 17)
        self.fallback_factory = fallback_factory
        self.steps: list[StepSpec] = []
        self.consts: dict[Key, np.ndarray] = {}
        self.absorbed: set[Node] = set()  # Q/DQ nodes folded into the GEMM that reads them
        self._plans: dict[Node, dict | None] = {}
        self._n = 0

    # ------------------------------------------------------------- helpers
    def const(self, v: Value | None) -> np.ndarray | None:
        if v is None:
            return None
        if v in self.consts:
            return self.consts[v]
        if v.const is not None:
            return v.const
        p = v.producer()
        if p is not None and p.op_type == "Constant" and p.domain == "":
            arr = _constant_value(p)
            if arr is not None:
                self.consts[v] = arr
            return arr
        if p is not None and p.op_type == "Identity" and p.domain == "" and p.inputs[0] is not None:
            arr = self.const(p.inputs[0])  # exporters alias tied/shared weights through Identity
            if arr is not None:
                self.consts[v] = arr
            return arr
        if p is not None and p.op_type == "ConstantOfShape" and p.domain == "":
            # Fold at compile time (e.g. weights of ONNX's "light" models): Conv/Gemm then see constants.
            shape = self.const(p.inputs[0]) if p.inputs and p.inputs[0] is not None else np.zeros(0, np.int64)
            if shape is not None and shape.size <= 8 and int(np.prod(shape)) <= (1 << 26):
                fill = p.attr("value")
                fill = np.zeros(1, np.float32) if fill is None else np.asarray(fill).reshape(-1)
                arr = np.full(tuple(int(d) for d in shape.reshape(-1)), fill[0], dtype=fill.dtype)
                self.consts[v] = arr
                return arr
        return None

    def prec(self, n: Node) -> str:
        """The precision decided for node ``n`` (``decide-precision``: node_precision, a QDQ file,
        a QuantConfig), else the compile default. Never looked up by name: fusions rename nodes."""
        from ..quant.decision import precision_of

        return precision_of(n) or self.precision

    def attention_bf16(self, n: Node) -> bool:
        """Whether attention node ``n`` computes its products (QK^T, PV) in bf16: its decided attention
        precision (int8 and bf16 run the kernel's bf16 products), else any compile default below fp32."""
        from ..quant.decision import attention_precision

        return (attention_precision(n) or self.precision) != "fp32"

    def dt(self, v: Value | None) -> DType | None:
        if v is None:
            return None
        c = self.const(v)
        if c is not None:
            try:
                return DType.from_numpy(c.dtype)
            except Exception:  # noqa: BLE001 - exotic numpy dtypes
                return None
        return v.dtype

    def rank(self, v: Value) -> int | None:
        c = self.const(v)
        return c.ndim if c is not None else v.rank

    def only_use(self, v: Value, node: Node | None = None) -> Node | None:
        """The single consumer of ``v`` (and ``v`` is not a graph output), else None."""
        if v.is_graph_output() or v.num_uses() != 1:
            return None
        c = v.consumers()[0]
        return c if node is None or c is node else None

    def tmp(self, base: str, dtype: DType | None = DType.FLOAT) -> Tmp:
        self._n += 1
        return Tmp(f"{base}#{self._n}", dtype)

    def emit(self, kind: str, node_or_name: Node | str, inputs: list, outputs: list, **kw: Any) -> StepSpec:
        name = node_or_name if isinstance(node_or_name, str) else (node_or_name.name or node_or_name.outputs[0].name)
        origin = kw.pop("origin", None) or ([node_or_name.label()] if isinstance(node_or_name, Node) else [])
        s = StepSpec(kind, name, list(inputs), list(outputs), origin=origin, **kw)
        self.steps.append(s)
        return s

    # ------------------------------------------------------------- driver
    def run(self) -> list[StepSpec]:
        from .lowering_table import QDQ_PLANS

        nodes = list(self.g)
        for n in nodes:  # the Q/DQ nodes a GEMM folds into its packed weights / input quantization come
            plan = QDQ_PLANS.get((n.domain, n.op_type))  # before it: decided before anything lowers
            if plan is not None and n not in self.absorbed:
                self.absorbed.update((self.plan(n, plan) or {}).get("absorb", []))
        for n in nodes:
            if n in self.absorbed:
                continue
            if n.op_type in ("Constant", "ConstantOfShape", "Identity") and n.domain == "" \
                    and self.const(n.outputs[0]) is not None:
                continue  # a plan constant, not a step
            self.lower_node(n)
        return self.steps

    def lower_node(self, n: Node) -> None:
        """The builder of ``(domain, op type, decided precision)`` in :data:`lowering_table.LOWERING`, or
        the fallback (named in the session summary) when there is none or it declines the node."""
        from .lowering_table import builder_of

        fn = builder_of(n, self.prec(n))
        ok = False
        if fn is not None:
            mark = len(self.steps)
            try:
                ok = bool(fn(self, n))
            except UnsupportedError as e:
                logger.info("%s: native lowering declined (%s)", n.label(), e)
                ok = False
            if not ok:
                del self.steps[mark:]
        if not ok:
            self.emit_fallback(n)

    def emit_fallback(self, n: Node) -> None:
        extra = [v for v in n.implicit_inputs()] if n.subgraphs() else []
        cb = self.fallback_factory(n)
        s = self.emit("PyCall", n, list(n.inputs) + extra, list(n.outputs), callback=cb, native=False)
        s.detail = f"fallback {n.domain + '::' if n.domain else ''}{n.op_type}"

    # ------------------------------------------------------------- fusions
    def _linear_step(self, x: Value, w: np.ndarray, bias: np.ndarray | None, act: int, out: Value,
                     origin: list[str], name: str, prec: str, qdq: dict | None = None, sparse: bool = False,
                     grid: dict | None = None) -> None:
        """Emit one Linear step for y = act(x @ w + bias), w [K, N] fp32. ``sparse``: the node is
        marked for the 4x1-block sparse kernel (``sparsify-weights``); int8 weights are packed for it.
        ``prec``: the node's decided precision (:meth:`prec`); ``grid``: the int8 weights
        and scales of a file's grid (``{"w", "w_scale"}``), used instead of quantizing ``w``."""
        s8 = "s8_sparse" if sparse else "s8"
        ins: list = [x]
        if bias is not None:
            b = Tmp(name + "/bias")
            self.consts[b] = np.ascontiguousarray(bias.astype(np.float32).reshape(-1))
            ins.append(b)
        if qdq is not None and prec == "int8":
            s = self.emit("Linear", name, ins, [out], iattrs={"act": act, "mode": 2, "a_zp": qdq["a_zp"]},
                          fattrs={"a_scale": qdq["a_scale"]}, origin=origin)
            for c0, c1 in self._col_parts(qdq["w"].shape[1]):
                s.weights.append((np.ascontiguousarray(qdq["w"][:, c0:c1]), s8, False, qdq["w_scale"][c0:c1].copy()))
            s.detail = "int8 static (QDQ)" + (", sparse 4x1" if sparse else "")
            return
        mode = {"fp32": 0, "bf16": 1, "int8": 2}[prec]
        s = self.emit("Linear", name, ins, [out], iattrs={"act": act, "mode": mode}, origin=origin)
        w = np.asarray(w, np.float32)  # no copy of an fp32 (possibly mapped) weight
        if mode == 2:
            q, sc = (grid["w"], grid["w_scale"]) if grid is not None else quantize_weight_s8(w)
            for c0, c1 in self._col_parts(w.shape[1]):
                s.weights.append((np.ascontiguousarray(q[:, c0:c1]), s8, False, sc[c0:c1].copy()))
            s.detail = "int8 dynamic per-row act, per-channel s8 weights" + (", sparse 4x1" if sparse else "")
        else:
            for c0, c1 in self._col_parts(w.shape[1]):  # views: build_plan copies one part at a time to pack it
                s.weights.append((w[:, c0:c1], "f32" if mode == 0 else "bf16", False, None))
            s.detail = prec

    def _col_parts(self, n: int) -> list[tuple[int, int]]:
        """Column slices (multiples of 16) packed separately so threads split N: one per thread."""
        parts = max(1, min(self.threads, n // 64))
        if parts == 1:
            return [(0, n)]
        size = -(-n // parts)
        size = -(-size // 16) * 16
        return [(c, min(n, c + size)) for c in range(0, n, size)]

    def _int8_weight(self, v: Value, ndim: int, channel_axis: int) -> tuple[np.ndarray, np.ndarray, Node] | None:
        """v = DequantizeLinear(int8 const of rank ``ndim``, scale per tensor or per ``channel_axis``,
        zero point 0) -> (int8 weights, per-channel scales, the DQ node)."""
        p = v.producer()
        if p is None or p.op_type != "DequantizeLinear" or p.domain != "" or int(p.attr("block_size", 0) or 0):
            return None
        q, sc = self.const(p.inputs[0]), self.const(p.inputs[1])
        zp = self.const(p.inputs[2]) if len(p.inputs) > 2 and p.inputs[2] is not None else None
        if q is None or sc is None or q.ndim != ndim or q.dtype != np.int8 or (zp is not None and np.any(zp != 0)):
            return None
        channels = q.shape[channel_axis]
        if sc.size != 1 and not (sc.size == channels and int(p.attr("axis", 1)) % ndim == channel_axis):
            return None
        return q, np.broadcast_to(sc.astype(np.float32).reshape(-1), (channels,)).copy(), p

    def _weight_of(self, b: Value, transposed: bool = False) -> tuple[np.ndarray, dict | None] | None:
        """fp32 weights [K, N] of a MatMul's / Gemm's B: a constant, or DequantizeLinear(int8 const)
        from a QDQ model. ``transposed``: B is stored [N, K] (Gemm transB=1)."""
        c = self.const(b)
        if c is not None:
            if c.ndim != 2 or c.dtype != np.float32:
                return None
            w = c.T if transposed else c
            return w, self._grid(b, w)
        iw = self._int8_weight(b, 2, 0 if transposed else 1)
        if iw is None:
            return None
        q, scale, p = iw
        if transposed:
            q = q.T
        return q.astype(np.float32) * scale, {"w": np.ascontiguousarray(q), "w_scale": scale, "dq": p}

    def _grid(self, v: Value, w: np.ndarray) -> dict | None:
        """A float weight [K, N] on a file's int8 grid (``meta[WEIGHT_GRID]``, from absorb-qdq):
        ``{"w": int8 [K, N], "w_scale": [N]}`` -- the file's integers, recovered exactly."""
        from ..quant.decision import weight_grid

        sc = weight_grid(v)
        if sc is None or sc.shape != (w.shape[1],):
            return None
        q = np.clip(np.rint(w / sc), -127, 127).astype(np.int8)
        return {"w": np.ascontiguousarray(q), "w_scale": sc, "grid": True}

    def static_input(self, n: Node, x: Value, qinfo: dict | None) -> tuple[Value, dict | None, list[Node]]:
        """For a GEMM-based node ``n`` with int8 weights (``qinfo``) whose input ``x`` is Q/DQ'd per
        tensor: (the float input, qinfo with the activation grid, the Q/DQ nodes only ``n`` reads, which
        fold into its GEMM). Otherwise (x, None, [])."""
        if qinfo is not None and qinfo.get("grid"):
            from ..quant.decision import act_grid

            ag = act_grid(n) if self.prec(n) == "int8" else None
            return x, (dict(qinfo, a_scale=ag[0], a_zp=ag[1]) if ag is not None else None), []
        aq = self._act_qdq(x) if qinfo is not None and self.prec(n) == "int8" else None
        if aq is None:
            return x, None, []
        x0, a_scale, a_zp, (qn, dqn) = aq
        absorb: list[Node] = []
        for node in (qinfo["dq"], dqn, qn):
            if all(c is n or c in absorb for c in node.outputs[0].consumers()) and not node.outputs[0].is_graph_output():
                absorb.append(node)
        return x0, dict(qinfo, a_scale=a_scale, a_zp=a_zp), absorb

    def plan(self, n: Node, fn: Callable[[_Lowerer, Node], dict | None]) -> dict | None:
        """``fn(self, n)``, computed once per node (plans are asked for before and while lowering)."""
        if n not in self._plans:
            self._plans[n] = fn(self, n)
        return self._plans[n]

    def _act_qdq(self, x: Value) -> tuple[Value, float, int, list[Node]] | None:
        """x = DequantizeLinear(QuantizeLinear(f, s, z), s, z) with per-tensor constants -> (f, s, z as u8)."""
        dq = x.producer()
        if dq is None or dq.op_type != "DequantizeLinear" or dq.domain != "":
            return None
        q = dq.inputs[0].producer() if dq.inputs[0] is not None else None
        if q is None or q.op_type != "QuantizeLinear" or q.domain != "":
            return None
        s1, s2 = self.const(q.inputs[1]), self.const(dq.inputs[1])
        z1 = self.const(q.inputs[2]) if len(q.inputs) > 2 and q.inputs[2] is not None else np.zeros((), np.uint8)
        z2 = self.const(dq.inputs[2]) if len(dq.inputs) > 2 and dq.inputs[2] is not None else np.zeros((), np.uint8)
        if s1 is None or s2 is None or z1 is None or z2 is None or s1.size != 1 or z1.size != 1:
            return None
        if float(s1.reshape(-1)[0]) != float(s2.reshape(-1)[0]) or int(z1.reshape(-1)[0]) != int(z2.reshape(-1)[0]):
            return None
        if z1.dtype not in (np.uint8, np.int8) or q.attr("output_dtype", 0):
            return None
        zp = int(z1.reshape(-1)[0]) + (128 if z1.dtype == np.int8 else 0)  # s8 grid == u8 grid shifted by 128
        return q.inputs[0], float(s1.reshape(-1)[0]), zp, [q, dq]

def _static_shape(lw: _Lowerer, v: Value) -> tuple | None:
    c = lw.const(v)
    if c is not None:
        return tuple(c.shape)
    if v.shape is None:
        return None
    return tuple(d if isinstance(d, int) else None for d in v.shape)


def _constant_value(n: Node) -> np.ndarray | None:
    for k, a in n.attrs.items():
        v = a.value
        if k == "value" and isinstance(v, np.ndarray):
            return v
        if k == "value_float":
            return np.array(v, np.float32)
        if k == "value_floats":
            return np.array(v, np.float32)
        if k == "value_int":
            return np.array(v, np.int64)
        if k == "value_ints":
            return np.array(v, np.int64)
    return None


def _ln_native(lw: _Lowerer, n: Node) -> bool:
    if lw.dt(n.inputs[0]) != DType.FLOAT or any(o.num_uses() or o.is_graph_output() for o in n.outputs[1:]):
        return False
    g = lw.const(n.inputs[1])
    axis = int(n.attr("axis", -1))
    r = lw.rank(n.inputs[0])
    if g is None:
        return False
    if axis < 0:
        return g.ndim == -axis or g.size == 1 and axis == -1
    return r is not None and g.ndim == r - axis


def lower(model: Model, precision: str, fallback_factory: Callable[[Node], Callable[[list], list]],
          threads: int = 1) -> tuple[list[StepSpec], dict[Key, np.ndarray]]:
    """Map every node of ``model`` to executor steps; returns (steps, extra constants).

    ``fallback_factory(node)`` returns the Python callable a fallback step runs. ``precision`` is
    the default of the nodes that carry no decision (``decide-precision`` records the others).
    """
    if precision not in PRECISIONS:
        raise UnsupportedError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    lw = _Lowerer(model, precision, fallback_factory, threads)
    steps = lw.run()
    outs = set(map(id, model.graph.outputs))
    fold_channel_mul(steps, outs, lambda k: lw.const(k) if isinstance(k, Value) else lw.consts.get(k))
    chain_linears(steps, outs)
    quantize_in_layernorm(steps, outs)
    return steps, lw.consts


def _uses(steps: list[StepSpec]) -> dict[int, list[StepSpec]]:
    uses: dict[int, list[StepSpec]] = {}
    for st in steps:
        for k in st.inputs:
            if k is not None:
                uses.setdefault(id(k), []).append(st)
    return uses


def _a_mul(st: StepSpec) -> Key | None:
    """The per-channel multiplier a Linear step applies to its float input (input 2), or None."""
    return st.inputs[2] if st.kind == "Linear" and len(st.inputs) > 2 else None


def _static_int8(st: StepSpec) -> bool:
    return st.kind == "Linear" and st.iattrs.get("mode") == 2 and st.fattrs.get("a_scale", 0.0) > 0.0


def _linear_k(st: StepSpec) -> int | None:
    if not st.weights:
        return None
    w, _, transposed, _ = st.weights[0]
    return int(w.shape[1] if transposed else w.shape[0])


def fold_channel_mul(steps: list[StepSpec], graph_outputs: set[int], const_of: Callable[[Key], np.ndarray | None]) -> int:
    """Mul(x, c[K]) read only by static int8 Linears: they scale x by c while quantizing it.

    SmoothQuant leaves such a Mul (1/s) where a LayerNorm output also feeds the residual or a GEMM's
    output goes through GELU; the Linear's a_mul (input 2) computes the same fp32 products, so the
    bits do not change and the step (a full pass over x) goes away. :func:`chain_linears` then moves
    c into a producing GEMM's epilogue. Returns the number of Mul steps removed.
    """
    uses = _uses(steps)
    gone: set[int] = set()
    for st in steps:
        if st.kind != "Mul" or st.callback is not None or len(st.inputs) != 2 or len(st.outputs) != 1:
            continue
        y = st.outputs[0]
        arrs = [const_of(k) if k is not None else None for k in st.inputs]
        ci = 1 if arrs[1] is not None and arrs[0] is None else 0 if arrs[0] is not None and arrs[1] is None else -1
        if ci < 0 or y is None or id(y) in graph_outputs:
            continue
        c, x = arrs[ci], st.inputs[1 - ci]
        cons = uses.get(id(y), [])
        if c.dtype != np.float32 or c.ndim < 1 or c.shape[-1] != c.size or not cons or \
                any(not _static_int8(n) or n.inputs[0] is not y or any(k is y for k in n.inputs[1:])
                    or _a_mul(n) is not None or _linear_k(n) != c.size for n in cons):
            continue
        for n in cons:
            n.inputs = [x, n.inputs[1] if len(n.inputs) > 1 else None, st.inputs[ci]]
            n.origin = st.origin + n.origin
            n.detail = (n.detail + " " if n.detail else "") + "x * per-channel constant (folded Mul)"
        gone.add(id(st))
    steps[:] = [st for st in steps if id(st) not in gone]
    return len(gone)


def _dynamic_int8(st: StepSpec) -> bool:
    """A dynamic int8 Linear quantizing its float input per row (f32 or bf16 output, no multiplier)."""
    return st.kind == "Linear" and st.iattrs.get("mode") == 2 and not st.fattrs.get("a_scale", 0.0) > 0.0 \
        and st.iattrs.get("out", 0) != 2 and _a_mul(st) is None and len(st.inputs) <= 4


def _read_rows(st: StepSpec, q: Key, grid: Key) -> None:
    """Dynamic int8 Linear ``st`` reads u8 rows ``q`` already quantized on their own grids (input 4)."""
    st.inputs = [q] + (st.inputs[1:] + [None, None, None])[:3] + [grid]


def quantize_in_layernorm(steps: list[StepSpec], graph_outputs: set[int]) -> int:
    """LayerNorm -> int8 Linears: the LayerNorm also writes their u8 input in its pass.

    Static consumers (one grid): y quantized on their grid (output 2). Dynamic consumers: each row
    on its own grid (output 2, and output 3 the [2, rows] row grid the Linears read as input 4),
    computed while the row is in L1 -- the same bits the Linears' own per-row quantization gives.
    The fp32 output stays (the residual path reads it); the Linears read the u8 copy instead of
    quantizing y again. Returns the number of LayerNorm steps changed.
    """
    uses = _uses(steps)
    n = 0
    for st in steps:
        if st.kind != "LayerNorm" or len(st.outputs) > 2 or st.outputs[0] is None:
            continue
        y = st.outputs[0]
        mine = [c for c in uses.get(id(y), []) if c.kind == "Linear" and c.inputs[0] is y
                and not any(k is y for k in c.inputs[1:])]
        lin = [c for c in mine if _static_int8(c) and _a_mul(c) is None]
        dyn = [c for c in mine if _dynamic_int8(c)]
        grids = {(float(c.fattrs["a_scale"]), int(c.iattrs.get("a_zp", 0))) for c in lin}
        q = Tmp(f"{st.name}/u8", DType.UINT8)
        if len(grids) == 1:
            scale, zp = grids.pop()
            st.outputs = [y, st.outputs[1] if len(st.outputs) > 1 else None, q]
            st.fattrs["q_scale"] = scale
            st.iattrs["q_zp"] = zp
            st.detail = (st.detail + " " if st.detail else "") + "+ u8 copy for the next GEMM"
            for c in lin:
                c.inputs[0] = q
        elif dyn and not lin:
            grid = Tmp(f"{st.name}/u8_rows")
            st.outputs = [y, st.outputs[1] if len(st.outputs) > 1 else None, q, grid]
            st.detail = (st.detail + " " if st.detail else "") + "+ u8 rows on their own grids for the next GEMM"
            for c in dyn:
                _read_rows(c, q, grid)
                c.detail = (c.detail + " " if c.detail else "") + "(rows quantized by the LayerNorm)"
        else:
            continue
        n += 1
    return n


def _reads_bf16(st: StepSpec) -> bool:
    """A step that rounds its input 0 to bf16 anyway: a bf16 GEMM, or attention on packed QKV
    with bf16 products (its K and V come from the same tensor)."""
    if st.kind == "Linear":
        return st.iattrs.get("mode", 0) == 1
    return st.kind == "Attention" and bool(st.iattrs.get("bf16", 0)) and bool(st.iattrs.get("packed", 0))


def chain_linears(steps: list[StepSpec], graph_outputs: set[int]) -> int:
    """Producer -> consumer through a private tensor: the producer writes what the consumer reads.

    Into bf16 GEMMs and bf16-product attention, Linear and Attention steps pass bf16 (no fp32
    round trip); a static int8 GEMM's input quantization moves into the producing GEMM's
    epilogue (requantize to u8 on the consumer's grid). Returns the number of chained pairs.
    """
    uses = _uses(steps)
    n = 0
    for st in steps:
        if st.kind not in ("Linear", "Attention") or st.iattrs.get("out", 0) or len(st.outputs) != 1:
            continue
        y = st.outputs[0]
        cons = uses.get(id(y), [])
        if id(y) in graph_outputs or len(cons) != 1 or cons[0].inputs[0] is not y \
                or any(k is y for k in cons[0].inputs[1:]):
            continue
        nxt = cons[0]
        if _reads_bf16(nxt):
            st.iattrs["out"] = 1
            st.detail += " -> bf16 out"
        elif st.kind == "Linear" and _dynamic_int8(st) and nxt.kind == "Linear" and _dynamic_int8(nxt):
            grid = Tmp(f"{st.name}/u8_rows")
            st.iattrs["out"] = 3
            st.outputs = [y, grid]
            _read_rows(nxt, y, grid)
            st.detail += " -> u8 rows on their own grids (quantized in L2 for the next GEMM)"
            nxt.detail = (nxt.detail + " " if nxt.detail else "") + "(rows quantized by the previous GEMM)"
        elif st.kind == "Linear" and nxt.kind == "Linear" and nxt.iattrs.get("mode", 0) == 2 \
                and nxt.fattrs.get("a_scale", 0.0) > 0.0:
            st.iattrs.update(out=2, out_zp=int(nxt.iattrs.get("a_zp", 0)))
            st.fattrs["out_scale"] = float(nxt.fattrs["a_scale"])
            st.detail += " -> u8 out (requantized for the next GEMM)"
            mul = _a_mul(nxt)
            if mul is not None:  # the consumer's input multiplier becomes this GEMM's out_mul (input 3)
                st.inputs = (st.inputs + [None, None, None])[:3] + [mul]
                nxt.inputs = nxt.inputs[:2]
                nxt.detail = nxt.detail.replace(" x * per-channel constant (folded Mul)", "")
                st.detail += " x per-channel constant"
        else:
            continue
        n += 1
    return n
