"""The bundled real model through import -> verify -> export -> onnxruntime."""

import numpy as np
import onnxruntime as ort
import pytest

import graphopt
from graphopt.models import sample_feeds

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SENTENCES = ["A man is playing a guitar on the street.", "The weather was cold and the roads were icy."]


def _run(path, feeds):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def test_minilm_roundtrip_is_exact(minilm_spec, tmp_path):
    m = graphopt.load(minilm_spec.path)
    m.verify()
    graphopt.infer_shapes(m)
    assert m.graph.op_counts()["Softmax"] == 6
    out = graphopt.save(m, tmp_path / "minilm.onnx")
    feeds = sample_feeds(minilm_spec, SENTENCES, seq=32)
    np.testing.assert_array_equal(_run(minilm_spec.path, feeds), _run(out, feeds))


def test_main_job_runs(minilm_spec, tmp_path, capsys):
    from graphopt.cli import main

    assert main(["run", "-o", str(tmp_path), "--seq", "32", "--eval", "24", "--no-bench"]) == 0
    out = capsys.readouterr().out
    assert "bit-identical" in out and "MultiHeadAttention×6" in out
    assert (tmp_path / "all-MiniLM-L6-v2-op17.int8.onnx").exists()
