"""Where trials run: in this process, or on Ray (extra ``graphopt[distributed]``).

A :class:`Worker` holds the float model, the calibration batches and the user's
function; ``accuracy(recipe)`` builds the candidate (calibrations are computed once
per set of global knobs and reused) and returns the user's score. On Ray,
``workers`` actors score candidates in parallel and one more, dedicated actor
measures latency only while no scoring is in flight, so parallel trials do not
corrupt the timings.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import GraphoptError
from ..quant.calibrate import CalibrationResult
from .acceptance import as_score
from .space import Group, Recipe, build, calibration_of, load_function, local_calibrator, make_runner, recording_calibrator
from .tables import cpu_clock, time_run

__all__ = ["Worker", "LocalExecutor", "RayExecutor"]

logger = logging.getLogger(__name__)


class Worker:
    """Builds and scores candidates (one per process: a Ray actor or the caller)."""

    def __init__(self, model_bytes: bytes, groups: Sequence[Group], batches: Sequence[dict[str, np.ndarray]],
                 target: str, evaluate: Any, threads: int | None = None) -> None:
        from ..io import from_onnx

        import onnx

        self.fp32 = from_onnx(onnx.load_from_string(model_bytes))
        self.groups = list(groups)
        self.batches = list(batches)
        self.target = target
        self.evaluate_spec = evaluate
        self._evaluate = None
        self.threads = threads
        self._calib: dict[str, Any] = {}

    def evaluate_fn(self) -> Any:
        if self._evaluate is None:
            self._evaluate = load_function(self.evaluate_spec)
        return self._evaluate

    def build(self, recipe: Recipe):
        kk = _knobs_key(recipe.knobs())
        if all(recipe.precision(g.name) != "int8" for g in self.groups):
            return build(self.fp32, recipe, self.groups, [])
        if kk not in self._calib:
            seen: dict[str, Any] = {}
            full = build(self.fp32, Recipe.make({}, **recipe.knobs()), self.groups, self.batches,
                         calibrator=recording_calibrator(local_calibrator(self.batches), seen))
            self._calib[kk] = (calibration_of(full), seen.get("channel_absmax"))
            if not recipe.nodes:
                return full
        calib, smooth = self._calib[kk]
        return build(self.fp32, recipe, self.groups, self.batches, calibration=calib, smoothing=smooth)

    def set_calibration(self, knobs: dict[str, Any], calib: dict, smooth: dict | None) -> None:
        """Use a calibration made elsewhere (the driver's sharded one) for these knobs."""
        self._calib[_knobs_key(knobs)] = (CalibrationResult.from_dict(calib),
                                          None if smooth is None else CalibrationResult.from_dict(smooth))

    def calibrate_shard(self, model_bytes: bytes, targets: Sequence[str] | None, kind: str, shard: int,
                        shards: int) -> dict:
        """Observe ``kind`` statistics of ``targets`` on every ``shards``-th batch from ``shard``."""
        import onnx

        from ..io import from_onnx
        from ..quant.calibrate import calibrate

        model = from_onnx(onnx.load_from_string(model_bytes))
        return calibrate(model, self.batches[shard::shards], targets, kind=kind, progress=False).to_dict()

    def accuracy(self, recipe: Recipe, fn: Any = None) -> tuple[float, float, int, list[float] | None]:
        """(user score, seconds spent, process id, per-sample scores when the function gives them)."""
        import os

        t = time.perf_counter()
        run = make_runner(self.build(recipe), self.target, self.threads)
        score, samples = as_score((fn or self.evaluate_fn())(run))
        return score, time.perf_counter() - t, os.getpid(), samples

    def latency(self, recipe: Recipe, feeds: dict[str, np.ndarray]) -> float:
        return time_run(make_runner(self.build(recipe), self.target, self.threads), feeds, min_time=0.4,
                        cpu=cpu_clock(self.threads))

    def ping(self) -> int:
        import os

        return os.getpid()


def _knobs_key(knobs: dict[str, Any]) -> str:
    return repr(sorted(knobs.items()))


class LocalExecutor:
    """Trials one at a time in this process."""

    workers = 1

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def prepare(self, recipes: Sequence[Recipe]) -> None:
        """Nothing to share: the worker calibrates on first use."""

    def accuracy(self, recipes: Sequence[Recipe], fn: Any = None) -> list[tuple[float, float, int, list[float] | None]]:
        return [self.worker.accuracy(r, fn) for r in recipes]

    def latency(self, recipes: Sequence[Recipe], feeds: dict[str, np.ndarray]) -> list[float]:
        return [self.worker.latency(r, feeds) for r in recipes]

    def close(self) -> None:
        pass


class RayExecutor:
    """``workers`` scoring actors and one latency actor on a Ray cluster (local unless ``address``)."""

    def __init__(self, args: tuple, workers: int, address: str | None = None) -> None:
        try:
            import ray
        except ImportError as e:
            raise GraphoptError("trials on Ray need the distributed extra: pip install 'graphopt[distributed]'") from e
        self.ray = ray
        self._owns = False
        if not ray.is_initialized():
            kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
            if address:
                ray.init(address=address, **kw)
            else:
                ray.init(num_cpus=workers + 1, **kw)
            self._owns = True
        self.workers = workers
        remote = ray.remote(num_cpus=1)(Worker)
        ref = ray.put(args)
        self.actors = [remote.remote(*ray.get(ref)) for _ in range(workers)]
        # the latency actor gets the same CPUs as the scorers but runs only between scoring rounds
        self.timer = ray.remote(num_cpus=0)(Worker).remote(*args)
        self.pids = ray.get([a.ping.remote() for a in self.actors])
        import onnx

        from ..io import from_onnx

        self._fp32, self._groups = from_onnx(onnx.load_from_string(args[0])), list(args[1])
        self._prepared: set[str] = set()
        self.shard_calls = 0

    def calibrate(self, model: Any, targets: Sequence[str] | None, kind: str) -> CalibrationResult:
        """A :data:`graphopt.quant.calibrate.Calibrator`: every scoring actor observes its shard of the
        batches (every ``workers``-th), the results merge (observers merge exactly)."""
        from ..io import to_onnx
        from ..quant.calibrate import quant_targets

        # the default targets come from the driver's annotations, which do not travel in the ONNX bytes
        targets = list(targets) if targets is not None else quant_targets(model)
        ref = self.ray.put(to_onnx(model).SerializeToString())
        parts = self.ray.get([a.calibrate_shard.remote(ref, targets, kind, i, self.workers)
                              for i, a in enumerate(self.actors)])
        self.shard_calls += 1
        res = CalibrationResult.from_dict(parts[0])
        for p in parts[1:]:
            res = res.merge(CalibrationResult.from_dict(p))
        return res

    def prepare(self, recipes: Sequence[Recipe]) -> None:
        """Calibrate each new knob setting once, sharded over the actors, and hand every actor the result
        (instead of each actor calibrating on all the data)."""
        for r in recipes:
            kk = _knobs_key(r.knobs())
            if kk in self._prepared or all(r.precision(g.name) != "int8" for g in self._groups):
                continue
            seen: dict[str, Any] = {}
            full = build(self._fp32, Recipe.make({}, **r.knobs()), self._groups, [],
                         calibrator=recording_calibrator(self.calibrate, seen))
            calib, smooth = calibration_of(full), seen.get("channel_absmax")
            payload = (r.knobs(), calib.to_dict(), None if smooth is None else smooth.to_dict())
            self.ray.get([a.set_calibration.remote(*payload) for a in [*self.actors, self.timer]])
            self._prepared.add(kk)

    def accuracy(self, recipes: Sequence[Recipe], fn: Any = None) -> list[tuple[float, float, int, list[float] | None]]:
        refs = [self.actors[i % self.workers].accuracy.remote(r, fn) for i, r in enumerate(recipes)]
        return list(self.ray.get(refs))

    def latency(self, recipes: Sequence[Recipe], feeds: dict[str, np.ndarray]) -> list[float]:
        # one at a time on the dedicated actor, and only after the scoring round returned
        return [self.ray.get(self.timer.latency.remote(r, feeds)) for r in recipes]

    def close(self) -> None:
        for a in [*self.actors, self.timer]:
            self.ray.kill(a)
        if self._owns:
            self.ray.shutdown()
