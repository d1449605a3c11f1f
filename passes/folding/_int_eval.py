"""Exact numpy evaluation of the integer shape arithmetic exporters emit
(Unsqueeze, Concat, Gather, Reshape, Cast, Add/Sub/Mul, ...). Integer results
are the same in any runtime, and this avoids building an onnxruntime session
per tiny node; everything else goes through ``_evaluate``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from graphopt.ir import DType, Node

__all__ = ["eval_int_node"]

_INTS = (np.int32, np.int64)


def _axes(n: Node, ins: list[np.ndarray | None]) -> list[int] | None:
    if len(ins) > 1 and ins[1] is not None:
        return [int(a) for a in ins[1].reshape(-1)]
    a = n.attr("axes")
    return None if a is None else [int(x) for x in a]


def _unsqueeze(n: Node, ins: list) -> np.ndarray | None:
    axes = _axes(n, ins)
    if axes is None:
        return None
    x = ins[0]
    r = x.ndim + len(axes)
    axes = sorted(a + r if a < 0 else a for a in axes)
    out = x
    for a in axes:
        out = np.expand_dims(out, a)
    return out


def _squeeze(n: Node, ins: list) -> np.ndarray | None:
    axes = _axes(n, ins)
    x = ins[0]
    if axes is None:
        return np.squeeze(x)
    return np.squeeze(x, axis=tuple(a + x.ndim if a < 0 else a for a in axes))


def _reshape(n: Node, ins: list) -> np.ndarray | None:
    x, s = ins[0], [int(d) for d in ins[1].reshape(-1)]
    if not n.attr("allowzero", 0):
        s = [x.shape[i] if d == 0 else d for i, d in enumerate(s)]
    return x.reshape(s)


def _cast(n: Node, ins: list) -> np.ndarray | None:
    to = n.attr("to")
    if to not in (DType.INT64.value, DType.INT32.value):
        return None
    return ins[0].astype(DType(to).numpy)


_OPS: dict[str, Callable[[Node, list], np.ndarray | None]] = {
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Reshape": _reshape,
    "Cast": _cast,
    "Concat": lambda n, ins: np.concatenate(ins, axis=n.attr("axis")),
    "Gather": lambda n, ins: np.take(ins[0], ins[1], axis=n.attr("axis", 0)),
    "Add": lambda n, ins: np.add(ins[0], ins[1]),
    "Sub": lambda n, ins: np.subtract(ins[0], ins[1]),
    "Mul": lambda n, ins: np.multiply(ins[0], ins[1]),
    "Neg": lambda n, ins: np.negative(ins[0]),
    "Equal": lambda n, ins: np.equal(ins[0], ins[1]),
}


def eval_int_node(n: Node, ins: list[np.ndarray | None]) -> list[np.ndarray] | None:
    """Outputs of ``n`` if it is integer shape arithmetic numpy computes exactly, else None."""
    fn = _OPS.get(n.op_type)
    if fn is None or len(n.outputs) != 1 or any(a is None for a in ins) or not ins:
        return None
    if not all(a.dtype.type in _INTS for a in ins):  # type: ignore[union-attr]
        return None
    if n.op_type == "Gather" and ins[1] is not None and ins[0].ndim and \
            (ins[1] >= ins[0].shape[n.attr("axis", 0)]).any():
        return None  # out of range: leave the error to the runtime
    try:
        out = fn(n, ins)
    except (ValueError, IndexError, TypeError, np.AxisError):
        return None
    if out is None:
        return None
    if n.op_type in ("Add", "Sub", "Mul", "Neg") and out.dtype != ins[0].dtype:
        return None
    return [np.array(out, copy=True)]  # (ascontiguousarray would turn a 0-d result into 1-d)
