"""Shape and dtype inference: ONNX's own inference plus graphopt's rules for
ops onnx does not know (the ``graphopt`` domain, contrib ops)."""

from __future__ import annotations

import logging
from dataclasses import replace
from collections.abc import Callable

import onnx

from ..errors import ShapeInferenceError
from ..ir import Graph, Model, Node, ValueType
from .onnx_export import to_onnx
from .onnx_import import type_from_proto
from .symbolic_shapes import refine_symbolic_shapes

__all__ = ["infer_shapes", "register_shape_rule", "SHAPE_RULES"]

logger = logging.getLogger(__name__)

#: (domain, op_type) -> rule(node) returning one ValueType (or None) per output.
ShapeRule = Callable[[Node], list["ValueType | None"]]
SHAPE_RULES: dict[tuple[str, str], ShapeRule] = {}

_SMALL_CONST = 4096  # initializers bigger than this are only typed for inference, not copied


def register_shape_rule(domain: str, op_type: str) -> Callable[[ShapeRule], ShapeRule]:
    """Register the shape rule of an op onnx's inference does not know."""

    def deco(fn: ShapeRule) -> ShapeRule:
        SHAPE_RULES[(domain, op_type)] = fn
        return fn

    return deco


def infer_shapes(model: Model, *, max_rounds: int = 12, strict: bool = False) -> Model:
    """Fill in ``Value.type`` for every value whose type can be inferred. In place.

    Runs onnx's inference (with data propagation for shape chains) and, for ops it
    does not know, the registered rules; repeats while rules add information.
    With ``strict`` an inconsistency raises ShapeInferenceError naming the node.
    """
    g = model.graph
    big = frozenset(n for n, v in g.initializers.items() if v.const is not None and v.const.nbytes > _SMALL_CONST)
    for _ in range(max_rounds):
        proto = to_onnx(model, omit_initializer_data=big)
        try:
            inferred = onnx.shape_inference.infer_shapes(proto, check_type=strict, strict_mode=strict,
                                                         data_prop=True)
        except Exception as e:  # onnx raises InferenceError / RuntimeError from C++
            if strict:
                raise ShapeInferenceError(f"shape inference failed: {e}") from e
            logger.info("onnx shape inference failed (%s); keeping known types", e)
            inferred = proto
        types = {vi.name: type_from_proto(vi.type) for vi in inferred.graph.value_info}
        types.update({vi.name: type_from_proto(vi.type) for vi in inferred.graph.output})
        _apply(g, types)
        refined = refine_symbolic_shapes(g)  # dims onnx leaves unknown behind symbolic shape values
        if not _apply_rules(g) and not refined:
            break
    return model


def _forget_generated_dims(t: ValueType | None) -> ValueType | None:
    """onnx names unknown dims ``unk__N`` afresh on every run; two such names from
    different runs say nothing about equality, so keep them as unknown (None)."""
    shape = getattr(t, "shape", None)
    if shape is None or not any(isinstance(d, str) and d.startswith("unk__") for d in shape):
        return t
    return replace(t, shape=tuple(None if isinstance(d, str) and d.startswith("unk__") else d for d in shape))


def _apply(g: Graph, types: dict[str, ValueType | None]) -> None:
    for n in g:
        for o in n.outputs:
            t = _forget_generated_dims(types.get(o.name))
            if t is not None and (o.type is None or _better(t, o.type)):
                o.type = t


def _better(new: ValueType, old: ValueType) -> bool:
    from .onnx_import import _more_specific

    if getattr(old, "dtype", None) is not None and getattr(old.dtype, "value", 1) == 0:
        return True
    return _more_specific(new, old)


def _apply_rules(g: Graph) -> bool:
    changed = False
    for n in g:
        rule = SHAPE_RULES.get((n.domain, n.op_type))
        if rule is None or all(o.type is not None and o.shape is not None for o in n.outputs):
            continue
        try:
            out_types = rule(n)
        except Exception as e:  # noqa: BLE001 - a rule bug must name the node
            raise ShapeInferenceError(f"shape rule for {n.label()} failed: {e}") from e
        for o, t in zip(n.outputs, out_types):
            if t is not None and (o.type is None or _better(t, o.type)):
                o.type = t
                changed = True
    return changed
