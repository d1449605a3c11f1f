"""Prune ratio as a tuning knob, on the real all-MiniLM-L6-v2: each ratio is searched against the
unpruned fp32 score, the recipe carries the chosen ratio, and ``quantize --recipe`` re-applies it."""

from __future__ import annotations

import json

import numpy as np
import pytest

import graphopt
from graphopt.tune import tune
from graphopt.tune.space import Recipe

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def task(minilm_spec, tmp_path_factory):
    from graphopt.data import sentences
    from graphopt.models import sample_feeds

    cal = sentences("calib")
    calib = [sample_feeds(minilm_spec, cal[i:i + 16], batch=16, seq=32) for i in range(0, 64, 16)]
    held = sample_feeds(minilm_spec, sentences("eval")[:32], batch=32, seq=32)
    ref = graphopt.compile(minilm_spec.path, precision="fp32").run(held)[0]
    mask = held["attention_mask"][..., None].astype(np.float32)
    pooled_ref = (ref * mask).sum(1) / mask.sum(1)

    def evaluate(run):  # mean cosine of the pooled sentence embedding to the fp32 model's
        h = np.asarray(run(held)[0])
        p = (h * mask).sum(1) / mask.sum(1)
        return float(np.mean(np.sum(p * pooled_ref, 1) / np.linalg.norm(p, axis=1) / np.linalg.norm(pooled_ref, axis=1)))

    return calib, evaluate


def _params(m):
    """Elements of the 2-D weights (int8 or float): what pruning heads and neurons shrinks."""
    return sum(v.const.size for v in m.graph.all_values() if v.const is not None and v.const.ndim == 2)


def test_prune_ratios_are_searched_against_the_unpruned_score(minilm_spec, task, tmp_path):
    calib, evaluate = task
    out = tmp_path / "tuned"
    res = tune(minilm_spec.path, evaluate, calib, tolerance=0.2, strategy="basic", max_trials=4, knob_trials=1,
               outdir=out, progress=False, prune=(0.25,))
    summary = json.loads((out / "summary.json").read_text())
    rows = {r["prune"]: r for r in summary["prune_ratios"]}
    assert set(rows) == {0.0, 0.25}
    # one reference for every ratio: the unpruned fp32 score (1.0: the model against itself)
    assert res.baseline == pytest.approx(1.0, abs=1e-4)
    assert rows[0.25]["accuracy"] < rows[0.0]["accuracy"]  # pruning without retraining costs fidelity
    assert res.met and res.accuracy >= 0.8
    assert (out / "prune-00" / "trials.jsonl").exists() and (out / "prune-25" / "trials.jsonl").exists()
    recipe = Recipe.load(out / "recipe.json")
    assert recipe.prune == res.recipe.prune
    # the chosen model is the fastest that met; when that is the pruned one, its weights are smaller
    sizes = [_params(graphopt.load(p)) for p in (out / "model.onnx", minilm_spec.path)]
    assert (sizes[0] < 0.9 * sizes[1]) == (res.recipe.prune > 0)


def test_quantize_recipe_reapplies_the_prune_ratio(minilm_spec, task, tmp_path):
    from graphopt.cli import main

    calib, _ = task
    cdir = tmp_path / "calib"
    cdir.mkdir()
    for i, b in enumerate(calib):
        np.savez(cdir / f"{i}.npz", **b)
    rec = tmp_path / "recipe.json"
    rec.write_text(json.dumps(Recipe.make({}, prune=0.25).to_dict()))
    out = tmp_path / "q.onnx"
    assert main(["quantize", str(minilm_spec.path), "-o", str(out), "--recipe", str(rec), "--calib", str(cdir),
                 "-q"]) == 0
    assert _params(graphopt.load(out)) < 0.9 * _params(graphopt.load(minilm_spec.path))
    with pytest.raises(graphopt.errors.GraphoptError, match="prune"):
        Recipe.from_dict({"nodes": {}, "prune": {"heads": 0.25, "ffn": 0.5}})


def test_a_ratio_whose_fp32_misses_the_bar_costs_one_evaluation(minilm_spec, task, tmp_path):
    """At 0.1 % the 25 %-pruned fp32 model already misses the unpruned score: its search stops after
    scoring that baseline, and the unpruned ratio's answer stands."""
    calib, evaluate = task
    out = tmp_path / "tight"
    res = tune(minilm_spec.path, evaluate, calib, tolerance=0.001, strategy="basic", max_trials=4, knob_trials=1,
               outdir=out, progress=False, prune=(0.25,))
    rows = {r["prune"]: r for r in json.loads((out / "summary.json").read_text())["prune_ratios"]}
    assert rows[0.25]["evaluations"] == 1 and not rows[0.25]["met"]
    assert "already misses the tolerance" in rows[0.25]["message"]
    assert res.recipe.prune == 0.0
