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
from .space import Group, Recipe, build, calibration_of, load_function, make_runner
from .tables import time_run

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
        kk = repr(sorted(recipe.knobs().items()))
        if all(recipe.precision(g.name) != "int8" for g in self.groups):
            return build(self.fp32, recipe, self.groups, [])
        if kk not in self._calib:
            full = build(self.fp32, Recipe.make({}, **recipe.knobs()), self.groups, self.batches)
            self._calib[kk] = calibration_of(full)
            if not recipe.nodes:
                return full
        return build(self.fp32, recipe, self.groups, self.batches, calibration=self._calib[kk])

    def accuracy(self, recipe: Recipe, fn: Any = None) -> tuple[float, float, int]:
        """(user score, seconds spent, process id)."""
        import os

        t = time.perf_counter()
        run = make_runner(self.build(recipe), self.target, self.threads)
        score = float((fn or self.evaluate_fn())(run))
        return score, time.perf_counter() - t, os.getpid()

    def latency(self, recipe: Recipe, feeds: dict[str, np.ndarray]) -> float:
        return time_run(make_runner(self.build(recipe), self.target, self.threads), feeds, min_time=0.4)

    def ping(self) -> int:
        import os

        return os.getpid()


class LocalExecutor:
    """Trials one at a time in this process."""

    workers = 1

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def accuracy(self, recipes: Sequence[Recipe], fn: Any = None) -> list[tuple[float, float, int]]:
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

    def accuracy(self, recipes: Sequence[Recipe], fn: Any = None) -> list[tuple[float, float, int]]:
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
