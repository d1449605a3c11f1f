"""Trials on a real local Ray cluster (2 scoring worker processes + the latency actor), no mock."""

from __future__ import annotations

import os

import pytest

from graphopt.tune import tune

ray = pytest.importorskip("ray", reason="trials on Ray need graphopt[distributed]")


def test_two_ray_workers_score_in_parallel(digits, tmp_path):
    ev = f"{digits['eval']}:validation"
    res = tune(digits["path"], ev, digits["calib"], tolerance=0.01, strategy="pareto", workers=2, max_trials=5,
               knob_trials=2, outdir=tmp_path / "ray", progress=False)
    assert res.met, res.message
    assert not ray.is_initialized()  # the cluster tune started is shut down again
    pids = {r.get("pid") for r in res.trials if r.get("pid")}
    assert len(pids) == 2 and os.getpid() not in pids  # scored in two other processes
    assert res.evaluations <= 5
