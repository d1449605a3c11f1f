"""``assign-precision``: AMP-style bf16/fp16 mixed precision, materialised with casts.

Each node gets ``meta[PRECISION]``: ops on the *allow* list (compute-heavy:
MatMul, Gemm, Conv...) run in low precision; ops on the *deny* list
(Softmax, LayerNorm statistics, reductions, exp/log/pow, and every producer of
a graph output) stay fp32; *inherit* ops (elementwise, data movement) run in
low precision only when all their float inputs already are. Casts are
inserted only where a value crosses from one precision to the other (one
shared cast per value and target type), constant inputs are converted
offline, and Cast->Cast round trips are folded.

For ``target="onnxruntime"`` an op runs in low precision only if onnxruntime's
CPU provider has a kernel for it in that type (onnxruntime 1.2x/1.3x has no
bf16 compute kernels on CPU, only data movement, so a bf16 graph for it keeps
the compute in fp32; the pass reports every such op in ``stats``). fp16 is
handled by onnxruntime on CPU. ``target="native"`` assumes graphopt's own
kernels.
"""

from __future__ import annotations

import logging
from collections import Counter

from graphopt.errors import GraphoptError
from graphopt.ir import DType, Model, Node, TensorType, Value
from graphopt.pm import Pass, PassContext, PassResult, register_pass
from graphopt.quant._build import add_node, const
from graphopt.quant.specs import PRECISION

__all__ = ["AssignPrecisionPass", "ALLOW", "DENY", "INHERIT", "ort_cpu_supports"]

logger = logging.getLogger(__name__)

ALLOW = frozenset({"MatMul", "Gemm", "Conv", "ConvTranspose", "FusedLinear", "Linear", "FusedMatMul"})
DENY = frozenset({"Softmax", "LogSoftmax", "LayerNormalization", "SkipLayerNormalization",
                  "BatchNormalization", "InstanceNormalization", "GroupNormalization", "ReduceMean",
                  "ReduceSum", "ReduceSumSquare", "ReduceL2", "ReduceLogSumExp", "Pow", "Sqrt", "Exp",
                  "Log", "Reciprocal", "CumSum", "Erf", "Range"})
INHERIT = frozenset({"Add", "Sub", "Mul", "Div", "Relu", "Gelu", "FastGelu", "Tanh", "Sigmoid", "Clip",
                     "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Concat", "Split",
                     "Slice", "Gather", "Identity", "MaxPool", "AveragePool", "GlobalAveragePool",
                     "Expand", "Where", "BiasGelu", "Neg", "Abs", "Max", "Min"})

# onnxruntime CPU provider kernels in bf16 / fp16 (probed with onnxruntime 1.32; fp16 ops
# without a kernel are run by onnxruntime's own cast insertion, so fp16 is open-ended).
_ORT_BF16 = frozenset({"Transpose", "Reshape", "Identity", "Unsqueeze", "Squeeze", "Concat", "Flatten",
                       "Gather", "Slice", "Split", "Cast"})
_ORT_FP16_NO = frozenset({"LayerNormalization"})


def ort_cpu_supports(op_type: str, dtype: str) -> bool:
    """Whether onnxruntime's CPU provider runs ``op_type`` in ``dtype`` ("bf16" or "fp16")."""
    if dtype == "bf16":
        return op_type in _ORT_BF16
    return op_type not in _ORT_FP16_NO


def _float_inputs(node: Node) -> list[tuple[int, Value]]:
    return [(i, v) for i, v in enumerate(node.inputs)
            if v is not None and v.dtype is not None and v.dtype.is_float and v.dtype is not DType.DOUBLE]


def _float_out(node: Node) -> bool:
    return any(o.dtype is not None and o.dtype.is_float for o in node.outputs)


@register_pass
class AssignPrecisionPass(Pass):
    """``AssignPrecisionPass("bf16", target="native")``; needs value dtypes (run ``infer_shapes`` first).

    >>> AssignPrecisionPass("fp16").run(model, PassContext())   # doctest: +SKIP
    """

    name = "assign-precision"
    description = "bf16/fp16 mixed precision with allow/deny/inherit lists; casts at boundaries only"

    def __init__(self, dtype: str = "bf16", *, target: str = "onnxruntime", allow: frozenset[str] = ALLOW,
                 deny: frozenset[str] = DENY, inherit: frozenset[str] = INHERIT,
                 keep_fp32_nodes: frozenset[str] = frozenset(), force_nodes: frozenset[str] = frozenset()) -> None:
        if dtype not in ("bf16", "fp16"):
            raise GraphoptError(f"assign-precision: dtype must be bf16 or fp16, got {dtype!r}")
        if target not in ("onnxruntime", "native", "openvino"):
            raise GraphoptError(f"assign-precision: unknown target {target!r}")
        self.dtype, self.target = dtype, target
        self.allow, self.deny, self.inherit = frozenset(allow), frozenset(deny), frozenset(inherit)
        self.keep = frozenset(keep_fp32_nodes)
        self.force = frozenset(force_nodes)  # named nodes in low precision whatever their op (QuantConfig "bf16")

    @property
    def low(self) -> DType:
        return DType.BFLOAT16 if self.dtype == "bf16" else DType.FLOAT16

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        g = model.graph
        if any(n.op_type == "Cast" and n.meta.get(PRECISION) == f"cast-{self.dtype}" for n in g):
            return PassResult(False, {"already": 1})  # idempotent
        untyped = [v.name for n in g for v in n.inputs if v is not None and v.type is None]
        if untyped:
            raise GraphoptError(f"assign-precision needs typed values (run graphopt.infer_shapes); untyped: "
                                f"{untyped[:3]}")
        no_kernel: Counter[str] = Counter()
        low: set[int] = set()
        outputs = {id(v) for v in g.outputs}
        for node in g:  # topological order: inherit sees its producers' decisions
            decided = self._decide(node, low, outputs, no_kernel)
            if decided:
                low.add(id(node))
            node.meta[PRECISION] = self.dtype if decided else node.meta.get(PRECISION, "fp32")
        casts = self._materialise(model, low)
        folded = _fold_casts(model)
        for v in list(g.initializers.values()):  # fp32 originals of constants converted offline
            if v.num_uses() == 0 and not v.is_graph_input and not v.is_graph_output():
                g.remove_initializer(v)
        stats = {"low_precision_nodes": len(low), "casts": casts, "casts_folded": folded,
                 **{f"kept_fp32_no_ort_kernel:{k}": v for k, v in sorted(no_kernel.items())}}
        if no_kernel:
            logger.warning("assign-precision: onnxruntime CPU has no %s kernel for %s; kept fp32",
                           self.dtype, ", ".join(sorted(no_kernel)))
        return PassResult(bool(low), stats)

    def _decide(self, node: Node, low: set[int], outputs: set[int], no_kernel: Counter[str]) -> bool:
        op = node.op_type
        fins = _float_inputs(node)
        if not fins or not _float_out(node) or node.name in self.keep or op in self.deny or \
                node.meta.get(PRECISION) in ("int8", "fp32-forced"):
            return False
        if any(id(o) in outputs for o in node.outputs):
            return False  # final outputs stay fp32
        if op in self.allow or node.name in self.force:
            want = True
        elif op in self.inherit:
            acts = [v for _, v in fins if v.const is None]
            want = bool(acts) and all((p := v.producer()) is not None and id(p) in low for v in acts)
        else:
            want = False
        if want and self.target == "onnxruntime" and not ort_cpu_supports(op, self.dtype):
            no_kernel[op] += 1
            return False
        return want

    def _materialise(self, model: Model, low: set[int]) -> int:
        g = model.graph
        cache: dict[tuple[int, DType], Value] = {}
        casts = 0

        def cast(v: Value, to: DType, before: Node) -> Value:
            nonlocal casts
            key = (id(v), to)
            if key not in cache:
                if v.const is not None:
                    cache[key] = const(g, f"{v.name}_{to.short}", v.const.astype(to.numpy))
                else:
                    n = add_node(g, before, "Cast", [v], {"to": to.value}, out_name=f"{v.name}_{to.short}",
                                 out_type=TensorType(to, v.shape))
                    n.meta[PRECISION] = f"cast-{self.dtype}"
                    casts += 1
                    cache[key] = n.output
            return cache[key]

        for node in list(g):
            is_low = id(node) in low
            for i, v in _float_inputs(node):
                p = v.producer()
                v_low = v.dtype is self.low
                if is_low and not v_low:
                    node.set_input(i, cast(v, self.low, node))
                elif not is_low and v_low and (p is None or id(p) in low):
                    node.set_input(i, cast(v, DType.FLOAT, node))
            if is_low:
                for o in node.outputs:
                    if o.dtype is not None and o.dtype is DType.FLOAT:
                        o.type = TensorType(self.low, o.shape)
                if node.op_type == "Cast" and node.attr("to") == DType.FLOAT.value:
                    node.set_attr("to", self.low.value)
        return casts


def _fold_casts(model: Model) -> int:
    """Cast(to=A) -> Cast(to=B) where the first cast's input already has type B: use the input."""
    g = model.graph
    folded = 0
    for n in list(g):
        if n.op_type != "Cast" or n.graph is None:
            continue
        src = n.inputs[0]
        p = src.producer()
        if p is None or p.op_type != "Cast":
            continue
        orig = p.inputs[0]
        if orig.dtype is not None and orig.dtype.value == n.attr("to") and orig.dtype.is_float and \
                (DType(p.attr("to")).itemsize_bits >= orig.dtype.itemsize_bits):
            # widening-then-narrowing back is exact; narrowing round trips are not folded
            n.output.replace_all_uses_with(orig, outputs=True) if not n.output.is_graph_output() else None
            if n.output.num_uses() == 0 and not n.output.is_graph_output():
                g.remove(n)
                folded += 1
            if p.output.num_uses() == 0 and not p.output.is_graph_output():
                g.remove(p)
    return folded

