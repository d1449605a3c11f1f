"""graphopt.tune on the digits CNN: the pareto, basic and greedy strategies, the output folder,
resuming from trials.jsonl, the "nothing meets the tolerance" answer, and the CLI verbs."""

from __future__ import annotations

import json

import numpy as np
import pytest

import graphopt
from graphopt.cli import main
from graphopt.tune import Recipe, tune


def _ev(d, func):
    return f"{d['eval']}:{func}"


@pytest.fixture(scope="module")
def pareto_run(digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("tuned")
    res = tune(digits["path"], _ev(digits, "validation"), digits["calib"], tolerance=0.01, outdir=out,
               test_evaluate=_ev(digits, "test"), max_trials=12, progress=False)
    return res, out


def test_pareto_meets_tolerance_and_writes_the_folder(pareto_run):
    res, out = pareto_run
    assert res.met, res.message
    assert res.accuracy >= res.baseline * 0.99
    assert res.test_accuracy is not None and res.baseline_test_accuracy is not None
    assert 2 <= res.evaluations <= 12
    assert any(p != "fp32" for p in (res.recipe.precision(g) for g in
                                      [n.name for n in graphopt.load(out / "model.onnx").graph if n.op_type in ("Conv", "Gemm")]))
    for f in ("model.onnx", "recipe.json", "trials.jsonl", "pareto.png", "report.html", "summary.json"):
        assert (out / f).stat().st_size > 0, f
    rows = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    assert rows[0]["phase"] == "baseline fp32" and len(rows) == res.evaluations
    assert all(r["pred_latency_ms"] is not None for r in rows if r["phase"].startswith("front"))
    assert "Cost table" in (out / "report.html").read_text()


def test_chosen_model_runs_in_onnxruntime_and_natively(pareto_run, digits):
    import onnxruntime as ort

    res, out = pareto_run
    z = np.load(digits["root"] / "test.npz")
    s = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    acc_ort = float((s.run(None, {"image": z["image"]})[0].argmax(1) == z["labels"]).mean())
    sess = graphopt.compile(str(out / "model.onnx"))  # reads the per-node precisions from the metadata
    acc_nat = float((np.asarray(sess.run({"image": z["image"]})[0]).argmax(1) == z["labels"]).mean())
    assert abs(acc_nat - res.test_accuracy) < 1e-9
    assert acc_ort >= res.baseline_test_accuracy - 0.03


def test_second_run_resumes_from_trials_jsonl(pareto_run, digits):
    res, out = pareto_run
    again = tune(digits["path"], _ev(digits, "validation"), digits["calib"], tolerance=0.01, outdir=out,
                 max_trials=12, progress=False)
    assert again.evaluations == 0  # every candidate it asked for was already scored
    assert again.recipe == res.recipe


def test_nothing_meets_returns_the_most_accurate_with_a_message(digits, tmp_path):
    res = tune(digits["path"], _ev(digits, "exact"), digits["calib"], tolerance=0.0, relative=False,
               strategy="greedy", max_trials=4, outdir=tmp_path, progress=False)
    assert not res.met
    assert "no quantized candidate met the tolerance" in res.message
    assert res.recipe is not None and (tmp_path / "model.onnx").exists()
    scored = [r for r in res.trials if r["phase"] != "baseline fp32"]
    assert res.accuracy == max(r["accuracy"] for r in scored)


@pytest.mark.parametrize("strategy,first", [("basic", "all-int8"), ("greedy", "all-int8")])
def test_basic_and_greedy_follow_their_order(digits, tmp_path, strategy, first):
    res = tune(digits["path"], _ev(digits, "validation"), digits["calib"], tolerance=0.01, strategy=strategy,
               max_trials=6, outdir=tmp_path, progress=False)
    phases = [r["phase"] for r in res.trials]
    assert phases[:2] == ["baseline fp32", first]
    assert res.met, res.message  # the digits CNN meets 1 % at all-int8: both stop at their first candidate
    assert res.evaluations == 2


def test_recipe_reapplied_by_quantize_cli(pareto_run, digits, tmp_path, capsys):
    res, out = pareto_run
    dst = tmp_path / "again.onnx"
    assert main(["quantize", str(digits["path"]), "--recipe", str(out / "recipe.json"), "--calib",
                 str(digits["calib"]), "-o", str(dst)]) == 0
    m = graphopt.load(dst)
    assert json.loads(m.metadata_props["graphopt.node_precision"]) == \
        json.loads(graphopt.load(out / "model.onnx").metadata_props["graphopt.node_precision"])
    assert m.graph.op_counts().get("QuantizeLinear", 0) == \
        graphopt.load(out / "model.onnx").graph.op_counts().get("QuantizeLinear", 0)


def test_tune_and_sensitivity_cli(digits, tmp_path, capsys):
    rc = main(["tune", str(digits["path"]), "--eval", _ev(digits, "validation"), "--calib", str(digits["calib"]),
               "--strategy", "greedy", "--max-trials", "3", "-o", str(tmp_path / "t")])
    assert rc == 0
    assert "met the tolerance" in capsys.readouterr().out
    assert Recipe.load(tmp_path / "t" / "recipe.json")
    assert main(["sensitivity", str(digits["path"]), "--calib", str(digits["calib"]), "--report",
                 str(tmp_path / "s")]) == 0
    text = capsys.readouterr().out
    assert "int8 err" in text and "bf16 err" in text
    for f in ("sensitivity.png", "sensitivity.txt", "report.html"):
        assert (tmp_path / "s" / f).exists()


def test_bad_arguments_are_clear(digits):
    with pytest.raises(graphopt.GraphoptError, match="unknown strategy"):
        tune(digits["path"], _ev(digits, "validation"), digits["calib"], strategy="random")
    with pytest.raises(graphopt.GraphoptError, match="no function"):
        tune(digits["path"], f"{digits['eval']}:nope", digits["calib"])


def test_pareto_spends_no_evaluation_that_cannot_win(pareto_run):
    """The default knobs' all-int8 model meets 1 % on digits: no further knob trials, and only front
    points predicted faster than it (by more than timing noise) are scored."""
    res, _ = pareto_run
    knobs = [r for r in res.trials if r["phase"].startswith("knobs")]
    assert len(knobs) == 1 and knobs[0]["accuracy"] >= res.baseline * 0.99
    front = [r for r in res.trials if r["phase"].startswith("front") and not r.get("resumed")]
    assert all(r["key"] != knobs[0]["key"] and r["pred_latency_ms"] is not None for r in front)
    assert res.evaluations == 2 + len({r["key"] for r in front})


def test_pareto_ranks_knob_settings_by_probe_error_not_user_evaluations(digits, tmp_path):
    """When the defaults' all-int8 model misses the bar, the other knob settings are ranked by the
    all-int8 model's probe error: at most one more is scored with the user's function."""
    res = tune(digits["path"], _ev(digits, "exact"), digits["calib"], tolerance=0.0, relative=False,
               max_trials=6, knob_trials=3, outdir=tmp_path, progress=False)
    knobs = [r for r in res.trials if r["phase"].startswith("knobs")]
    assert 1 <= len(knobs) <= 2
    assert not res.met and res.evaluations <= 6
