"""External data is read only from beside the model file, never from the working directory,
and every refusal is a GraphoptError naming the tensor (not onnx's ValidationError)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh
from onnx.external_data_helper import set_external_data

import graphopt
from graphopt.errors import ExternalDataError, GraphoptError, ModelLoadError

REAL = np.arange(16, dtype=np.float32).reshape(4, 4)


def _model(location: str) -> onnx.ModelProto:
    t = nh.from_array(np.zeros((4, 4), np.float32), "W")
    set_external_data(t, location)
    t.ClearField("raw_data")
    g = h.make_graph([h.make_node("MatMul", ["x", "W"], ["y"])], "g", [h.make_tensor_value_info("x", T.FLOAT, [1, 4])],
                     [h.make_tensor_value_info("y", T.FLOAT, [1, 4])], [t])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)])


@pytest.fixture()
def cwd_bait(tmp_path: Path, monkeypatch) -> Path:
    """A w.bin in the working directory (a different folder from the model's) holding 'secret' data."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "w.bin").write_bytes(np.full((4, 4), 7, np.float32).tobytes())
    monkeypatch.chdir(cwd)
    return cwd


@pytest.mark.parametrize("source", ["bytes", "proto"])
def test_no_model_path_means_no_external_read(cwd_bait: Path, source: str) -> None:
    m = _model("w.bin")
    with pytest.raises(ExternalDataError, match="tensor 'W'.*'w.bin'.*not\\s+loaded"):
        graphopt.load(m.SerializeToString() if source == "bytes" else m)
    with pytest.raises(ExternalDataError):
        graphopt.compile(m)


def test_load_external_data_false_does_not_read_cwd(cwd_bait: Path, tmp_path: Path) -> None:
    d = tmp_path / "model"
    d.mkdir()
    onnx.save(_model("w.bin"), d / "m.onnx")
    with pytest.raises(ExternalDataError, match="'W'"):
        graphopt.load(d / "m.onnx", load_external_data=False)


def test_reads_from_beside_the_file(cwd_bait: Path, tmp_path: Path) -> None:
    d = tmp_path / "model"
    d.mkdir()
    onnx.save(_model("w.bin"), d / "m.onnx")
    (d / "w.bin").write_bytes(REAL.tobytes())
    np.testing.assert_array_equal(graphopt.load(d / "m.onnx").graph.initializers["W"].const, REAL)


@pytest.mark.parametrize("location", ["../../../../etc/passwd", "/etc/passwd", "../w.bin", "sub/../../w.bin"])
def test_paths_outside_the_model_folder_are_refused(tmp_path: Path, location: str) -> None:
    d = tmp_path / "a" / "b"
    d.mkdir(parents=True)
    (tmp_path / "a" / "w.bin").write_bytes(REAL.tobytes())
    onnx.save(_model(location), d / "m.onnx")
    with pytest.raises(ExternalDataError, match="tensor 'W'.*outside the model's folder") as e:
        graphopt.load(d / "m.onnx")
    assert not isinstance(e.value, onnx.checker.ValidationError)


def test_symlink_escaping_the_folder_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "m"
    d.mkdir()
    (tmp_path / "secret.bin").write_bytes(REAL.tobytes())
    (d / "w.bin").symlink_to(tmp_path / "secret.bin")
    onnx.save(_model("w.bin"), d / "m.onnx")
    with pytest.raises(ExternalDataError, match="outside"):
        graphopt.load(d / "m.onnx")


def test_missing_file_names_tensor(tmp_path: Path) -> None:
    onnx.save(_model("nowhere.bin"), tmp_path / "m.onnx")
    with pytest.raises(ExternalDataError, match="tensor 'W'.*'nowhere.bin' not found"):
        graphopt.load(tmp_path / "m.onnx")


def test_errors_are_model_load_errors() -> None:
    assert issubclass(ExternalDataError, ModelLoadError) and issubclass(ModelLoadError, GraphoptError)


def test_unknown_op_fails_at_compile_not_run() -> None:
    g = h.make_graph([h.make_node("FooBar", ["x"], ["y"])], "g", [h.make_tensor_value_info("x", T.FLOAT, [1, 4])],
                     [h.make_tensor_value_info("y", T.FLOAT, [1, 4])])
    with pytest.raises(graphopt.UnsupportedError, match="FooBar"):
        graphopt.compile(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]))


def test_negative_declared_dim_is_refused_at_load() -> None:
    g = h.make_graph([h.make_node("Relu", ["x"], ["y"])], "g", [h.make_tensor_value_info("x", T.FLOAT, [1, -4])],
                     [h.make_tensor_value_info("y", T.FLOAT, [1, -4])])
    with pytest.raises(ModelLoadError, match="'x'.*-4"):
        graphopt.load(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]))
