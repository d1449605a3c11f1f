"""`graphopt bench` with the OpenVINO+NNCF int8 peer, on a model given by path in a non-default export
form (issue 12). A smoke run: rows, notes, fidelity and targets are checked; timings are not."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def tiny_sdpa_distilbert(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from graphopt.models import distilbert_onnx

    return distilbert_onnx(tmp_path_factory.mktemp("bench-peers"), attn="sdpa", exporter="torchscript",
                           dim=32, n_layers=1, n_heads=2, hidden_dim=64)


def test_export_forms_are_cached_apart(tiny_sdpa_distilbert):
    from graphopt.errors import GraphoptError
    from graphopt.models import EXPORT_FORMS, distilbert_onnx

    assert ("sdpa", "dynamo") in EXPORT_FORMS
    assert tiny_sdpa_distilbert.path.name.endswith("-sdpa-torchscript.onnx") and tiny_sdpa_distilbert.path.exists()
    with pytest.raises(GraphoptError, match="export form"):
        distilbert_onnx(tiny_sdpa_distilbert.path.parent, attn="flash", dim=32, n_layers=1, n_heads=2, hidden_dim=64)


def test_bench_by_path_with_openvino_nncf_int8(tiny_sdpa_distilbert, tmp_path, capsys):
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from graphopt.cli import main

    rc = main(["bench", str(tiny_sdpa_distilbert.path), "--quick", "--threads", "1", "--rounds", "1", "--per-round", "1",
               "--seq", "16", "--no-plot", "--out", str(tmp_path),
               "--systems", "graphopt-int8s", "ov-fp32", "ov-bf16", "ov-int8"])
    assert rc == 0
    data = json.loads((tmp_path / "results.json").read_text())
    rows = {r["system"]: r for r in data["results"]}
    assert set(rows) == {"graphopt-int8s", "ov-fp32", "ov-bf16", "ov-int8"}, data["skipped"]
    assert data["export_form"] == "as given"
    assert rows["ov-fp32"]["note"] == "INFERENCE_PRECISION_HINT=f32"
    assert rows["ov-bf16"]["note"] == "INFERENCE_PRECISION_HINT=bf16"
    assert rows["ov-int8"]["note"].startswith("NNCF PTQ (transformer)")
    assert rows["ov-fp32"]["cosine"] > 0.9999 and rows["ov-int8"]["cosine"] > 0.95
    assert all(r["median_ms"] > 0 and r["runs"] >= 1 for r in rows.values())
    assert any(t["target"] == "int8 (static) vs OpenVINO+NNCF int8" for t in data["targets"])
    assert "ov-int8" in capsys.readouterr().out


def test_bench_cli_rejects_unknown_export_form(capsys):
    from graphopt.cli import main

    with pytest.raises(SystemExit):
        main(["bench", "--export-form", "eager-onnxscript"])
