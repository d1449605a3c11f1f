import pathlib
import subprocess
import sys

import graphopt.ir

import numpy as np
import pytest

from graphopt.errors import VerificationError
from graphopt.ir import DType, Graph, Node, TensorType, Value, verify


def f32(*shape):
    return TensorType(DType.FLOAT, shape)


def small_graph():
    g = Graph("g")
    x = g.add_input("x", f32("batch", 4))
    w = g.add_initializer("w", np.ones((4, 4), np.float32))
    mm = g.append(Node("MatMul", [x, w], name="mm"))
    relu = g.append(Node("Relu", [mm.output], name="relu"))
    g.outputs = [relu.output]
    return g, x, w, mm, relu


def test_use_def_chains_follow_mutation():
    g, x, w, mm, relu = small_graph()
    assert mm.output.producer() is mm and mm.output.index() == 0
    assert x.uses() == ((mm, 0),)
    assert mm.output.consumers() == [relu]
    ident = g.insert_after(mm, Node("Identity", [mm.output]))
    relu.set_input(0, ident.output)
    assert mm.output.consumers() == [ident]
    assert ident.output.uses() == ((relu, 0),)
    g.verify()


def test_replace_all_uses_with_and_safe_remove():
    g, x, w, mm, relu = small_graph()
    with pytest.raises(ValueError, match="used by Relu"):
        g.remove(mm)
    out_name = relu.output.name
    relu.output.replace_all_uses_with(mm.output, outputs=True)
    assert g.outputs == [mm.output]
    assert mm.output.name == out_name  # the graph's interface keeps its names
    g.remove(relu)
    assert x.uses() == ((mm, 0),) and mm.output.num_uses() == 0
    g.verify()
    assert len(g) == 1


def test_iteration_tolerates_removal_and_insertion():
    g = Graph("g")
    x = g.add_input("x", f32(2))
    prev = x
    for i in range(5):
        prev = g.append(Node("Neg", [prev], name=f"n{i}")).output
    g.outputs = [prev]
    seen = []
    for n in g:
        seen.append(n.name)
        if n.name == "n1":  # remove the node we stand on: bypass it
            n.output.replace_all_uses_with(n.inputs[0])
            g.remove(n)
        if n.name == "n2":
            g.insert_after(n, Node("Abs", [n.output], name="inserted"))
    assert seen == ["n0", "n1", "n2", "inserted", "n3", "n4"]
    g.verify()


def test_sort_restores_topological_order():
    g = Graph("g")
    x = g.add_input("x", f32(2))
    a = Node("Neg", [x], name="a")
    b = Node("Abs", [a.output], name="b")
    g.append(b)
    g.append(a)
    g.outputs = [b.output]
    problems = verify(g)
    assert any("produced later" in p for p in problems)
    g.sort()
    assert [n.name for n in g] == ["a", "b"]
    g.verify()


def test_cycle_is_reported_with_its_nodes():
    g = Graph("g")
    x = g.add_input("x", f32(2))
    a = g.append(Node("Add", [x, x], name="a"))
    b = g.append(Node("Neg", [a.output], name="b"))
    a.set_input(1, b.output)
    g.outputs = [b.output]
    with pytest.raises(VerificationError, match="cycle") as e:
        g.verify()
    assert "'a'" in str(e.value) and "'b'" in str(e.value)


def test_undefined_input_and_type_mismatch_name_the_node():
    g = Graph("g")
    x = g.add_input("x", f32(2))
    stray = Value("stray", f32(2))
    g.append(Node("Add", [x, stray], name="add"))
    y = g.add_input("y", TensorType(DType.INT64, (2,)))
    g.append(Node("Mul", [x, y], name="mul"))
    g.outputs = []
    problems = verify(g)
    assert any("'add'" in p and "%stray is not defined" in p for p in problems)
    assert any("'mul'" in p and "type mismatch" in p for p in problems)
    with pytest.raises(VerificationError):
        g.verify()


def test_initializer_data_must_match_declared_type():
    g = Graph("g")
    v = g.add_initializer("c", np.zeros((2, 3), np.float32))
    v.type = TensorType(DType.FLOAT, (3, 2))
    assert any("declared shape [3, 2]" in p for p in verify(g))


def test_printer_is_compact_and_stable():
    g, *_ = small_graph()
    text = str(g)
    assert text == str(g)
    assert "%w: f32[4,4] = const" in text
    assert "= MatMul(%x, %w)" in text
    assert text.splitlines()[0] == "graph g(%x: f32[batch,4]) {"


def test_unique_names_and_rename_checks():
    g, x, *_ = small_graph()
    assert g.unique_name("x") != "x"
    with pytest.raises(ValueError, match="already in use"):
        x.name = "w"
    x.name = "input"
    assert g.inputs[0].name == "input"


def test_to_networkx_edges():
    g, x, w, mm, relu = small_graph()
    nxg = g.to_networkx()
    assert list(nxg.edges(keys=True)) == [(mm, relu, mm.output.name)]


def test_subgraph_captures_outer_values():
    g = Graph("main")
    cond = g.add_input("cond", TensorType(DType.BOOL, ()))
    x = g.add_input("x", f32(2))
    then_g = Graph("then")
    then_g.outputs = [then_g.append(Node("Neg", [x])).output]
    else_g = Graph("else")
    else_g.outputs = [else_g.append(Node("Abs", [x])).output]
    node = g.append(Node("If", [cond], {"then_branch": then_g, "else_branch": else_g}))
    g.outputs = [node.output]
    assert node.implicit_inputs() == [x]
    assert {n for n, _ in x.uses()} == {then_g.nodes[0], else_g.nodes[0]}
    g.verify()


def test_ir_package_imports_neither_onnx_nor_torch():
    # graphopt/__init__ loads the ONNX front end, so check the IR's own sources and that torch stays out
    code = "import sys, graphopt.ir; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    ir_dir = pathlib.Path(graphopt.ir.__file__).parent
    sources = "\n".join(p.read_text() for p in ir_dir.glob("*.py"))
    assert "import onnx" not in sources and "import torch" not in sources
    assert out.strip() == "False"


def test_removing_a_node_drops_uses_inside_its_subgraphs():
    g = Graph("main")
    cond = g.add_input("cond", TensorType(DType.BOOL, ()))
    x = g.add_input("x", f32(2))
    body = Graph("then")
    body.outputs = [body.append(Node("Neg", [x])).output]
    other = Graph("else")
    other.outputs = [other.append(Node("Abs", [x])).output]
    node = g.append(Node("If", [cond], {"then_branch": body, "else_branch": other}))
    g.remove(node)
    assert x.num_uses() == 0 and cond.num_uses() == 0


def test_arity_is_checked_against_onnx_schemas():
    import graphopt.io  # noqa: F401  (installs onnx's schemas as the arity source)
    from graphopt.ir import Model

    g = Graph("g")
    x = g.add_input("x", f32(2))
    g.append(Node("Identity", [], name="empty"))
    g.append(Node("Add", [x], name="half"))
    g.append(Node("Transpose", [x], name="t"))
    g.append(Node("Gather", [x, x], name="ok"))
    g.append(Node("Cast", [x], name="nocast"))
    g.outputs = []
    problems = verify(g, {"": 17})
    assert any("'empty'" in p and "0 inputs" in p for p in problems)
    assert any("'half'" in p and "schema takes 2" in p for p in problems)
    assert any("'nocast'" in p and "required attribute(s) to" in p for p in problems)
    assert not any("'t'" in p or "'ok'" in p for p in problems)
    with pytest.raises(VerificationError, match="'empty'"):
        Model(g, opset_imports={"": 17}).verify()
