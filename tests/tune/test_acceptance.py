"""Acceptance of a candidate: mean scores, or a paired confidence bound on per-sample scores."""

from __future__ import annotations

import numpy as np
import pytest

from graphopt.errors import GraphoptError
from graphopt.tune import tune
from graphopt.tune.acceptance import Acceptance, as_score


def test_plain_scores_compare_means():
    acc = Acceptance.of(0.90, tolerance=0.01)
    assert acc.bar == pytest.approx(0.891)
    assert acc.meets(0.8911) and not acc.meets(0.8909)
    assert Acceptance.of(0.90, tolerance=0.02, relative=False).bar == pytest.approx(0.88)


def test_paired_bound_needs_confidence_in_the_difference():
    ref = np.tile([1.0, 1.0, 1.0, 0.0], 100)           # 0.75 over 400 samples
    acc = Acceptance.of(ref, tolerance=0.01)
    assert acc.meets(0.75, ref)                          # nothing changed: no spread, passes on its mean
    swapped = ref.copy()
    swapped[np.flatnonzero(ref == 0)[:4]] = 1.0          # 4 gained, 1 lost: mean up, bound inside
    swapped[0] = 0.0
    assert acc.meets(float(swapped.mean()), swapped)
    churn = ref.copy()
    idx_lost, idx_gain = np.flatnonzero(ref == 1)[:12], np.flatnonzero(ref == 0)[:12]
    churn[idx_lost], churn[idx_gain] = 0.0, 1.0          # 12 lost, 12 gained: same mean, no confidence
    assert churn.mean() == ref.mean()
    assert not acc.meets(float(churn.mean()), churn)
    assert Acceptance.of(ref, tolerance=0.01, confidence=None).meets(float(churn.mean()), churn)
    lb = acc.lower_bound(churn)
    assert lb is not None and lb < -acc.allowed


def test_paired_bound_matches_the_normal_formula():
    rng = np.random.default_rng(0)
    ref = (rng.random(300) < 0.9).astype(float)
    cand = ref.copy()
    cand[rng.choice(300, 15, replace=False)] = 1.0 - cand[rng.choice(300, 15, replace=False)]
    d = cand - ref
    want = d.mean() - 1.6448536269514722 * d.std(ddof=1) / np.sqrt(300)
    assert Acceptance.of(ref, 0.01, confidence=0.95).lower_bound(cand) == pytest.approx(want)


def test_lengths_that_do_not_pair_fall_back_to_means():
    acc = Acceptance.of([1.0, 0.0, 1.0], tolerance=0.0)
    assert acc.lower_bound([1.0, 0.0]) is None
    assert acc.meets(0.7, [1.0, 0.0])


def test_bad_values_are_clear():
    with pytest.raises(GraphoptError, match="confidence"):
        Acceptance.of(0.9, 0.01, confidence=1.0)
    with pytest.raises(GraphoptError, match="empty"):
        as_score([])
    with pytest.raises(GraphoptError, match="non-finite"):
        as_score([1.0, float("nan")])
    assert as_score(np.float32(0.5)) == (0.5, None)
    assert as_score([[1.0], [0.0]]) == (0.5, [1.0, 0.0])


def test_tune_rejects_a_candidate_whose_gains_and_losses_only_cancel(digits, tmp_path):
    ev = f"{digits['eval']}:flips"
    strict = tune(digits["path"], ev, digits["calib"], tolerance=0.01, strategy="greedy", max_trials=3,
                  outdir=tmp_path / "strict", progress=False)
    assert not strict.met and "paired lower 90 % bound" in strict.message
    scored = [r for r in strict.trials if r["phase"] != "baseline fp32"]
    assert scored and all(len(r["samples"]) == 300 and r["paired_lower"] < 0 for r in scored)
    means = tune(digits["path"], ev, digits["calib"], tolerance=0.01, strategy="greedy", max_trials=3,
                 outdir=tmp_path / "means", progress=False, confidence=None)
    assert means.met and means.accuracy == strict.baseline
