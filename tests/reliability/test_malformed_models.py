"""A corpus of malformed models through the CLI and the Python API.

CLI: one line naming the file / node / tensor and the problem, a non-zero exit,
no traceback. Python: a GraphoptError subclass, from load() or at the latest
from compile(), never from run() and never another exception type.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

import graphopt
from graphopt.errors import GraphoptError


def _vi(name: str, shape=(1, 4), t=T.FLOAT) -> onnx.ValueInfoProto:
    return h.make_tensor_value_info(name, t, list(shape))


def _model(nodes=None, inputs=None, outputs=None, inits=(), opsets=(("", 17),)) -> onnx.ModelProto:
    nodes = nodes if nodes is not None else [h.make_node("Relu", ["x"], ["y"])]
    g = h.make_graph(nodes, "g", inputs if inputs is not None else [_vi("x")],
                     outputs if outputs is not None else [_vi("y")], list(inits))
    m = h.make_model(g, opset_imports=[h.make_opsetid(d, v) for d, v in opsets])
    m.ir_version = 10
    return m


def _ext(location: str, offset: int | None = None, length: int | None = None) -> onnx.TensorProto:
    t = nh.from_array(np.ones((4, 4), np.float32), "W")
    from onnx.external_data_helper import set_external_data

    set_external_data(t, location, offset=offset, length=length)
    t.ClearField("raw_data")
    return t


def _matmul(w: onnx.TensorProto) -> onnx.ModelProto:
    return _model([h.make_node("MatMul", ["x", "W"], ["y"])], inits=[w])


def _no_default_opset() -> onnx.ModelProto:
    m = _model(opsets=(("com.example", 1),))
    return m


def _bad_raw_size() -> onnx.TensorProto:
    t = nh.from_array(np.ones((4, 4), np.float32), "W")
    t.raw_data = b"\0" * 7
    return t


def _bad_dtype() -> onnx.TensorProto:
    t = nh.from_array(np.ones((4, 4), np.float32), "W")
    t.data_type = 999
    return t


def _untyped_attr() -> onnx.ModelProto:
    m = _model([h.make_node("LeakyRelu", ["x"], ["y"], alpha=0.1)])
    m.graph.node[0].attribute[0].type = 0
    return m


# name -> writer(dir) returning the model path; each must be refused
CORPUS: dict[str, Callable[[Path], Path]] = {}


def case(name: str):
    def deco(fn):
        CORPUS[name] = fn
        return fn
    return deco


def _save(d: Path, name: str, m: onnx.ModelProto) -> Path:
    p = d / f"{name}.onnx"
    p.write_bytes(m.SerializeToString())
    return p


def _bytes(d: Path, name: str, data: bytes) -> Path:
    p = d / f"{name}.onnx"
    p.write_bytes(data)
    return p


case("empty")(lambda d: _bytes(d, "empty", b""))
case("garbage")(lambda d: _bytes(d, "garbage", bytes(np.random.default_rng(0).integers(0, 256, 512, np.uint8))))
case("text")(lambda d: _bytes(d, "text", b'{"not": "onnx"}\n'))
case("truncated")(lambda d: _bytes(d, "truncated", _matmul(nh.from_array(np.ones((4, 4), np.float32), "W"))
                                   .SerializeToString()[:-40]))
case("no-graph")(lambda d: _bytes(d, "no-graph", onnx.ModelProto(ir_version=8).SerializeToString()))
case("unknown-op")(lambda d: _save(d, "unknown-op", _model([h.make_node("FooBar", ["x"], ["y"])])))
case("op-too-new-for-opset")(lambda d: _save(d, "op-too-new", _model([h.make_node("Gelu", ["x"], ["y"])])))
case("no-default-opset")(lambda d: _save(d, "no-default-opset", _no_default_opset()))
case("unimported-domain")(lambda d: _save(d, "unimported-domain", _model([h.make_node("Op", ["x"], ["y"], domain="com.x")])))
case("unknown-custom-op")(lambda d: _save(d, "custom-op", _model([h.make_node("Op", ["x"], ["y"], domain="com.x")],
                                                               opsets=(("", 17), ("com.x", 1)))))
case("ext-escape")(lambda d: _save(d, "ext-escape", _matmul(_ext("../../../../etc/passwd"))))
case("ext-absolute")(lambda d: _save(d, "ext-absolute", _matmul(_ext("/etc/passwd"))))
case("ext-missing")(lambda d: _save(d, "ext-missing", _matmul(_ext("nowhere.bin"))))
case("ext-short")(lambda d: (d / "short.bin").write_bytes(b"\0" * 8) and _save(d, "ext-short", _matmul(_ext("short.bin"))))
case("ext-offset")(lambda d: (d / "off.bin").write_bytes(b"\0" * 64) and
                   _save(d, "ext-offset", _matmul(_ext("off.bin", offset=4096, length=64))))
case("undefined-input")(lambda d: _save(d, "undefined-input", _model([h.make_node("Add", ["x", "nope"], ["y"])])))
case("output-not-produced")(lambda d: _save(d, "no-output", _model(outputs=[_vi("z")])))
case("produced-twice")(lambda d: _save(d, "twice", _model([h.make_node("Relu", ["x"], ["y"]),
                                                          h.make_node("Neg", ["x"], ["y"])])))
case("not-topological")(lambda d: _save(d, "order", _model([h.make_node("Relu", ["t"], ["y"]),
                                                           h.make_node("Neg", ["x"], ["t"])])))
case("negative-dim")(lambda d: _save(d, "negative-dim", _model(inputs=[_vi("x", (1, -4))], outputs=[_vi("y", (1, -4))])))
case("raw-data-size")(lambda d: _save(d, "raw-size", _matmul(_bad_raw_size())))
case("tensor-dtype-999")(lambda d: _save(d, "dtype-999", _matmul(_bad_dtype())))
case("untyped-attribute")(lambda d: _save(d, "untyped-attr", _untyped_attr()))
case("wrong-arity")(lambda d: _save(d, "arity", _model([h.make_node("Relu", ["x", "x"], ["y"])])))
case("directory")(lambda d: (d / "dir.onnx").mkdir() or d / "dir.onnx")
case("missing-file")(lambda d: d / "does-not-exist.onnx")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("malformed")
    out = {}
    for name, make in CORPUS.items():
        d = root / name / "models"  # ext-escape's ../.. must leave the model's folder
        d.mkdir(parents=True)
        out[name] = make(d)
    return out


def test_corpus_is_large() -> None:
    assert len(CORPUS) >= 20


# Gelu at opset 17 is invalid ONNX, but graphopt runs it natively with the right result (lenient)
API_CASES = [n for n in CORPUS if n != "op-too-new-for-opset"]


@pytest.mark.parametrize("name", API_CASES)
def test_python_api_raises_graphopt_error(corpus: dict[str, Path], name: str) -> None:
    with pytest.raises(GraphoptError):  # load + lower: the refusal must come by now, not from run()
        graphopt.compile(corpus[name], level="O0")


@pytest.mark.parametrize("name", list(CORPUS))
def test_python_load_bytes_never_leaks_foreign_exceptions(corpus: dict[str, Path], name: str) -> None:
    p = corpus[name]
    if not p.is_file():
        pytest.skip("no bytes")
    try:
        graphopt.compile(graphopt.load(p.read_bytes()), level="O0")
    except GraphoptError:
        pass


CLI_CASES = [n for n in CORPUS if n != "unknown-custom-op"]  # valid ONNX: optimize passes it through


def test_cli_one_line_no_traceback(corpus: dict[str, Path], tmp_path: Path) -> None:
    """All cases in one interpreter (fast): ``graphopt optimize`` returns non-zero and prints one line."""
    script = (
        "import sys, io, contextlib, json\n"
        "from graphopt.cli import main\n"
        "res = {}\n"
        "for name, path, out in json.loads(sys.argv[1]):\n"
        "    err = io.StringIO()\n"
        "    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):\n"
        "        try:\n"
        "            rc = main(['optimize', path, '-o', out, '--level', 'O1'])\n"
        "        except SystemExit as e:\n"
        "            rc = e.code\n"
        "        except BaseException as e:\n"
        "            rc = 'raised ' + type(e).__name__\n"
        "    res[name] = [rc, err.getvalue()]\n"
        "print(json.dumps(res))\n")
    import json

    args = [[n, str(corpus[n]), str(tmp_path / f"{n}.out.onnx")] for n in CLI_CASES]
    r = subprocess.run([sys.executable, "-c", script, json.dumps(args)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    problems = []
    for name in CLI_CASES:
        rc, err = res[name]
        lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("WARNING")]
        if rc in (0, None) or not isinstance(rc, int):
            problems.append(f"{name}: exit {rc!r}")
        elif "Traceback" in err or len(lines) != 1 or not lines[0].startswith("graphopt optimize: error:"):
            problems.append(f"{name}: {err!r}")
        elif (tmp_path / f"{name}.out.onnx").exists():
            problems.append(f"{name}: wrote OUT anyway")
    assert not problems, "\n".join(problems)


def test_cli_names_the_tensor_and_the_node(corpus: dict[str, Path], tmp_path: Path) -> None:

    for name, needle in [("ext-escape", "'W'"), ("ext-missing", "'W'"), ("unknown-op", "FooBar"),
                         ("no-default-opset", "Relu"), ("negative-dim", "'x'"), ("undefined-input", "'nope'")]:
        try:
            graphopt.compile(corpus[name], level="O0")
        except GraphoptError as e:
            assert needle in str(e), (name, str(e))
            assert str(corpus[name].name) in str(e) or name in ("unknown-op",), (name, str(e))
