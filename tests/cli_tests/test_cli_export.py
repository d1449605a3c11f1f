"""``graphopt export`` and ``graphopt convert``."""

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper, parser

from graphopt.cli import main


def _onnx_model(tmp_path):
    mp = parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N, 4] x) => (float[N, 3] y) {
        h = MatMul(x, w)
        i = Identity(h)
        y = Relu(i)
    }""")
    mp.graph.initializer.append(numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3) - 5, "w"))
    path = tmp_path / "m.onnx"
    onnx.save(mp, str(path))
    return path


def _ort(path, feeds):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


def test_export_onnx(tmp_path, capsys):
    src = _onnx_model(tmp_path)
    out = tmp_path / "out" / "m.opt.onnx"
    assert main(["export", str(src), "--to", "onnx", "-o", str(out), "--level", "O0"]) == 0
    assert "wrote" in capsys.readouterr().out
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_allclose(_ort(out, {"x": x})[0], _ort(src, {"x": x})[0], rtol=1e-6)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_export_openvino(tmp_path, precision):
    import openvino as ov
    from graphopt.backends.openvino import compile_for_cpu, infer, recorded_precision

    src = _onnx_model(tmp_path)
    out = tmp_path / "m.xml"
    assert main(["export", str(src), "--to", "openvino", "-o", str(out), "--precision", precision]) == 0
    assert out.exists() and out.with_suffix(".bin").exists()
    assert recorded_precision(ov.Core().read_model(str(out))) == precision
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    got = infer(compile_for_cpu(out, "fp32"), {"x": x})[0]
    np.testing.assert_allclose(got, _ort(src, {"x": x})[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("level", ["O1", "O2"])
def test_export_runs_the_pass_pipeline(tmp_path, capsys, level):
    src = _onnx_model(tmp_path)
    out = tmp_path / f"m.{level}.onnx"
    assert main(["export", str(src), "--to", "onnx", "-o", str(out), "--level", level, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["level"] == level and result["output"] == str(out)
    assert "Identity" not in {n.op_type for n in onnx.load(str(out)).graph.node}  # cleanup ran
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_allclose(_ort(out, {"x": x})[0], _ort(src, {"x": x})[0], rtol=1e-6)


@pytest.mark.parametrize("to,out", [("onnx", "c.onnx"), ("openvino", "c.xml")])
def test_export_check(tmp_path, capsys, to, out):
    if to == "openvino":
        import openvino  # noqa: F401 - installed with the suite's extras
    src = _onnx_model(tmp_path)
    assert main(["export", str(src), "--to", to, "-o", str(tmp_path / out), "--level", "O2", "--check"]) == 0
    assert "-> ok" in capsys.readouterr().out


def test_export_bad_arguments(tmp_path, capsys, caplog):
    src = _onnx_model(tmp_path)
    assert main(["export", str(src), "--to", "openvino", "-o", str(tmp_path / "m.onnx")]) == 2
    assert "must end in .xml" in capsys.readouterr().err
    # a flag the mode ignores says so and the export goes on
    assert main(["export", str(src), "--to", "onnx", "-o", str(tmp_path / "x.onnx"), "--precision", "bf16"]) == 0
    assert "--precision is ignored" in caplog.text
    assert main(["export", str(tmp_path / "missing.onnx"), "--to", "onnx", "-o", str(tmp_path / "x.onnx")]) == 1
    assert "not found" in capsys.readouterr().err


_FACTORY = '''
import torch


def make_cnn():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(4, 2))


class Tokens(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(1000, 8)

    def forward(self, input_ids):
        return self.emb(input_ids).mean(1)


def make_tokens():
    torch.manual_seed(0)
    return Tokens()


def not_a_module():
    return 42
'''


@pytest.fixture
def factory_pkg(tmp_path, monkeypatch):
    import torch  # noqa: F401 - installed with the suite's extras
    (tmp_path / "cli_export_factories.py").write_text(_FACTORY)
    monkeypatch.chdir(tmp_path)  # convert puts the current directory on the import path
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_convert_cnn_then_export_to_openvino(factory_pkg, capsys):
    import torch

    out = factory_pkg / "cnn.onnx"
    assert main(["convert", "--torch", "cli_export_factories:make_cnn", "--example-shape", "2,3,16,16",
                 "--input-names", "image", "--exporter", "torchscript", "-o", str(out)]) == 0
    assert "converted Sequential" in capsys.readouterr().out
    from cli_export_factories import make_cnn

    x = torch.randn(3, 3, 16, 16)  # dynamic batch
    want = make_cnn().eval()(x).detach().numpy()
    np.testing.assert_allclose(_ort(out, {"image": x.numpy()})[0], want, rtol=1e-4, atol=1e-5)
    assert main(["export", str(out), "--to", "openvino", "-o", str(factory_pkg / "cnn.xml")]) == 0


def test_convert_int64_tokens(factory_pkg):
    out = factory_pkg / "tok.onnx"
    assert main(["convert", "--torch", "cli_export_factories:make_tokens", "--example-shape", "2,7",
                 "--example-dtype", "int64", "--input-names", "input_ids", "--exporter", "torchscript",
                 "-o", str(out)]) == 0
    mp = onnx.load(str(out))
    dims = mp.graph.input[0].type.tensor_type.shape.dim
    assert mp.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert [d.dim_param for d in dims] == ["batch", "seq"]


def test_convert_bad_factory(factory_pkg, capsys):
    base = ["--example-shape", "1,3", "-o", str(factory_pkg / "x.onnx")]
    assert main(["convert", "--torch", "cli_export_factories", *base]) == 2
    assert "package.module:factory" in capsys.readouterr().err
    assert main(["convert", "--torch", "no_such_module_xyz:make", *base]) == 1
    assert "cannot import" in capsys.readouterr().err
    assert main(["convert", "--torch", "cli_export_factories:not_a_module", *base]) == 1
    assert "not a torch.nn.Module" in capsys.readouterr().err
    assert main(["convert", "--torch", "cli_export_factories:make_cnn", "--example-shape", "1,x", "-o", "y.onnx"]) == 2
    assert "--example-shape" in capsys.readouterr().err
