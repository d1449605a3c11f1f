"""graphopt.train: students, distillation, the loop's checkpoint/resume, export back to graphopt."""

import numpy as np
import pytest
import torch

import graphopt
from graphopt.errors import GraphoptError
from graphopt.train import default_layer_map, distill, drop_layers, export_onnx, layer_list, prune_torch
from graphopt.train._loop import as_arrays, batch_at

from .conftest import tiny_classifier

NAMES = ("input_ids", "attention_mask", "token_type_ids")


def _logits(net, d):
    with torch.no_grad():
        return net(**{k: torch.from_numpy(d[k]) for k in NAMES}).numpy()


def test_drop_layers_every_other(tiny):
    s = drop_layers(tiny, 2)
    assert len(layer_list(s)[1]) == 2 and len(layer_list(tiny)[1]) == 4
    assert s._graphopt_teacher_layers == [0, 2]
    assert default_layer_map(tiny, s) == {0: 1, 1: 3}
    # the kept layers are copies of the teacher's, not shared
    assert layer_list(s)[1][1].attention.self.query.weight.data_ptr() != \
        layer_list(tiny)[1][2].attention.self.query.weight.data_ptr()
    assert torch.equal(layer_list(s)[1][1].attention.self.query.weight, layer_list(tiny)[1][2].attention.self.query.weight)
    with pytest.raises(GraphoptError, match="1..4"):
        drop_layers(tiny, 5)


def test_prune_torch_equals_masking(tiny, data):
    """Removing heads/neurons equals zeroing their output-projection columns in the unpruned model."""
    import copy

    masked = copy.deepcopy(tiny)
    layer = layer_list(masked)[1][1]
    with torch.no_grad():
        layer.attention.output.dense.weight[:, 8:16] = 0   # head 1 of 4 (head dim 8)
        layer.output.dense.weight[:, [0, 5, 7]] = 0
    keep_n = [j for j in range(48) if j not in (0, 5, 7)]
    pruned = prune_torch(copy.deepcopy(tiny), {1: [0, 2, 3]}, {1: keep_n})
    assert layer_list(pruned)[1][1].attention.self.query.out_features == 24
    np.testing.assert_allclose(_logits(pruned, data), _logits(masked, data), rtol=1e-5, atol=1e-5)


def test_distill_reduces_loss_and_student_learns(data):
    teacher = tiny_classifier(seed=1)
    student = drop_layers(teacher, 2)
    with torch.no_grad():  # start the student away from the teacher
        student.head.weight.mul_(0.1)
    before = np.abs(_logits(student, data) - _logits(teacher, data)).mean()
    res = distill(teacher, student, data, steps=20, batch=8, lr=3e-3, progress=False)
    after = np.abs(_logits(student, data) - _logits(teacher, data)).mean()
    assert res.steps == 20 and len(res.losses) == 20
    assert np.mean(res.losses[-5:]) < np.mean(res.losses[:5])
    assert after < before
    assert not student.training


def test_resume_after_interrupt_matches_uninterrupted(tmp_path, data):
    teacher = tiny_classifier(seed=1)
    ref = drop_layers(teacher, 2)
    torch.manual_seed(0)
    distill(teacher, ref, data, steps=12, batch=8, lr=1e-3, progress=False)

    student = drop_layers(teacher, 2)
    ckpt = tmp_path / "run.ckpt"
    calls = {"n": 0}
    real = torch.optim.AdamW.step

    def flaky(self, *a, **k):  # Ctrl-C at the start of step 7 (after 7 completed steps)
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    torch.manual_seed(0)
    torch.optim.AdamW.step = flaky
    try:
        with pytest.raises(KeyboardInterrupt):
            distill(teacher, student, data, steps=12, batch=8, lr=1e-3, progress=False, checkpoint=ckpt, every=100)
    finally:
        torch.optim.AdamW.step = real
    assert ckpt.exists()
    fresh = drop_layers(teacher, 2)
    res = distill(teacher, fresh, data, steps=12, batch=8, lr=1e-3, progress=False, checkpoint=ckpt)
    assert res.resumed_from == 7 and res.steps == 12 and len(res.losses) == 12
    np.testing.assert_allclose(_logits(fresh, data), _logits(ref, data), rtol=1e-4, atol=1e-5)
    with pytest.raises(GraphoptError, match="another run"):  # other settings: refused
        distill(teacher, drop_layers(teacher, 2), data, steps=13, batch=8, progress=False, checkpoint=ckpt)


def test_batches_are_a_function_of_step(data):
    a = batch_at(data, 9, 8, seed=3)
    b = batch_at(data, 9, 8, seed=3)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert a["input_ids"].shape[1] == int(a["attention_mask"].sum(1).max())


def test_bad_data_is_named(tmp_path, tiny):
    with pytest.raises(GraphoptError, match="different lengths"):
        as_arrays({"input_ids": np.zeros((3, 4)), "attention_mask": np.zeros((2, 4))})
    with pytest.raises(GraphoptError, match="no .npz"):
        as_arrays(tmp_path)
    with pytest.raises(GraphoptError, match="lacks input"):
        distill(tiny, drop_layers(tiny, 2), {"input_ids": np.zeros((4, 3), np.int64)}, steps=1,
                input_names=NAMES, progress=False)


def test_export_runs_in_graphopt_and_matches(tmp_path, data):
    teacher = tiny_classifier(seed=2)
    student = drop_layers(teacher, 2)
    path = export_onnx(student, tmp_path / "s.onnx", {k: data[k][:2] for k in NAMES})
    feeds = {k: data[k][:5] for k in NAMES}
    got = graphopt.compile(graphopt.load(path)).run(feeds)[0]
    np.testing.assert_allclose(got, _logits(student, feeds), rtol=1e-4, atol=1e-4)


def test_student_from_pruned_graph_matches_the_pruned_graph(tmp_path, data):
    """graphopt.prune reports the kept heads/neurons; the torch student cut with them computes
    what the pruned graph computes (no least-squares refit, which only the graph has)."""
    from graphopt.train import student_from_pruned

    teacher = tiny_classifier(seed=4)
    path = export_onnx(teacher, tmp_path / "t.onnx", {k: data[k][:2] for k in NAMES})
    calib = [{k: data[k][i:i + 8] for k in NAMES} for i in range(0, 32, 8)]
    model, rep = graphopt.prune(graphopt.load(path), calib, heads=0.5, ffn=0.5, reconstruct=False, progress=False)
    assert len(rep.kept_heads) == 4 and all(len(v) == 2 for v in rep.kept_heads.values())
    assert len(rep.kept_neurons) == 4 and all(len(v) == 24 for v in rep.kept_neurons.values())
    student = student_from_pruned(teacher, rep)
    assert layer_list(student)[1][0].intermediate.dense.out_features == 24
    feeds = {k: data[k][:6] for k in NAMES}
    got = graphopt.compile(model, "fp32").run(feeds)[0]
    np.testing.assert_allclose(_logits(student, feeds), got, rtol=1e-4, atol=1e-5)


def test_student_from_pruned_takes_the_least_squares_refit(tmp_path, data):
    """With the pruned graph given, the student takes its refitted W_o / W_2 rows and matches it."""
    from graphopt.train import student_from_pruned

    teacher = tiny_classifier(seed=4)
    path = export_onnx(teacher, tmp_path / "t.onnx", {k: data[k][:2] for k in NAMES})
    calib = [{k: data[k][i:i + 8] for k in NAMES} for i in range(0, 32, 8)]
    model, rep = graphopt.prune(graphopt.load(path), calib, heads=0.5, ffn=0.5, progress=False)
    feeds = {k: data[k][:6] for k in NAMES}
    got = graphopt.compile(model, "fp32").run(feeds)[0]
    sliced = _logits(student_from_pruned(teacher, rep), feeds)
    refit = _logits(student_from_pruned(teacher, rep, model), feeds)
    assert np.abs(sliced - got).max() > 1e-3  # the refit changed the function
    np.testing.assert_allclose(refit, got, rtol=1e-4, atol=1e-5)
    with pytest.raises(GraphoptError, match="pruned graph"):
        student_from_pruned(teacher, rep, graphopt.load(path))


def test_teacher_cache_gives_the_live_teacher_run(tmp_path, data):
    """Cached teacher outputs (computed once) train the student as the live
    teacher does; a second run reuses the cache, other data gets its own beside it."""
    from graphopt.train import teacher_outputs

    teacher = tiny_classifier(seed=1)
    live, cached = drop_layers(teacher, 2), drop_layers(teacher, 2)
    torch.manual_seed(0)
    distill(teacher, live, data, steps=6, batch=8, lr=1e-3, progress=False)
    torch.manual_seed(0)
    distill(teacher, cached, data, steps=6, batch=8, lr=1e-3, progress=False, teacher_cache=tmp_path / "t")
    np.testing.assert_allclose(_logits(cached, data), _logits(live, data), rtol=1e-3, atol=1e-4)
    (meta,) = (tmp_path / "t").glob("*/meta.json")
    stamp = meta.stat().st_mtime_ns
    out = teacher_outputs(teacher, data, NAMES, [1, 3], tmp_path / "t")
    assert meta.stat().st_mtime_ns == stamp  # reused
    assert set(teacher_outputs(teacher, data, NAMES, [3], tmp_path / "t")) == {"__teacher_logits", "__teacher_hidden3"}
    assert meta.stat().st_mtime_ns == stamp  # fewer layers: reused too
    np.testing.assert_allclose(out["__teacher_logits"], _logits(teacher, data), rtol=1e-5, atol=1e-6)
    other_teacher = tiny_classifier(seed=2)
    out = teacher_outputs(other_teacher, data, NAMES, [3], tmp_path / "t")  # another teacher: recomputed
    np.testing.assert_allclose(out["__teacher_logits"], _logits(other_teacher, data), rtol=1e-5, atol=1e-6)
    other = {**data, "input_ids": data["input_ids"][::-1].copy()}
    out = teacher_outputs(teacher, other, NAMES, [1, 3], tmp_path / "t")
    np.testing.assert_allclose(out["__teacher_logits"], _logits(teacher, other), rtol=1e-5, atol=1e-6)
    assert len(list((tmp_path / "t").glob("*/meta.json"))) == 2  # other data did not replace the first cache
    stamp = meta.stat().st_mtime_ns
    teacher_outputs(other_teacher, data, NAMES, [3], tmp_path / "t")
    assert meta.stat().st_mtime_ns == stamp  # the first data's cache is still there and reused


def test_validation_scores_and_early_stop_survive_resume(tmp_path, data):
    teacher = tiny_classifier(seed=1)
    scores = iter([0.5, 0.7, 0.6, 0.65, 0.9, 0.9])  # best at the 2nd evaluation, flat for 2 after it
    seen_modes = []

    def evaluate(m):
        seen_modes.append(m.training)
        return next(scores)

    ckpt = tmp_path / "s.ckpt"
    res = distill(teacher, drop_layers(teacher, 2), data, steps=12, batch=8, progress=False, checkpoint=ckpt,
                  evaluate=evaluate, eval_every=2, patience=2)
    assert res.evals == [(2, 0.5), (4, 0.7), (6, 0.6), (8, 0.65)]
    assert res.stopped_early and res.steps == 8 and not any(seen_modes)
    again = distill(teacher, drop_layers(teacher, 2), data, steps=12, batch=8, progress=False, checkpoint=ckpt,
                    evaluate=evaluate, eval_every=2, patience=2)
    assert again.steps == 8 and again.stopped_early and again.evals == res.evals  # stays stopped


def test_early_stop_restores_the_best_weights(tmp_path, data):
    """The student ends with the weights it had at its best evaluation (step 4), not the last
    step's (8); a resumed run restores the same ones from the checkpoint; restore_best=False keeps
    the last step's."""
    teacher = tiny_classifier(seed=1)
    snaps = {}

    def evaluate_with(scores):
        it = iter(scores)

        def evaluate(m):
            step = 2 * (len(snaps) + 1)
            snaps[step] = {k: v.clone() for k, v in m.state_dict().items()}
            return next(it)
        return evaluate

    kw = dict(steps=12, batch=8, lr=1e-3, progress=False, eval_every=2, patience=2)
    student = drop_layers(teacher, 2)
    res = distill(teacher, student, data, checkpoint=tmp_path / "s.ckpt",
                  evaluate=evaluate_with([0.5, 0.7, 0.6, 0.65]), **kw)
    assert res.stopped_early and res.steps == 8 and res.best_step == 4
    for k, v in student.state_dict().items():
        torch.testing.assert_close(v, snaps[4][k], rtol=0, atol=0)
    assert any(not torch.equal(v, snaps[8][k]) for k, v in student.state_dict().items())
    resumed = drop_layers(teacher, 2)
    again = distill(teacher, resumed, data, checkpoint=tmp_path / "s.ckpt", evaluate=evaluate_with([]), **kw)
    assert again.best_step == 4
    for k, v in resumed.state_dict().items():
        torch.testing.assert_close(v, snaps[4][k], rtol=0, atol=0)
    snaps.clear()
    last = drop_layers(teacher, 2)
    res = distill(teacher, last, data, restore_best=False, evaluate=evaluate_with([0.5, 0.7, 0.6, 0.65]), **kw)
    assert res.best_step is None
    for k, v in last.state_dict().items():
        torch.testing.assert_close(v, snaps[8][k], rtol=0, atol=0)
