import json
import subprocess
import sys

import numpy as np
import onnx
from onnx import numpy_helper, parser

from graphopt.cli import main


def _model(tmp_path):
    mp = parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N, 4] x) => (float[N, 3] y) {
        h = MatMul(x, w)
        y = Relu(h)
    }""")
    mp.graph.initializer.append(numpy_helper.from_array(np.ones((4, 3), np.float32), "w"))
    path = tmp_path / "m.onnx"
    onnx.save(mp, str(path))
    return path


def test_info_reports_isa(capsys):
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["isa_selected"] in {"scalar", "avx2", "avx512", "avx512_vnni", "avx512_bf16", "amx"}
    assert isinstance(info["avx512_vnni"], bool)


def test_inspect_text_and_json(tmp_path, capsys):
    path = _model(tmp_path)
    assert main(["inspect", str(path)]) == 0
    text = capsys.readouterr().out
    assert "MatMul" in text and "x: f32[N,4]" in text
    assert main(["inspect", "--json", str(path)]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["op_counts"] == {"MatMul": 1, "Relu": 1}
    assert s["parameters"] == 12 and s["parameters_by_dtype"]["f32"]["bytes"] == 48
    assert s["opsets"] == {"ai.onnx": 17}


def test_inspect_bad_file_is_a_clean_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\x01garbage")
    r = subprocess.run([sys.executable, "-m", "graphopt.cli", "inspect", str(bad)], capture_output=True, text=True)
    assert r.returncode == 1  # a run-time error (usage errors exit 2)
    assert "not a valid ONNX protobuf" in r.stderr and "Traceback" not in r.stderr
