"""fold-constants: evaluate nodes whose inputs are all constants.

A plain pass, not a pattern: the "pattern" is any op with constant inputs,
and the work is evaluation, not a structural rewrite.

Bounded by size: an output larger than ``fold_constants.max_elements`` is not
materialised, and a node that would copy a big constant that stays alive
(e.g. ``Transpose(W)`` with W used elsewhere) is left alone, so no large
tensor is stored twice. ``Constant`` nodes become initializers, and
``Shape``/``Size`` of values with static shapes fold too. A Transpose of a dequantized
constant weight transposes the integer weight instead (``_dq_transpose``).
"""

from __future__ import annotations

import logging

import numpy as np

from graphopt.ir import DType, Graph, Model, Node, TensorType, Value
from graphopt.pattern import can_replace, const_value, remove_dead
from graphopt.pm import Pass, PassContext, PassResult, register_config, register_pass

from ._dq_transpose import transpose_dequantized
from ._evaluate import evaluate_node
from ._inline_if import inline_constant_if
from ._int_eval import eval_int_node

__all__ = ["FoldConstants"]

logger = logging.getLogger(__name__)

register_config("fold_constants.max_elements", int, 1 << 20,
                "largest output (elements) constant folding materialises")
register_config("fold_constants.shared_input_elements", int, 1 << 16,
                "a folded node may not copy a still-used constant bigger than this")

# Not folded: random or stateful ops, ops whose result is not a tensor, and DequantizeLinear
# (DQ of a constant is how a QDQ graph stores a quantized weight: folding it would turn the
# weight back into fp32 and lose the int8 GEMM downstream).
_SKIP = frozenset({"DequantizeLinear", "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
                   "Bernoulli", "SequenceConstruct", "SequenceEmpty", "SequenceInsert", "SequenceErase",
                   "SequenceAt", "SplitToSequence", "ConcatFromSequence", "Optional", "OptionalGetElement",
                   "OptionalHasElement", "If", "Loop", "Scan", "Identity", "Dropout"})
_STATIC_SHAPE_OPS = frozenset({"Shape", "Size"})


def _static(v: Value) -> tuple[int, ...] | None:
    s = v.shape
    if s is None or not all(isinstance(d, int) for d in s):
        return None
    return tuple(s)  # type: ignore[arg-type]


def _shape_fold(n: Node) -> list[np.ndarray] | None:
    x = n.inputs[0] if n.inputs else None
    if x is None or not isinstance(x.type, TensorType):
        return None
    s = _static(x)
    if s is None:
        return None
    if n.op_type == "Size":
        return [np.array(int(np.prod(s)), dtype=np.int64)]
    start, end = n.attr("start", 0), n.attr("end", None)
    return [np.array(s[start:end], dtype=np.int64)]


def _expected_size(v: Value) -> int | None:
    s = _static(v)
    return None if s is None else int(np.prod(s))


_UNKNOWN_SIZE_INPUT_LIMIT = 1024


def _predicted_size(n: Node, ins: list[np.ndarray | None]) -> int | None:
    """Elements of the largest output, computed before evaluating, for the ops
    that create big tensors from small inputs; None if it cannot be bounded."""
    sizes = [_expected_size(o) for o in n.outputs]
    if all(s is not None for s in sizes):
        return max(sizes, default=0)  # type: ignore[type-var]
    try:
        if n.op_type == "ConstantOfShape":
            return int(np.prod(ins[0])) if ins and ins[0] is not None else 1
        if n.op_type == "Expand":
            return int(np.prod(np.broadcast_shapes(ins[0].shape, tuple(int(d) for d in ins[1]))))
        if n.op_type == "Tile":
            return int(ins[0].size * np.prod(ins[1]))
        if n.op_type == "Range":
            start, limit, delta = (float(np.asarray(a).reshape(())) for a in ins[:3])
            return max(int(np.ceil((limit - start) / delta)), 0)
    except (TypeError, ValueError, IndexError, ZeroDivisionError, OverflowError, AttributeError):
        return None
    # Any other op: small inputs cannot make a huge output (an outer product of
    # 1024 elements is at most 2**18); larger ones need a known output shape.
    total = sum(a.size for a in ins if a is not None)
    return total if total <= _UNKNOWN_SIZE_INPUT_LIMIT else None


class _Folder:
    def __init__(self, model: Model, max_elements: int, shared_limit: int) -> None:
        self.model = model
        self.graph: Graph = model.graph
        self.max_elements = max_elements
        self.shared_limit = shared_limit
        self.stats = {"folded": 0, "constants": 0, "shapes": 0}

    def run(self, g: Graph | None = None) -> None:
        g = self.graph if g is None else g
        for n in list(g):
            if n.graph is not g:
                continue
            for sg in n.subgraphs():  # If/Loop/Scan bodies: their constants fold in place
                self.run(sg)
            if n.op_type == "If" and n.domain == "" and inline_constant_if(g, n):
                self.stats["if_inlined"] = self.stats.get("if_inlined", 0) + 1
                continue
            if n.op_type == "Constant" and n.domain == "":
                arr = const_value(n.outputs[0])
                if arr is not None and self._replace(g, n, [arr]):
                    self.stats["constants"] += 1
                continue
            if n.domain != "" or n.op_type in _SKIP or n.subgraphs():
                continue
            if n.op_type == "Transpose" and transpose_dequantized(g, n):
                self.stats["dq_transposed"] = self.stats.get("dq_transposed", 0) + 1
                continue
            if n.op_type in _STATIC_SHAPE_OPS:
                outs = _shape_fold(n)
                if outs is not None and self._replace(g, n, outs):
                    self.stats["shapes"] += 1
                    continue
            self._try_eval(g, n)

    def _try_eval(self, g: Graph, n: Node) -> None:
        ins = [None if v is None else const_value(v) for v in n.inputs]
        if not n.inputs or any(v is not None and a is None for v, a in zip(n.inputs, ins)):
            return
        size = _predicted_size(n, ins)
        if size is None or size > self.max_elements:
            return  # never materialise (or even compute) an unbounded or huge constant
        # Would the result duplicate a big constant that stays alive?
        for v, a in zip(n.inputs, ins):
            if v is not None and a is not None and a.size > self.shared_limit:
                if v.is_graph_output() or any(u is not n for u in v.consumers()):
                    return
        outs = eval_int_node(n, ins) or evaluate_node(n, ins, self.model.opset_imports, self.model.ir_version)
        if outs is None or len(outs) != len(n.outputs):
            return
        for o, arr in zip(n.outputs, outs):
            if arr.size > self.max_elements or arr.dtype == object and o.dtype is not DType.STRING:
                return
            if o.dtype is not None and o.dtype.value and o.dtype is not DType.STRING:
                try:
                    if o.dtype.numpy != arr.dtype:
                        logger.debug("fold: %s gave %s, declared %s", n.label(), arr.dtype, o.dtype)
                        return
                except TypeError:
                    return
            s = o.shape
            if s is not None and (len(s) != arr.ndim or any(isinstance(d, int) and d != k
                                                            for d, k in zip(s, arr.shape))):
                return
        if self._replace(g, n, outs):
            self.stats["folded"] += 1

    def _replace(self, g: Graph, n: Node, arrays: list[np.ndarray]) -> bool:
        news: list[tuple[Value, Value]] = []
        for o, arr in zip(n.outputs, arrays):
            if not o.num_uses() and not o.is_graph_output():
                continue
            arr = np.asarray(arr)
            try:
                DType.from_numpy(arr.dtype)
            except TypeError:
                return False
            new = Value(g.unique_name(o.name or "folded"), const=arr)
            if o.dtype is not None and o.dtype.value:
                new.type = TensorType(o.dtype, tuple(arr.shape))  # keep e.g. bf16 declared via ml_dtypes
            news.append((o, new))
        for _, new in news:
            g.add_initializer(new)
        if any(can_replace(o, new) is not None for o, new in news):
            for _, new in news:
                g.remove_initializer(new)
            return False
        for o, new in news:
            o.replace_all_uses_with(new, outputs=True)
        remove_dead(g, [n])
        return True


@register_pass
class FoldConstants(Pass):
    """Replace nodes whose inputs are all constants by their (precomputed)
    outputs, ``Constant`` nodes by initializers, and ``Shape``/``Size`` of
    statically shaped values by constants.

    >>> FoldConstants(max_elements=1 << 16).run(model, PassContext()).stats   # doctest: +SKIP
    {'folded': 14, 'constants': 160, 'shapes': 2}
    """

    name = "fold-constants"
    description = "evaluate constant subgraphs (size-bounded); Constant nodes -> initializers; static Shape/Size"

    def __init__(self, max_elements: int | None = None, shared_input_elements: int | None = None) -> None:
        self.max_elements = max_elements
        self.shared_input_elements = shared_input_elements

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        limit = self.max_elements if self.max_elements is not None else ctx.get("fold_constants.max_elements")
        shared = (self.shared_input_elements if self.shared_input_elements is not None
                  else ctx.get("fold_constants.shared_input_elements"))
        f = _Folder(model, limit, shared)
        f.run()
        stats = {k: v for k, v in f.stats.items() if v}
        return PassResult(bool(stats), stats)
