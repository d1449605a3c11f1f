"""Writes are atomic: a failing, size-limited or interrupted write keeps the previous file.

Also: ``optimize`` leaves no OUT when its check fails, and OUT == IN is refused.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

import graphopt
from graphopt.cli import main
from graphopt.errors import GraphoptError


def _proto(n: int = 4) -> onnx.ModelProto:
    w = nh.from_array(np.random.default_rng(0).standard_normal((n, n)).astype(np.float32), "W")
    g = h.make_graph([h.make_node("MatMul", ["x", "W"], ["y"])], "g", [h.make_tensor_value_info("x", T.FLOAT, [1, n])],
                     [h.make_tensor_value_info("y", T.FLOAT, [1, n])], [w])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)])


@pytest.fixture()
def previous(tmp_path: Path) -> tuple[Path, bytes]:
    p = tmp_path / "model.onnx"
    graphopt.save(graphopt.load(_proto()), p)
    return p, p.read_bytes()


def _only(d: Path) -> list[str]:
    return sorted(x.name for x in d.iterdir())


def test_injected_failure_keeps_previous_file(previous, monkeypatch) -> None:
    path, before = previous

    def broken(proto, f, *a, **k):
        Path(f).write_bytes(b"partial")  # the writer got half-way
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(onnx, "save_model", broken)
    with pytest.raises(GraphoptError, match="No space left"):
        graphopt.save(graphopt.load(_proto(8)), path)
    assert path.read_bytes() == before
    assert _only(path.parent) == ["model.onnx"]  # no temporary left behind


def test_external_data_failure_keeps_both_files(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "m.onnx"
    graphopt.save(graphopt.load(_proto()), path, external_data=True, size_threshold=0)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert "m.onnx.data" in before
    real = Path.write_bytes

    def fail_after(self, data):  # save streams the tensors, then writes the small model proto
        real(self, data)
        raise KeyboardInterrupt  # interrupted after the data file and the model were written

    monkeypatch.setattr(Path, "write_bytes", fail_after)
    with pytest.raises(KeyboardInterrupt):
        graphopt.save(graphopt.load(_proto(8)), path, external_data=True, size_threshold=0)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_file_size_limit_keeps_previous_file(previous) -> None:
    """RLIMIT_FSIZE (EFBIG; Python ignores SIGXFSZ) in a subprocess: the old file survives."""
    path, before = previous
    code = ("import resource, numpy as np, graphopt\n"
            "from onnx import helper as h, TensorProto as T, numpy_helper as nh\n"
            "m = graphopt.load(%r)\n"
            "m.graph.initializers['W'].const = np.zeros((64, 64), np.float32)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))\n"
            "try:\n    graphopt.save(m, %r)\nexcept graphopt.GraphoptError as e:\n    print('refused', e)\n"
            % (str(path), str(path)))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "refused" in r.stdout, r.stdout + r.stderr
    assert path.read_bytes() == before
    assert _only(path.parent) == ["model.onnx"]


def test_sigint_during_write_keeps_previous_file(previous) -> None:
    path, before = previous
    # A background job of a non-interactive shell starts with SIGINT ignored (as CI may run us);
    # the child restores Python's handler so the signal it is sent really interrupts it.
    code = ("import os, signal, time, onnx, graphopt\n"
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "real = onnx.save_model\n"
            "def slow(p, f, *a, **k):\n"
            "    real(p, f, *a, **k)\n"
            "    print('writing', flush=True)\n"
            "    time.sleep(60)\n"
            "onnx.save_model = slow\n"
            "m = graphopt.load(%r)\n"
            "graphopt.save(m, %r)\n" % (str(path), str(path)))
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "writing"
        p.send_signal(signal.SIGINT)
        p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode != 0
    assert path.read_bytes() == before
    assert _only(path.parent) == ["model.onnx"]


def test_optimize_refuses_out_equal_in(previous, capsys) -> None:
    path, before = previous
    link = path.parent / "link.onnx"
    os.link(path, link)
    for out in (str(path), str(path.parent / "." / "model.onnx"), str(link)):
        assert main(["optimize", str(path), "-o", out]) == 2
        assert "is the input file" in capsys.readouterr().err
    assert path.read_bytes() == before


@pytest.mark.parametrize("cmd", [["quantize", "--mode", "dynamic"], ["export", "--to", "onnx"]])
def test_other_commands_refuse_out_equal_in(previous, capsys, cmd) -> None:
    path, before = previous
    assert main([cmd[0], str(path), *cmd[1:], "-o", str(path)]) == 2
    assert "is the input file" in capsys.readouterr().err
    assert path.read_bytes() == before


def test_optimize_failing_check_leaves_no_out(previous, tmp_path: Path, capsys, monkeypatch) -> None:
    path, _ = previous
    out = tmp_path / "out" / "opt.onnx"

    def reject(*a, **k):
        raise onnx.checker.ValidationError("injected: bad model")

    monkeypatch.setattr(onnx.checker, "check_model", reject)
    assert main(["optimize", str(path), "-o", str(out), "--level", "O1"]) == 1
    assert "not written" in capsys.readouterr().err
    assert not out.exists() and list(out.parent.iterdir()) == []


def test_optimize_failing_check_keeps_previous_out(previous, tmp_path: Path, monkeypatch) -> None:
    path, before = previous
    out = tmp_path / "opt.onnx"
    out.write_bytes(b"previous result")
    monkeypatch.setattr(onnx.checker, "check_model", lambda *a, **k: (_ for _ in ()).throw(
        onnx.checker.ValidationError("injected")))
    assert main(["optimize", str(path), "-o", str(out), "--level", "O1"]) == 1
    assert out.read_bytes() == b"previous result"


def test_atomic_helpers_replace_whole_files(tmp_path: Path) -> None:
    from graphopt.io import atomic

    p = tmp_path / "r.json"
    atomic.write_text(p, "old")
    with pytest.raises(RuntimeError):
        with atomic.atomic_output(p) as tmp:
            tmp.write_text("new, half")
            raise RuntimeError("boom")
    assert p.read_text() == "old" and _only(tmp_path) == ["r.json"]
    atomic.write_bytes(p, b"new")
    assert p.read_bytes() == b"new" and _only(tmp_path) == ["r.json"]
