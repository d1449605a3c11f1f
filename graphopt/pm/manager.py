"""The PassManager: runs passes (optionally to a fixed point) under instruments.

>>> from graphopt.pm import PassManager
>>> pm = PassManager.from_text("fold-constants,fixpoint(cse,remove-unused,max=4)")   # doctest: +SKIP
>>> result = pm(model)                                                               # doctest: +SKIP
>>> print(result.table())                                                            # doctest: +SKIP

Guarantees:

* the pipeline runs on a clone of the model and is swapped in only when every
  pass succeeded, so a failing pipeline leaves the caller's model unchanged
  (``atomic=False`` runs in place, for speed, without that promise);
* a pass that raises becomes ``PassError("pass 'x' failed after 'y': ...")``
  with the cause chained; a verification failure names the pass and the node;
* ``verify_each`` (default on) verifies the graph after each modifying pass.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from ..errors import GraphoptError, PassError, VerificationError
from ..ir import Model
from .context import PassContext
from .instruments import Instrument, PassInfo, PassRecord, Timing, Verify
from .pass_ import Pass, PassResult

__all__ = ["PassManager", "Fixpoint", "PipelineResult", "functional"]

logger = logging.getLogger(__name__)


class Fixpoint(Pass):
    """Run ``passes`` repeatedly until none modifies the model, at most
    ``max_iters`` times. Textual form: ``fixpoint(cse,remove-unused,max=4)``."""

    name = "fixpoint"
    description = "repeat a group of passes until nothing changes"

    def __init__(self, passes: Sequence[Pass], max_iters: int = 4) -> None:
        if max_iters < 1:
            raise GraphoptError(f"fixpoint max_iters must be >= 1, got {max_iters}")
        self.passes = list(passes)
        self.max_iters = max_iters

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        # Standalone use (outside a PassManager): no instruments.
        any_change = False
        for _ in range(self.max_iters):
            changed = False
            for p in self.passes:
                changed |= p.run(model, ctx).modified
            any_change |= changed
            if not changed:
                break
        return PassResult(any_change)

    def __repr__(self) -> str:
        return f"Fixpoint({self.passes!r}, max_iters={self.max_iters})"


def functional(p: Pass, ctx: PassContext | None = None) -> Callable[[Model], Model]:
    """``functional(p)(model)`` returns a transformed copy and leaves ``model`` as it is.

    >>> optimized = functional(FoldConstants())(model)   # doctest: +SKIP
    """

    def run(model: Model) -> Model:
        from ..ir.clone import clone

        out = clone(model)
        PassManager([p], atomic=False)(out, ctx)
        return out

    return run


@dataclass
class PipelineResult:
    """What a PassManager run did: per-pass records (time, node counts, stats)."""

    model: Model
    records: list[PassRecord] = field(default_factory=list)
    nodes_before: int = 0
    nodes_after: int = 0
    seconds: float = 0.0

    @property
    def modified(self) -> bool:
        return any(r.modified for r in self.records)

    def stats(self) -> dict[str, int]:
        """Summed stats over all passes (``{"fold-constants.folded": 12, ...}``)."""
        out: dict[str, int] = {}
        for r in self.records:
            for k, v in r.stats.items():
                key = f"{r.name}.{k}"
                out[key] = out.get(key, 0) + int(v)
        return out

    def table(self) -> str:
        t = Timing()
        t.records = self.records
        return t.table()


class PassManager:
    """Runs a list of passes on a :class:`Model`.

    :param passes: Pass objects (or registered names / pipeline text, see
        :meth:`from_text`); :class:`Fixpoint` groups repeat.
    :param fixed_point: repeat the whole list until nothing changes.
    :param max_iters: bound for ``fixed_point``.
    :param verify_each: verify the graph after every modifying pass.
    :param instruments: extra instruments (the context's are added too).
    :param atomic: run on a clone and swap it in on success (default).

    >>> pm = PassManager([FoldConstants(), Fixpoint([CSE(), RemoveUnused()])])   # doctest: +SKIP
    >>> pm(model).nodes_after                                                    # doctest: +SKIP
    """

    def __init__(self, passes: Iterable[Pass | str], *, fixed_point: bool = False, max_iters: int = 8,
                 verify_each: bool = True, instruments: Sequence[Instrument] = (), atomic: bool = True) -> None:
        from .pipeline import parse_pipeline

        items: list[Pass] = []
        for p in passes:
            if isinstance(p, str):
                items.extend(parse_pipeline(p))
            elif isinstance(p, Pass):
                items.append(p)
            else:
                raise GraphoptError(f"PassManager takes Pass objects or pass names, got {type(p).__name__}")
        self.passes: list[Pass] = [Fixpoint(items, max_iters)] if fixed_point else items
        self.verify_each = verify_each
        self.instruments = list(instruments)
        self.atomic = atomic

    @classmethod
    def from_text(cls, text: str, **kwargs) -> PassManager:
        """``PassManager.from_text("O1")`` or ``"fold-constants,fixpoint(cse,max=3)"``."""
        from .pipeline import parse_pipeline

        return cls(parse_pipeline(text), **kwargs)

    def pipeline_text(self) -> str:
        from .pipeline import format_pipeline

        return format_pipeline(self.passes)

    # --- running ------------------------------------------------------------------
    def __call__(self, model: Model, ctx: PassContext | None = None) -> PipelineResult:
        import time

        ctx = ctx if ctx is not None else PassContext.current()
        timing = Timing()
        instruments: list[Instrument] = [Verify()] if self.verify_each else []
        instruments += self.instruments + [i for i in ctx.instruments if i not in self.instruments]
        # Timing runs last before and first after the pass, so it measures the
        # pass alone (not NumericGuard's onnxruntime runs or verification).
        instruments.append(timing)
        t0 = time.perf_counter()
        nodes_before = len(model.graph)
        if self.verify_each:
            try:
                model.verify()
            except VerificationError as e:
                # Blame the input, not the first pass.
                raise VerificationError(f"the input model is invalid (before any pass): {e}", e.problems) from e
        if self.atomic:
            from ..ir.clone import clone

            work = clone(model)
        else:
            work = model
        run = _Run(instruments, ctx)
        for inst in instruments:
            inst.enter(ctx)
        try:
            run.seq(self.passes, work, 0)
        finally:
            for inst in instruments:
                try:
                    inst.exit(ctx)
                except Exception:  # noqa: BLE001 - exit hooks must not hide the real error
                    logger.exception("instrument %r failed in exit()", inst)
        if work is not model:
            for f in dataclasses.fields(Model):
                setattr(model, f.name, getattr(work, f.name))
        return PipelineResult(model, timing.records, nodes_before, len(model.graph), time.perf_counter() - t0)


class _Run:
    def __init__(self, instruments: list[Instrument], ctx: PassContext) -> None:
        self.instruments = instruments
        self.after_order = instruments[-1:] + instruments[:-1]  # the Timing instrument first
        self.ctx = ctx
        self.index = 0
        self.previous: str | None = None

    def seq(self, passes: Sequence[Pass], model: Model, iteration: int) -> bool:
        changed = False
        for p in passes:
            if isinstance(p, Fixpoint):
                changed |= self.fixpoint(p, model)
            else:
                changed |= self.one(p, model, iteration)
        return changed

    def fixpoint(self, fp: Fixpoint, model: Model) -> bool:
        any_change = False
        for it in range(1, fp.max_iters + 1):
            if not self.seq(fp.passes, model, it):
                return any_change
            any_change = True
        logger.info("fixpoint(%s) still changing after %d iterations", ",".join(p.name for p in fp.passes),
                    fp.max_iters)
        return any_change

    def one(self, p: Pass, model: Model, iteration: int) -> bool:
        name = p.name
        if name in self.ctx.disabled and name not in self.ctx.required:
            return False
        self.index += 1
        info = PassInfo(self.index, name, p, self.previous, iteration)
        if not all(i.should_run(model, info) for i in self.instruments):
            return False
        after = f"'{self.previous}'" if self.previous else "the start of the pipeline"
        try:
            for inst in self.instruments:
                inst.before(model, info)
            p.requires(model)
            result = p.run(model, self.ctx)
            if not isinstance(result, PassResult):
                raise TypeError(f"run() returned {type(result).__name__}, not PassResult")
            p.ensures(model)
        except Exception as e:
            self._on_error(model, info, e)
            if isinstance(e, PassError) and getattr(e, "pass_name", None):
                raise
            err = PassError(f"pass '{name}' failed after {after}: {type(e).__name__}: {e}")
            err.pass_name = name  # type: ignore[attr-defined]
            raise err from e
        try:
            for inst in self.after_order:
                inst.after(model, info, result)
        except Exception as e:
            self._on_error(model, info, e)
            if isinstance(e, PassError) and getattr(e, "pass_name", None):
                raise
            if isinstance(e, VerificationError):
                err = PassError(f"pass '{name}' (after {after}) left the graph invalid: {e}")
                err.problems = e.problems  # type: ignore[attr-defined]
            elif isinstance(e, PassError):
                err = type(e)(str(e))
            else:
                err = PassError(f"after pass '{name}': {type(e).__name__}: {e}")
            err.pass_name = name  # type: ignore[attr-defined]
            raise err from e
        self.previous = name
        return result.modified

    def _on_error(self, model: Model, info: PassInfo, exc: BaseException) -> None:
        for inst in self.instruments:
            try:
                inst.on_error(model, info, exc)
            except Exception:  # noqa: BLE001
                logger.exception("instrument %r failed in on_error()", inst)
