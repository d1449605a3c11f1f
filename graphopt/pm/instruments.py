"""Pass instruments: hooks the PassManager calls around every pass.

The protocol has TVM's five hooks plus MLIR's failure hook; every hook has a
do-nothing default, so an instrument overrides only what it needs::

    class CountRuns(Instrument):
        def __init__(self): self.n = 0
        def after(self, model, info, result): self.n += 1

Built in: :class:`Timing` (time and node counts per pass, the table the CLI
prints), :class:`Verify` (``graph.verify()`` after each modifying pass),
:class:`DumpIR` (IR text before/after each pass to a folder), :class:`PrintIR`
(to the log) and :class:`NumericGuard` (onnxruntime before/after; names the
first pass that changed the outputs).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GraphoptError, PassError, VerificationError
from ..io.atomic import write_text
from ..ir import Model
from .context import PassContext
from .pass_ import Pass, PassResult

__all__ = ["Instrument", "PassInfo", "PassRecord", "Timing", "Verify", "DumpIR", "PrintIR", "NumericGuard",
           "NumericMismatch", "Reproducer", "CheckUnmodified", "Stats"]


logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PassInfo:
    """Which pass is running: its position in the run, name, and fixpoint iteration."""

    index: int
    name: str
    pass_: Pass
    previous: str | None = None
    iteration: int = 0


class Instrument:
    """Base of pass instruments; override any of the hooks."""

    def enter(self, ctx: PassContext) -> None:
        """Called once before the pipeline runs."""

    def exit(self, ctx: PassContext) -> None:
        """Called once after the pipeline ends (also on failure)."""

    def should_run(self, model: Model, info: PassInfo) -> bool:
        """Return False to skip the pass."""
        return True

    def before(self, model: Model, info: PassInfo) -> None:
        """Called right before the pass runs."""

    def after(self, model: Model, info: PassInfo, result: PassResult) -> None:
        """Called right after the pass ran; raising here fails the pipeline at this pass."""

    def on_error(self, model: Model, info: PassInfo, exc: BaseException) -> None:
        """Called when the pass (or an instrument's ``after``) raised."""


@dataclass
class PassRecord:
    """One row of the timing table."""

    index: int
    name: str
    seconds: float
    nodes_before: int
    nodes_after: int
    modified: bool
    stats: dict[str, int] = field(default_factory=dict)
    iteration: int = 0

    @property
    def delta(self) -> int:
        return self.nodes_after - self.nodes_before


def _count(model: Model) -> int:
    return len(model.graph)


class Timing(Instrument):
    """Wall time and node-count delta per pass; ``table()`` formats them."""

    def __init__(self) -> None:
        self.records: list[PassRecord] = []
        self._t0 = 0.0
        self._n0 = 0

    def enter(self, ctx: PassContext) -> None:
        self.records = []

    def before(self, model: Model, info: PassInfo) -> None:
        self._n0 = _count(model)
        self._t0 = time.perf_counter()

    def after(self, model: Model, info: PassInfo, result: PassResult) -> None:
        dt = time.perf_counter() - self._t0
        self.records.append(PassRecord(info.index, info.name, dt, self._n0, _count(model), result.modified,
                                       dict(result.stats), info.iteration))

    @property
    def total_seconds(self) -> float:
        return sum(r.seconds for r in self.records)

    def table(self) -> str:
        """A text table: pass, time, nodes before/after, delta, stats."""
        head = f"{'#':>3}  {'pass':28s} {'time ms':>9} {'nodes':>7} {'->':>2} {'after':>6} {'delta':>6}  stats"
        lines = [head, "-" * len(head)]
        for r in self.records:
            name = r.name + (f" [it {r.iteration}]" if r.iteration else "")
            stats = ", ".join(f"{k}={v}" for k, v in sorted(r.stats.items()))
            lines.append(f"{r.index:3d}  {name[:28]:28s} {r.seconds * 1e3:9.1f} {r.nodes_before:7d} {'->':>2} "
                         f"{r.nodes_after:6d} {r.delta:+6d}  {stats[:60]}")
        if self.records:
            first, last = self.records[0], self.records[-1]
            lines.append("-" * len(head))
            lines.append(f"{'':3}  {'total':28s} {self.total_seconds * 1e3:9.1f} {first.nodes_before:7d} {'->':>2} "
                         f"{last.nodes_after:6d} {last.nodes_after - first.nodes_before:+6d}")
        return "\n".join(lines)


class Stats(Instrument):
    """Sums ``PassResult.stats`` over a run, keyed ``pass.counter`` (for a
    RewritePass the counters are rewrites per rule): ``stats.totals``."""

    def __init__(self) -> None:
        self.totals: dict[str, int] = {}

    def enter(self, ctx: PassContext) -> None:
        self.totals = {}

    def after(self, model: Model, info: PassInfo, result: PassResult) -> None:
        for k, v in result.stats.items():
            key = f"{info.name}.{k}"
            self.totals[key] = self.totals.get(key, 0) + int(v)


class Verify(Instrument):
    """``graph.verify()`` after every pass that modified the model (added by
    the PassManager when ``verify_each`` is on). A failure raises
    :class:`VerificationError` naming the offending node; the manager reports
    it as a PassError naming the pass."""

    def after(self, model: Model, info: PassInfo, result: PassResult) -> None:
        if result.modified:
            model.verify()


class CheckUnmodified(Instrument):
    """A pass that reports ``modified=False`` must not have changed the model
    (TVM's immutable-module check): compares the printed IR and the constant
    data before and after. Costs a print per pass; meant for tests."""

    def __init__(self) -> None:
        self._before: tuple[str, int] | None = None

    @staticmethod
    def _fingerprint(model: Model) -> tuple[str, int]:
        data = hash(tuple((k, v.const.tobytes() if v.const is not None and v.const.dtype != object else b"")
                          for k, v in model.graph.initializers.items()))
        return str(model), data

    def before(self, model: Model, info: PassInfo) -> None:
        self._before = self._fingerprint(model)

    def after(self, model: Model, info: PassInfo, result: PassResult) -> None:
        if not result.modified and self._before is not None and self._fingerprint(model) != self._before:
            raise PassError(f"pass '{info.name}' reported no change but modified the model")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


class DumpIR(Instrument):
    """Write the IR text to ``dir``: ``000-input.txt``, then ``NNN-<pass>.txt``
    after each pass (only when it changed something if ``only_on_change``), and
    ``NNN-<pass>.before.txt`` before each pass when ``before`` is set."""

    def __init__(self, dir: str | Path, *, before: bool = False, only_on_change: bool = False) -> None:
        self.dir = Path(dir)
        self.before_too = before
        self.only_on_change = only_on_change
        self._started = False

    def enter(self, ctx: PassContext) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._started = False

    def before(self, model: Model, info: PassInfo) -> None:
        if not self._started:
            write_text(self.dir / "000-input.txt", str(model) + "\n")
            self._started = True
        if self.before_too:
            write_text(self.dir / f"{info.index:03d}-{_slug(info.name)}.before.txt", str(model) + "\n")

    def after(self, model: Model, info: PassInfo, result: PassResult) -> None:
        if result.modified or not self.only_on_change:
            write_text(self.dir / f"{info.index:03d}-{_slug(info.name)}.txt", str(model) + "\n")


class PrintIR(Instrument):
    """Log the IR (INFO) before the passes named in ``before`` and after those
    in ``after`` (None: after every pass)."""

    def __init__(self, after: set[str] | None = None, *, before: set[str] | None = frozenset(),
                 only_on_change: bool = True) -> None:
        self.names = after
        self.before_names = before
        self.only_on_change = only_on_change

    def before(self, model: Model, info: PassInfo) -> None:
        if self.before_names is None or info.name in self.before_names:
            logger.info("IR before %s:\n%s", info.name, model)

    def after(self, model: Model, info: PassInfo, result: PassResult) -> None:
        if (self.names is None or info.name in self.names) and (result.modified or not self.only_on_change):
            logger.info("IR after %s:\n%s", info.name, model)


class Reproducer(Instrument):
    """On failure, write what reproduces it (MLIR's crash reproducer) to ``dir``:
    ``input.onnx`` (the model the pipeline started from), ``pipeline.txt``
    (the passes that ran, ending with the one that failed, in the textual
    pipeline form) and ``error.txt``. Rerun with
    ``graphopt optimize input.onnx -o out.onnx --passes "$(cat pipeline.txt)"``.
    """

    def __init__(self, dir: str | Path) -> None:
        self.dir = Path(dir)
        self._input: Model | None = None
        self._ran: list[str] = []

    def enter(self, ctx: PassContext) -> None:
        self._input = None
        self._ran = []

    def before(self, model: Model, info: PassInfo) -> None:
        if self._input is None:
            from ..ir.clone import clone

            self._input = clone(model)
        self._ran.append(info.name)

    def on_error(self, model: Model, info: PassInfo, exc: BaseException) -> None:
        from ..io import save

        self.dir.mkdir(parents=True, exist_ok=True)
        if self._input is not None:
            save(self._input, self.dir / "input.onnx")
        write_text(self.dir / "pipeline.txt", ",".join(self._ran) + "\n")
        write_text(self.dir / "error.txt", f"pass '{info.name}' failed: {type(exc).__name__}: {exc}\n")
        logger.error("reproducer for the failure in pass '%s' written to %s", info.name, self.dir)


class NumericMismatch(PassError):
    """NumericGuard: a pass changed the model's outputs beyond tolerance."""


def _default_export(model: Model) -> Any:
    """to_onnx, with graphopt-domain fused ops lowered first (on a copy) so
    onnxruntime can run the model mid-pipeline."""
    from ..io import to_onnx

    from ..ir.domains import has_fused_ops

    if has_fused_ops(model):
        from ..ir.clone import clone
        from ..ops.lowering import lower_to_onnxruntime

        lowered = clone(model)
        lower_to_onnxruntime(lowered)
        return to_onnx(lowered)
    return to_onnx(model)


class NumericGuard(Instrument):
    """Runs the model in onnxruntime (all graph optimizations off) on ``feeds``
    before the first pass and after every pass that modified it; the first
    pass whose outputs differ from the original beyond ``rtol``/``atol``
    raises :class:`NumericMismatch` naming that pass.

    ``exporter`` turns the IR into a ModelProto onnxruntime can run (default:
    :func:`graphopt.to_onnx`, after lowering graphopt-domain fused ops to
    onnxruntime ops on a copy). With ``compare="previous"`` each pass
    is compared with the one before it (a per-pass bound) instead of with the
    original model (an end-to-end bound, the default).

    >>> pm = PassManager(passes, instruments=[NumericGuard(feeds, rtol=1e-5, atol=1e-5)])  # doctest: +SKIP
    """

    def __init__(self, feeds: Mapping[str, np.ndarray], *, rtol: float = 1e-5, atol: float = 1e-5,
                 exporter: Callable[[Model], Any] | None = None, compare: str = "original") -> None:
        if compare not in ("original", "previous"):
            raise GraphoptError(f"NumericGuard compare must be 'original' or 'previous', got {compare!r}")
        self.compare = compare
        self.feeds = dict(feeds)
        self.rtol = rtol
        self.atol = atol
        self.exporter = exporter or _default_export
        self.reference: list[np.ndarray] | None = None
        self.checked: list[str] = []

    def enter(self, ctx: PassContext) -> None:
        self.reference = None
        self.checked = []

    def _run(self, model: Model) -> list[np.ndarray]:
        from .._ort import ort_session

        sess = ort_session(self.exporter(model))
        names = {i.name for i in sess.get_inputs()}
        missing = names - set(self.feeds)
        if missing:
            raise GraphoptError(f"NumericGuard: no feed for input(s) {sorted(missing)}")
        return sess.run(None, {k: v for k, v in self.feeds.items() if k in names})

    def before(self, model: Model, info: PassInfo) -> None:
        if self.reference is None:
            try:
                self.reference = self._run(model)
            except GraphoptError:
                raise
            except Exception as e:  # noqa: BLE001 - onnxruntime raises many kinds
                raise GraphoptError(f"NumericGuard: onnxruntime cannot run the input model: {e}") from e

    def after(self, model: Model, info: PassInfo, result: PassResult) -> None:
        if not result.modified or self.reference is None:
            return
        try:
            got = self._run(model)
        except Exception as e:  # noqa: BLE001
            raise NumericMismatch(f"NumericGuard: onnxruntime cannot run the model after pass '{info.name}': "
                                  f"{str(e).splitlines()[0][:300]}") from e
        self.checked.append(info.name)
        for i, (want, have) in enumerate(zip(self.reference, got)):
            problem = _compare(np.asarray(want), np.asarray(have), self.rtol, self.atol)
            if problem is not None:
                raise NumericMismatch(f"NumericGuard: pass '{info.name}' is the first that changed the outputs: "
                                      f"output {i}: {problem} (rtol={self.rtol}, atol={self.atol}, "
                                      f"compared with the {self.compare} model)")
        if self.compare == "previous":
            self.reference = got


def _compare(want: np.ndarray, have: np.ndarray, rtol: float, atol: float) -> str | None:
    if want.shape != have.shape:
        return f"shape {list(have.shape)} instead of {list(want.shape)}"
    if want.dtype.kind not in "fc" or have.dtype.kind not in "fc":
        if not np.array_equal(want, have):
            return f"{int(np.sum(want != have))} element(s) differ"
        return None
    w, h = want.astype(np.float64), have.astype(np.float64)
    bad = ~np.isclose(h, w, rtol=rtol, atol=atol, equal_nan=True)
    if not bad.any():
        return None
    diff = np.abs(h - w)
    diff[~bad] = 0
    idx = np.unravel_index(int(np.nanargmax(np.where(np.isnan(diff), np.inf, diff))), diff.shape)
    return (f"{int(bad.sum())} of {w.size} element(s) differ, max |diff| {float(np.nanmax(np.abs(h - w))):.3g} "
            f"at {tuple(int(i) for i in idx)} ({h[idx]:.6g} vs {w[idx]:.6g})")


__all__ += ["VerificationError"]  # re-exported for instrument authors
