"""``graphopt optimize`` and ``graphopt passes``."""

import onnx
import onnx.parser

from graphopt.cli import main

TEXT = """<ir_version: 8, opset_import: ["" : 17]>
g (float[2,3] x) => (float[2,3] y)
{ a = Identity(x)
  c = Constant<value = float[3] {1, 2, 3}>()
  b = Add(a, c)
  y = Relu(b) }
"""


def _model(tmp_path):
    p = tmp_path / "m.onnx"
    onnx.save(onnx.parser.parse_model(TEXT), p)
    return p


def test_optimize_prints_table_and_writes_model(tmp_path, capsys):
    src = _model(tmp_path)
    out = tmp_path / "out" / "m.opt.onnx"
    assert main(["optimize", str(src), "-o", str(out), "--level", "O1", "--check",
                 "--dump-ir", str(tmp_path / "ir")]) == 0
    text = capsys.readouterr().out
    assert "fold-constants" in text and "total" in text and "nodes 4 -> 2" in text
    mp = onnx.load(out)
    assert [n.op_type for n in mp.graph.node] == ["Add", "Relu"]
    assert (tmp_path / "ir" / "000-input.txt").exists()


def test_optimize_with_pass_list_and_unknown_pass(tmp_path, capsys):
    src = _model(tmp_path)
    out = tmp_path / "o.onnx"
    assert main(["optimize", str(src), "-o", str(out), "--passes", "remove-noops,fixpoint(cse,max=2)"]) == 0
    assert main(["optimize", str(src), "-o", str(out), "--passes", "remove-noops,nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown pass 'nope'" in err and "remove-unused" in err


def test_passes_lists_descriptions(capsys):
    assert main(["passes"]) == 0
    text = capsys.readouterr().out
    assert "fold-constants" in text and "dead-code elimination" in text and "O1:" in text


def test_optimize_disable_and_reproducer(tmp_path, capsys):
    src = _model(tmp_path)
    out = tmp_path / "o.onnx"
    assert main(["optimize", str(src), "-o", str(out), "--level", "O1", "--disable", "fold-constants"]) == 0
    mp = onnx.load(out)
    assert "Constant" in [n.op_type for n in mp.graph.node]
    assert main(["optimize", str(src), "-o", str(out), "--disable", "nope"]) == 2
    assert "unknown pass" in capsys.readouterr().err
