"""``graphopt distill`` / ``graphopt qat`` on a tiny transformers classifier folder."""

import json

import numpy as np
import pytest

import graphopt
from graphopt.cli import main

NAMES = ("input_ids", "attention_mask", "token_type_ids")


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=48,
                     max_position_embeddings=32, num_labels=3)
    d = tmp_path_factory.mktemp("teacher")
    BertForSequenceClassification(cfg).save_pretrained(d)
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 64, (48, 10)).astype(np.int64)
    np.savez(d / "train.npz", input_ids=ids, attention_mask=np.ones_like(ids), token_type_ids=np.zeros_like(ids),
             labels=rng.integers(0, 3, 48).astype(np.int64))
    return d


@pytest.fixture(autouse=True)
def one_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _feeds(d):
    with np.load(d / "train.npz") as z:
        return {k: z[k][:3] for k in NAMES}


def test_distill_layers_and_pruned(teacher_dir, tmp_path, capsys):
    out = tmp_path / "s.onnx"
    assert main(["distill", "--teacher", str(teacher_dir), "--student-layers", "2", "--data",
                 str(teacher_dir / "train.npz"), "--steps", "3", "--batch", "8", "-o", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["steps"] == 3 and out.exists() and not (tmp_path / "s.onnx.ckpt").exists()
    assert graphopt.compile(graphopt.load(out)).run(_feeds(teacher_dir))[0].shape == (3, 3)
    out2 = tmp_path / "p.onnx"
    assert main(["distill", "--teacher", str(teacher_dir), "--heads", "0.5", "--ffn", "0.5", "--data",
                 str(teacher_dir / "train.npz"), "--steps", "2", "--batch", "8", "-o", str(out2), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert all(len(v) == 2 for v in res["kept_heads"].values()) and set(res["kept_neurons"].values()) == {24}


def test_qat_writes_qdq_that_runs_int8(teacher_dir, tmp_path, capsys):
    out = tmp_path / "q.onnx"
    assert main(["qat", "--model", str(teacher_dir), "--data", str(teacher_dir / "train.npz"), "--steps", "2",
                 "--batch", "8", "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    model = graphopt.load(out)
    assert graphopt.api.has_qdq(model)
    assert graphopt.compile(model).precision == "int8"


def test_usage_errors(teacher_dir, tmp_path):
    assert main(["distill", "--teacher", str(teacher_dir), "--data", str(teacher_dir / "train.npz"),
                 "-o", str(tmp_path / "x.onnx")]) == 2  # nothing to do
    assert main(["qat", "--model", str(tmp_path / "nope"), "--data", str(teacher_dir / "train.npz"),
                 "-o", str(tmp_path / "x.onnx")]) == 2
    assert main(["distill", "--teacher", str(teacher_dir), "--student-layers", "9", "--data",
                 str(teacher_dir / "train.npz"), "-o", str(tmp_path / "x.onnx")]) == 1  # a run-time error, named
