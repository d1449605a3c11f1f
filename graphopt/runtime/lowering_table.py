"""The lowering table: ``(domain, op type, decided precision) -> kernel builder``, in one place.

Every node of a (fused) graph lowers through exactly one entry: the builder emits the node's native
steps, or returns False when the node's dtypes / attributes are outside its kernel. A node with no
entry, or one its builder declines, runs as a fallback step (onnxruntime, or the numpy reference of
a graphopt op) that ``Session.summary()`` names. The precision is the node's decision
(``decide-precision``: node_precision > a QDQ file > the compile default); only the GEMM-based ops
(dense layers, Conv, packed-QKV attention, the int8 embedding table) have a builder per precision.

>>> LOWERING[("graphopt", "Linear", "int8")].keywords
{'prec': 'int8'}
>>> ("", "NonZero", "fp32") in LOWERING       # no kernel: the fallback runs it
False
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Protocol

from ..ir import Node
from ..ir.domains import GRAPHOPT_DOMAIN
from . import lower_attention as att
from . import lower_decoder as dec
from . import lower_index as idx
from . import lower_ops as ops
from .lower import PRECISIONS, _Lowerer
from .lower_int4 import MICROSOFT_OPS

__all__ = ["LOWERING", "QDQ_PLANS", "Builder", "builder_of"]

#: emits the native steps of one node; False: the node falls back
Builder = Callable[[_Lowerer, Node], bool]
_Key = tuple[str, str, str]  # (domain, op type, precision)


class _PrecBuilder(Protocol):
    """A builder of a GEMM-based op, given the node's decided precision."""

    def __call__(self, lw: _Lowerer, n: Node, prec: str) -> bool: ...


def _any_precision(domain: str, builders: Mapping[str, Builder]) -> dict[_Key, Builder]:
    return {(domain, op, p): fn for op, fn in builders.items() for p in PRECISIONS}


def _per_precision(domain: str, builders: Mapping[str, _PrecBuilder]) -> dict[_Key, Builder]:
    return {(domain, op, p): partial(fn, prec=p) for op, fn in builders.items() for p in PRECISIONS}


_STANDARD: dict[str, Builder] = {
    **{k: ops._binary for k in ("Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Equal", "Less", "Greater",
                                "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor")},
    **{k: ops._unary_f32 for k in ("Sqrt", "Exp", "Log", "Tanh", "Erf", "Reciprocal", "Relu", "Sigmoid", "Floor",
                                   "Ceil", "Sin", "Cos", "Gelu", "LeakyRelu", "Softplus", "Round")},
    "Sum": ops._sum, "Not": ops._not, "Where": ops._where, "Cast": ops._cast, "CastLike": ops._cast_like,
    "Mod": ops._mod, "Size": ops._same, "Softmax": ops._softmax, "LogSoftmax": ops._log_softmax,
    **{k: ops._view for k in ("Reshape", "Flatten", "Squeeze", "Unsqueeze")},
    "Identity": ops._identity, "Dropout": ops._identity,
    "Transpose": ops._transpose, "Concat": ops._concat, "Slice": ops._slice, "Gather": ops._gather,
    "Shape": ops._shape, "Expand": ops._expand, "ConstantOfShape": ops._const_of_shape, "Range": ops._range,
    "Split": ops._split, "LayerNormalization": ops._layernorm,
    "ReduceMean": ops._reduce, "ReduceSum": ops._reduce, "ReduceMax": ops._reduce,
    "MaxPool": ops._pool, "AveragePool": ops._pool, "GlobalAveragePool": ops._global_pool,
    "GlobalMaxPool": ops._global_pool, "BatchNormalization": ops._batchnorm,
    "QuantizeLinear": ops._qdq, "DequantizeLinear": ops._qdq,
    # index and small element-wise ops (lower_index: integer dtypes too)
    "CumSum": idx.cumsum, "GatherElements": idx.gather_elements, "GatherND": idx.gather_nd, "Tile": idx.tile,
    "Pad": idx.pad, "Sign": idx.sign, "Abs": idx.abs_neg, "Neg": idx.abs_neg, "Clip": idx.clip,
    "HardSigmoid": idx.hard_sigmoid, "HardSwish": idx.hard_swish,
}

_STANDARD_GEMM: dict[str, _PrecBuilder] = {"MatMul": ops.dense, "Gemm": ops.dense, "Conv": ops.conv}

_GRAPHOPT: dict[str, Builder] = {
    "Gelu": ops._g_gelu, "BiasGelu": ops._g_bias_gelu, "SkipLayerNorm": ops._g_skip_ln, "Attention": att.attention,
    "RMSNorm": dec.rms, "SkipRMSNorm": dec.skip_rms, "Silu": dec.silu, "SiluMul": dec.silu_mul,
    "RotaryEmbedding": dec.rotary,
}

_GRAPHOPT_GEMM: dict[str, _PrecBuilder] = {
    "Linear": ops.dense, "FusedConv": ops._g_fused_conv, "MultiHeadAttention": ops._g_mha,
    "EmbedLayerNorm": ops._g_embed_ln,
}

#: (domain, op type, precision) -> builder: the whole lowering
LOWERING: dict[_Key, Builder] = {
    **_any_precision("", _STANDARD), **_per_precision("", _STANDARD_GEMM),
    **_any_precision(GRAPHOPT_DOMAIN, _GRAPHOPT), **_per_precision(GRAPHOPT_DOMAIN, _GRAPHOPT_GEMM),
    **_any_precision("com.microsoft", MICROSOFT_OPS),
}

#: (domain, op type) -> the plan of a GEMM-based node, whose ``absorb`` lists the Q/DQ nodes it folds in
QDQ_PLANS: dict[tuple[str, str], Callable[[_Lowerer, Node], dict | None]] = {
    ("", "MatMul"): ops.linear_plan, ("", "Gemm"): ops.linear_plan, (GRAPHOPT_DOMAIN, "Linear"): ops.linear_plan,
    ("", "Conv"): ops.conv_plan, (GRAPHOPT_DOMAIN, "FusedConv"): ops.conv_plan,
    (GRAPHOPT_DOMAIN, "MultiHeadAttention"): ops.mha_plan,
}


def builder_of(n: Node, precision: str) -> Builder | None:
    """The builder that lowers ``n`` at ``precision``, or None (``n`` falls back)."""
    return LOWERING.get((n.domain, n.op_type, precision))
