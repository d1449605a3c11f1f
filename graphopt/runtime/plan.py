"""Turn lowered steps into a ``graphopt._C.Plan``: slots, constants, liveness, packed weights.

Liveness: every tensor is freed right after the last step that reads it. Steps
whose output is a view of their input (Reshape & co.) extend the life of the
underlying buffer to the last use of any view of it; graph outputs are never
freed. The executor turns these lists into arena offsets at run time (shapes
are only known then), so a new batch/sequence length costs no recompilation.

>>> plan, info = build_plan(steps, consts, inputs, outputs, const_of)   # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..ir.mapped import is_mapped, release_pages
from .lower import ALIAS_KINDS, Key, StepSpec

__all__ = ["PlanInfo", "build_plan"]


@dataclass
class PlanInfo:
    """What the Python side remembers about a built plan (for summary())."""

    steps: list[StepSpec]
    slot_of: dict[int, int]
    num_slots: int


def _native():
    from .. import _C

    return _C


_REF_MIN_BYTES = 1 << 16


def _by_reference(arr: np.ndarray) -> bool:
    """Read a constant in place instead of copying it: a large, aligned, contiguous view of a
    memory-mapped weight file (e.g. a saved int4 model's packed weights and scales). The plan keeps
    the mapping alive; its pages are file-backed, read on first use and reclaimable."""
    return (arr.nbytes >= _REF_MIN_BYTES and arr.flags.c_contiguous and arr.ctypes.data % 64 == 0
            and arr.dtype.byteorder in "=|" and is_mapped(arr))


def _packable(w: np.ndarray) -> np.ndarray:
    """``w`` itself when the packer reads it in place: fp32 with contiguous rows (e.g. a column slice of a
    mapped weight, packed without a contiguous copy first) or C-contiguous; else a contiguous copy."""
    if w.flags.c_contiguous:
        return w
    if w.dtype == np.float32 and w.ndim == 2 and (w.shape[1] == 1 or w.strides[1] == 4) \
            and w.strides[0] >= 4 * w.shape[1] and w.strides[0] % 4 == 0:
        return w
    return np.ascontiguousarray(w)


def build_plan(steps: list[StepSpec], extra_consts: dict[Key, np.ndarray], inputs: list[Any], outputs: list[Any],
               const_of: Callable[[Any], np.ndarray | None], threads: int = 0) -> tuple[Any, PlanInfo]:
    """Build the native plan for ``steps`` (see the module docstring); ``threads`` pack the weights
    (0: the OpenMP thread count)."""
    _C = _native()
    plan = _C.Plan()
    slot_of: dict[int, int] = {}
    keys: list[Any] = []

    def slot(k: Any) -> int:
        if k is None:
            return -1
        s = slot_of.get(id(k))
        if s is not None:
            return s
        dt = getattr(k, "dtype", None)
        code = dt.value if dt is not None and hasattr(dt, "value") else 0
        s = plan.add_slot(int(code), getattr(k, "name", ""))
        slot_of[id(k)] = s
        keys.append(k)
        arr = extra_consts.get(k)
        if arr is None:
            arr = const_of(k)
        if arr is not None and not _is_input(k, inputs):
            if _by_reference(arr):  # a read-only mapping (a loaded file) may have its pages dropped
                plan.set_const_ref(s, arr, not arr.flags.writeable)
            else:
                plan.set_const(s, np.require(arr, requirements="C"))
        return s

    in_slots = [slot(v) for v in inputs]
    step_io = [([slot(k) for k in st.inputs], [slot(k) for k in st.outputs]) for st in steps]
    out_slots = [slot(v) for v in outputs]

    # Liveness over roots (a view's root is the root of its input 0).
    root = list(range(len(keys)))
    for st, (ins, outs) in zip(steps, step_io):
        if st.kind in ALIAS_KINDS and ins and ins[0] >= 0 and outs and outs[0] >= 0:
            root[outs[0]] = root[ins[0]]
    last = {}
    for i, (ins, outs) in enumerate(step_io):
        for s in ins + outs:
            if s >= 0:
                last[root[s]] = i
    keep = {root[s] for s in out_slots} | set(in_slots)
    free_after: list[list[int]] = [[] for _ in steps]
    for r, i in last.items():
        if r not in keep:
            free_after[i].append(r)

    for i, (st, (ins, outs)) in enumerate(zip(steps, step_io)):
        kind = "PyCall" if st.callback is not None else st.kind
        si = plan.add_step(kind, st.name, ins, outs, _clean(st.iattrs), _clean(st.fattrs), free_after[i])
        for w, mode, transposed, scale in st.weights:
            plan.pack_weight(si, _packable(w), mode, transposed, scale, threads)
        for w, *_ in st.weights:  # after every part: the parts of one weight share its pages
            release_pages(w)  # packed: the source pages of a mapped weight leave resident memory
        st.weights = []  # the plan owns the packed copies; free the unpacked ones step by step
        if st.callback is not None:
            plan.set_callback(si, st.callback)
    plan.set_io(in_slots, out_slots)
    return plan, PlanInfo(steps, slot_of, len(keys))


def _is_input(k: Any, inputs: list[Any]) -> bool:
    return any(k is v for v in inputs)


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, (list, tuple)):
            out[k] = [x.item() if hasattr(x, "item") else x for x in v]
        else:
            out[k] = v.item() if hasattr(v, "item") else v
    return out
