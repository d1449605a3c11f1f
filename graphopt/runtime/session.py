"""Session: a compiled model, run with one call into C++ per inference.

>>> sess = graphopt.compile(model, precision="int8")        # doctest: +SKIP
>>> (hidden,) = sess.run({"input_ids": ids, "attention_mask": mask, "token_type_ids": tt})  # doctest: +SKIP
>>> print(sess.summary())                                    # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import GraphoptError
from ..feeds import check_array
from ..ir import DType
from .lower import StepSpec

__all__ = ["Session", "Summary", "InputError", "InputSpec"]

logger = logging.getLogger(__name__)


class InputError(GraphoptError):
    """Feeds that do not match the compiled model's inputs (name, dtype or shape)."""


@dataclass(frozen=True)
class InputSpec:
    """A model input: name, numpy dtype, and dims (int, symbolic name, or None)."""

    name: str
    dtype: np.dtype | None
    shape: tuple[int | str | None, ...] | None


@dataclass
class Summary:
    """What a session runs: one row per step, the fallbacks, and memory figures."""

    precision: str
    num_threads: int
    isa: str
    rows: list[tuple[str, str, str, str]]  # (kind, name, kernel detail, graph nodes)
    fallbacks: list[str]
    peak_arena_bytes: int
    peak_by_signature: dict[str, int]
    const_bytes: int
    packed_bytes: int
    kernel_counts: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"graphopt native session: precision={self.precision} threads={self.num_threads} isa={self.isa}",
                 f"steps: {len(self.rows)}  " + ", ".join(f"{k}={v}" for k, v in sorted(self.kernel_counts.items())),
                 f"fallback nodes: {len(self.fallbacks)}" + (" (" + ", ".join(self.fallbacks) + ")" if self.fallbacks else ""),
                 f"arena peak: {self.peak_arena_bytes / 1e6:.2f} MB (last run); constants {self.const_bytes / 1e6:.1f} MB;"
                 f" packed weights {self.packed_bytes / 1e6:.1f} MB"]
        w = max((len(r[0]) for r in self.rows), default=4)
        for kind, name, detail, nodes in self.rows:
            lines.append(f"  {kind:<{w}}  {name[:60]:<60}  {detail}" + (f"  <- {nodes}" if nodes and kind != "PyCall" else ""))
        return "\n".join(lines)


_NP_OF = {DType.FLOAT: np.float32, DType.DOUBLE: np.float64, DType.INT64: np.int64, DType.INT32: np.int32,
          DType.INT8: np.int8, DType.UINT8: np.uint8, DType.BOOL: np.bool_, DType.FLOAT16: np.float16,
          DType.INT16: np.int16, DType.UINT16: np.uint16}


class Session:
    """A compiled model. Build with :func:`graphopt.compile`; run with :meth:`run`.

    ``run`` validates the feeds (names, dtypes, ranks, fixed and symbolic dims),
    then makes one call into the C++ plan with the GIL released. Outputs are
    returned as a list in the model's output order (like onnxruntime).
    """

    def __init__(self, plan: Any, inputs: Sequence[InputSpec], output_names: Sequence[str], steps: list[StepSpec],
                 precision: str, num_threads: int | None, name: str = "", runner: Any = None) -> None:
        self._plan = plan
        self._runner = runner  # whole-graph fallback (no plan) for graphs with non-tensor values
        self.inputs = list(inputs)
        self.output_names = list(output_names)
        self._steps = steps
        self.precision = precision
        self.num_threads = num_threads
        self.name = name
        #: int8 sessions: "static" (calibrated QDQ scales) or "dynamic" (activation ranges at run time)
        self.int8_activations: str | None = None

    # --------------------------------------------------------------- running
    def _check(self, feeds: Mapping[str, Any]) -> list[np.ndarray]:
        if not isinstance(feeds, Mapping):
            raise InputError(f"feeds must be a dict of input name -> array, got {type(feeds).__name__}")
        names = [i.name for i in self.inputs]
        unknown = [k for k in feeds if k not in names]
        if unknown:
            raise InputError(f"unknown input name(s) {unknown}; the model's inputs are {names}")
        missing = [n for n in names if n not in feeds]
        if missing:
            raise InputError(f"missing input(s) {missing}; the model's inputs are {names}")
        arrays: list[np.ndarray] = []
        dims: dict[str, tuple[int, str]] = {}
        for spec in self.inputs:
            a = feeds[spec.name]
            if self._runner is not None and not isinstance(a, np.ndarray):
                arrays.append(a)  # sequences etc. go to onnxruntime as given
                continue
            if a is None:
                raise InputError(f"input '{spec.name}' is None; expected an array")
            if not isinstance(a, np.ndarray):
                try:
                    a = np.asarray(a, dtype=spec.dtype)
                except (TypeError, ValueError) as e:
                    raise InputError(f"input '{spec.name}': cannot convert {type(a).__name__} to an array: {e}") from e
            if spec.dtype is not None and a.dtype != spec.dtype and a.dtype.newbyteorder("=") == spec.dtype:
                a = a.astype(spec.dtype)  # byte-swapped (big-endian) data: same values, native order
            check_array(a, spec.name, spec.dtype, spec.shape, dims, error=InputError)
            arrays.append(np.require(a, requirements="C"))
        return arrays

    def run(self, feeds: Mapping[str, Any], output_names: Sequence[str] | None = None) -> list[np.ndarray]:
        """Run one inference; returns the outputs (all, or ``output_names``) as numpy arrays."""
        arrays = self._check(feeds)
        try:
            outs = self._runner(arrays) if self._runner is not None else self._plan.run(arrays, self.num_threads or 0)
        except ValueError as e:
            raise GraphoptError(f"native run failed: {e}") from e
        if output_names is None:
            return list(outs)
        idx = {n: i for i, n in enumerate(self.output_names)}
        bad = [n for n in output_names if n not in idx]
        if bad:
            raise InputError(f"unknown output name(s) {bad}; outputs are {self.output_names}")
        return [outs[idx[n]] for n in output_names]

    __call__ = run

    # --------------------------------------------------------------- reporting
    @property
    def fallbacks(self) -> list[str]:
        """Graph nodes that run through a Python fallback (onnxruntime / numpy reference)."""
        return [s.origin[0] if s.origin else s.name for s in self._steps if not s.native]

    @property
    def peak_bytes(self) -> int:
        """Arena peak of the last run (intermediate tensors only)."""
        return int(self._plan.last_peak_bytes) if self._plan is not None else 0

    def profile(self, feeds: Mapping[str, Any], repeats: int = 10) -> list[tuple[str, str, float]]:
        """Median microseconds per step over ``repeats`` runs: [(kind, name, us)], slowest first."""
        if self._plan is None:
            raise GraphoptError("profile() needs a native plan; this graph runs whole in onnxruntime")
        self._plan.set_profile(True)
        try:
            times = []
            for _ in range(repeats):
                self.run(feeds)
                times.append(list(self._plan.step_us))
        finally:
            self._plan.set_profile(False)
        med = np.median(np.array(times), axis=0)
        rows = [(s.kind, s.name, float(t)) for s, t in zip(self._steps, med)]
        return sorted(rows, key=lambda r: -r[2])

    def summary(self) -> Summary:
        """Kernel per step (with the graph nodes it implements), fallbacks, and memory."""
        from .. import _C

        if self._plan is None:
            st = self._steps[0]
            return Summary(self.precision, self.num_threads or _C.get_num_threads(), _C.isa_selected(),
                           [("PyCall", st.name, st.detail, st.origin[0])], self.fallbacks, 0, {}, 0, 0, {"PyCall": 1})
        kernels = self._plan.step_kernels()
        rows = []
        for st, (kind, name, detail) in zip(self._steps, kernels):
            d = st.detail or ""
            if detail:
                d = f"{d} [{detail}]" if d else f"[{detail}]"
            rows.append((st.kind if st.native else "PyCall", name, d, ", ".join(st.origin)))
        counts = Counter(r[0] for r in rows)
        return Summary(self.precision, self.num_threads or _C.get_num_threads(), _C.isa_selected(), rows,
                       self.fallbacks, int(self._plan.last_peak_bytes), dict(self._plan.peak_by_signature),
                       int(self._plan.const_bytes), int(self._plan.packed_bytes), dict(counts))

    def __repr__(self) -> str:
        return (f"Session({self.name!r}, precision={self.precision}, steps={len(self._steps)}, "
                f"fallbacks={len(self.fallbacks)})")

