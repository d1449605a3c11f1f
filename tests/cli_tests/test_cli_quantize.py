"""``graphopt quantize``: static with a .npz folder, dynamic, weight-only; bad data -> exit 1, a missing option -> exit 2."""

import json

import numpy as np

import graphopt
from graphopt.cli import main
from graphopt.quant.testing import mlp_model, random_batches


def _model(tmp_path):
    return graphopt.save(mlp_model(), tmp_path / "mlp.onnx")


def test_static_with_npz_folder_report_and_saved_calibration(tmp_path, capsys):
    src = _model(tmp_path)
    calib = tmp_path / "calib"
    calib.mkdir()
    for i, b in enumerate(random_batches(3)):
        np.savez(calib / f"{i}.npz", **b)
    out, rep = tmp_path / "q.onnx", tmp_path / "rep"
    assert main(["quantize", str(src), "-o", str(out), "--calib", str(calib), "--observer", "percentile",
                 "--smoothquant", "0.5", "--report", str(rep), "--save-calib", str(tmp_path / "c.json"),
                 "--no-progress", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"calibrate", "insert-qdq"} <= set(report["stats"])  # calibration ran as a pass of the pipeline
    assert 0 <= report["end_to_end"]["relative_l2"] < 0.5 and report["end_to_end"]["cosine_min"] > 0.5
    assert report["layer_errors"] and 0 < report["size_ratio"] < 1
    assert (rep / "layer_errors.png").stat().st_size > 1000
    assert json.loads((rep / "report.json").read_text())["layer_errors"] == report["layer_errors"]
    assert graphopt.load(out).graph.op_counts()["QuantizeLinear"] >= 2
    # the saved ranges are reused (SmoothQuant, the same alpha, still smooths from data first)
    assert main(["quantize", str(src), "-o", str(tmp_path / "q2.onnx"), "--load-calib", str(tmp_path / "c.json"),
                 "--calib", str(calib), "--smoothquant", "0.5", "--format", "qoperator", "--no-progress"]) == 0
    assert "MatMulInteger" in graphopt.load(tmp_path / "q2.onnx").graph.op_counts()


def test_dynamic_and_weight_only(tmp_path, capsys):
    src = _model(tmp_path)
    assert main(["quantize", str(src), "-o", str(tmp_path / "d.onnx"), "--mode", "dynamic"]) == 0
    assert main(["quantize", str(src), "-o", str(tmp_path / "w.onnx"), "--mode", "weight-only", "--bits", "4",
                 "--group-size", "16"]) == 0
    assert "com.microsoft::MatMulNBits" in graphopt.load(tmp_path / "w.onnx").graph.op_counts()


def test_bad_input_exit_code(tmp_path, capsys):
    src = _model(tmp_path)
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((2, 8, 7), np.float32))
    # data that does not fit the model: a run-time error (1); a missing required option: a usage error (2)
    assert main(["quantize", str(src), "-o", str(tmp_path / "q.onnx"), "--calib", str(bad)]) == 1
    assert "dim 2 must be 16" in capsys.readouterr().err
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"nodes": {"no_such_node": "fp32"}}))
    assert main(["quantize", str(src), "-o", str(tmp_path / "q.onnx"), "--config", str(cfg), "--calib", str(bad)]) == 1
    assert "no_such_node" in capsys.readouterr().err
    assert main(["quantize", str(src), "-o", str(tmp_path / "q.onnx")]) == 2
    assert "--calib is required" in capsys.readouterr().err
