"""fold-constants and fold-shape-chains."""

import numpy as np

from graphopt.pattern.testing import check_pipeline, parse_model
from graphopt.pm import PassContext, PassManager

HDR = '<ir_version: 8, opset_import: ["" : 17]>\n'


def test_fold_constant_subgraph_and_constant_nodes():
    text = HDR + """
    g (float[2,3] x) => (float[2,3] y)
    <float[3] w = {1, 2, 3}>
    { c = Constant<value = float[3] {1, 1, 1}>()
      s = Add(w, c)
      e = Exp(s)
      t = Transpose<perm=[0]>(e)
      y = Mul(x, t) }
    """
    m, r = check_pipeline(text, "fold-constants,remove-unused", Constant=0, Add=0, Exp=0, Transpose=0, Mul=1)
    assert r.records[0].stats == {"constants": 1, "folded": 3}
    (init,) = m.graph.initializers.values()
    np.testing.assert_allclose(init.const, np.exp(np.array([2, 3, 4], np.float32)), rtol=1e-6)


def test_fold_static_shape_and_size():
    text = HDR + """
    g (float[2,3] x) => (float[3,2] y)
    { s = Shape(x)
      t = Shape<start=-1>(x)
      n = Size(x)
      r = Reshape(x, s)
      y = Transpose<perm=[1,0]>(r) }
    """
    m, r = check_pipeline(text, "fold-constants,remove-unused", Shape=0, Size=0)
    assert r.records[0].stats["shapes"] >= 1


def test_dynamic_shape_not_folded():
    text = HDR + """
    g (float[N,3] x) => (int64[2] y)
    { y = Shape(x) }
    """
    m = parse_model(text)
    PassManager.from_text("fold-constants")(m)
    assert m.graph.op_counts() == {"Shape": 1}


def test_output_size_bound():
    text = HDR + """
    g (float[2] x) => (float[2] y)
    <int64[2] shp = {1000, 2000}>
    { big = ConstantOfShape<value = float[1] {1}>(shp)
      s = ReduceSum<keepdims=0>(big)
      y = Mul(x, s) }
    """
    m = parse_model(text)
    with PassContext(config={"fold_constants.max_elements": 1000}):
        PassManager.from_text("fold-constants")(m)
    assert m.graph.op_counts().get("ConstantOfShape") == 1  # 2M elements: not materialised
    m2 = parse_model(text)
    PassManager.from_text("fold-constants(max_elements=4000000),remove-unused")(m2)
    assert "ConstantOfShape" not in m2.graph.op_counts()
    assert all(v.const.size <= 2 for v in m2.graph.initializers.values())  # the big one died


def test_shared_big_constant_is_not_copied():
    text = HDR + """
    g (float[4,300] x) => (float[4,300] y, float[300,300] z)
    <float[300,300] w = {%s}>
    { wt = Transpose<perm=[1,0]>(w)
      y = MatMul(x, wt)
      z = Relu(w) }
    """ % ",".join(["1"] * 90000)
    m = parse_model(text)
    PassManager.from_text("fold-constants(shared_input_elements=1000)")(m)
    assert m.graph.op_counts().get("Transpose") == 1  # w stays alive, so W^T would be a second copy
    m2 = parse_model(text.replace("z = Relu(w)", "z = Relu(wt)").replace("float[300,300] z", "float[300,300] z"))
    PassManager.from_text("fold-constants(shared_input_elements=1000),remove-unused")(m2)
    assert "Transpose" not in m2.graph.op_counts()  # w dies with it: folding does not duplicate
    assert len(m2.graph.initializers) == 1


def test_random_ops_are_not_folded():
    text = HDR + """
    g (float[2] x) => (float[2] y)
    { r = RandomUniform<shape=[2]>()
      y = Add(x, r) }
    """
    m = parse_model(text)
    PassManager.from_text("fold-constants")(m)
    assert m.graph.op_counts()["RandomUniform"] == 1


def test_graph_output_keeps_name_when_folded():
    text = HDR + """
    g (float[2] x) => (float[2] y, float[2] c)
    { c = Constant<value = float[2] {1, 2}>()
      y = Add(x, c) }
    """
    m, _ = check_pipeline(text, "fold-constants", Constant=0)
    assert [v.name for v in m.graph.outputs] == ["y", "c"]


def test_shape_chain_to_static_reshape():
    text = HDR + """
    g (float[B,S,8] x) => (float[B,S,2,4] y)
    <int64 i0 = {0}, int64 i1 = {1}, int64[1] ax = {0}, int64[1] h = {2}, int64[1] d = {4}>
    { sh = Shape(x)
      b = Gather<axis=0>(sh, i0)
      s = Gather<axis=0>(sh, i1)
      bu = Unsqueeze(b, ax)
      su = Unsqueeze(s, ax)
      tgt = Concat<axis=0>(bu, su, h, d)
      y = Reshape(x, tgt) }
    """
    feeds = {"x": np.random.default_rng(0).standard_normal((3, 5, 8)).astype(np.float32)}
    m, r = check_pipeline(text, "fold-shape-chains,remove-unused", feeds=feeds, Shape=0, Gather=0, Unsqueeze=0,
                          Concat=0, Reshape=1)
    tgt = m.graph.nodes[0].inputs[1].const
    assert tgt.tolist() == [0, 0, 2, 4]


def test_shape_chain_with_static_dims_folds_to_constant():
    text = HDR + """
    g (float[B,6,8] x) => (float[B,48] y)
    <int64[1] st = {1}, int64[1] en = {3}, int64[1] ax = {0}, int64[1] m1 = {-1}>
    { sh = Shape(x)
      tail = Slice(sh, st, en, ax)
      p = ReduceProd<keepdims=1>(tail)
      tgt = Concat<axis=0>(m1, p)
      y = Reshape(x, tgt) }
    """
    feeds = {"x": np.ones((2, 6, 8), np.float32)}
    check_pipeline(text, "fold-shape-chains,fold-constants,remove-unused", feeds=feeds, Shape=0, Slice=0,
                   ReduceProd=0, Concat=0, Reshape=1)


def test_shape_chain_with_two_unknown_dims_is_kept():
    text = HDR + """
    g (float[B,S,8] x, float[P,Q] z) => (float[P,Q,8] y)
    <int64 i0 = {0}, int64 i1 = {1}, int64[1] ax = {0}, int64[1] d = {8}>
    { sh = Shape(z)
      b = Gather<axis=0>(sh, i0)
      s = Gather<axis=0>(sh, i1)
      bu = Unsqueeze(b, ax)
      su = Unsqueeze(s, ax)
      tgt = Concat<axis=0>(bu, su, d)
      y = Reshape(x, tgt) }
    """
    m = parse_model(text)
    r = PassManager.from_text("fold-shape-chains")(m)
    assert not r.modified
    assert m.graph.op_counts()["Concat"] == 1


def test_huge_outputs_are_not_even_evaluated():
    # 4e10 elements: evaluating this would exhaust memory; the size is predicted first.
    text = HDR + """
    g (float[2] x) => (float[2] y)
    <int64[2] shp = {200000, 200000}, float[1] v = {1}, int64[2] rep = {100000, 100000},
     float[2,2] small = {1, 2, 3, 4}, int64[2] big = {300000, 2}>
    { a = ConstantOfShape<value = float[1] {1}>(shp)
      b = Tile(small, rep)
      c = Expand(small, big)
      sa = ReduceSum<keepdims=0>(a)
      sb = ReduceSum<keepdims=0>(b)
      sc = ReduceSum<keepdims=0>(c)
      s1 = Add(sa, sb)
      s = Add(s1, sc)
      y = Mul(x, s) }
    """
    m = parse_model(text, infer_shapes=False)
    r = PassManager.from_text("fold-constants")(m)
    ops = m.graph.op_counts()
    assert ops["ConstantOfShape"] == 1 and ops["Tile"] == 1 and ops["Expand"] == 1
    assert r.records[0].stats.get("folded", 0) == 0


def test_constants_fold_inside_subgraphs():
    text = HDR + """
    g (bool c, float[2] x) => (float[2] y)
    <float[2] w = {1, 2}>
    { y = If(c) <then_branch = t () => (float[2] a) { k = Constant<value = float[2] {3, 4}>()
                                                      kw = Mul(k, w)
                                                      a = Add(x, kw) },
                 else_branch = e () => (float[2] b) { b = Neg(x) }> }
    """
    m = parse_model(text)
    before = parse_model(text)
    PassManager.from_text("fold-constants,remove-unused")(m)
    then = m.graph.nodes[0].attrs["then_branch"].value
    assert [n.op_type for n in then] == ["Add"]
    assert then.nodes[0].inputs[1].const.tolist() == [3.0, 8.0]
    from graphopt.pattern.testing import run_ort

    for c in (True, False):
        feeds = {"c": np.array(c), "x": np.array([1, 1], np.float32)}
        np.testing.assert_array_equal(run_ort(m, feeds)[0], run_ort(before, feeds)[0])


def test_integer_fast_path_keeps_scalar_shapes():
    from graphopt.ir import Node
    from graphopt.passes.folding._int_eval import eval_int_node

    n = Node("Equal", [], {})
    (out,) = eval_int_node(n, [np.array(0), np.array(0)])
    assert out.shape == () and out.dtype == np.bool_
    n = Node("Unsqueeze", [], {})
    (out,) = eval_int_node(n, [np.array(3), np.array([0])])
    assert out.shape == (1,)


def test_if_with_constant_condition_is_inlined():
    text = HDR + """
    g (float[2] x) => (float[2] y, float[2] z)
    <bool c = {1}, float[2] w = {1, 2}>
    { y, z = If(c) <then_branch = t () => (float[2] a, float[2] b) { k = Constant<value = float[2] {3, 4}>()
                                                                     a = Add(x, k)
                                                                     b = Mul(a, w) },
                    else_branch = e () => (float[2] a2, float[2] b2) { a2 = Neg(x)
                                                                       b2 = Abs(x) }> }
    """
    m, r = check_pipeline(text, "fold-constants,remove-unused", If=0, Add=1, Mul=1, Neg=0)
    assert r.records[0].stats["if_inlined"] == 1
    assert [v.name for v in m.graph.outputs] == ["y", "z"]


def test_transpose_of_dequantized_weight_transposes_the_int8_constant():
    """torch's Linear with a fake-quant weight exports MatMul(x, Transpose(DQ(W_q))): the int8
    constant is transposed instead (per-channel axis 0 -> 1), exactly, so the int8 GEMM takes it."""
    text = '<ir_version: 8, opset_import: ["" : 17]>\n' + """
    g (float[2,3] x) => (float[2,2] y, float[2,2] z)
    <int8[2,3] wq = {1, -2, 3, 127, -128, 0}, float[2] s = {0.5, 0.25}, int8[2] zp = {0, 0},
     int8[2,3] wq2 = {4, 5, 6, 7, 8, 9}, float s2 = {0.1}>
    { w = DequantizeLinear<axis=0>(wq, s, zp)
      wt = Transpose<perm=[1,0]>(w)
      y = MatMul(x, wt)
      w2 = DequantizeLinear(wq2, s2)
      w2t = Transpose(w2)
      z = MatMul(x, w2t) }
    """
    m, r = check_pipeline(text, "fold-constants,remove-unused", Transpose=0, DequantizeLinear=2, MatMul=2)
    assert r.records[0].stats["dq_transposed"] == 2
    dqs = [n for n in m.graph if n.op_type == "DequantizeLinear"]
    assert [n.inputs[0].const.shape for n in dqs] == [(3, 2), (3, 2)]
    assert dqs[0].attr("axis") == 1


def test_transpose_of_shared_dequantized_weight_is_left():
    text = '<ir_version: 8, opset_import: ["" : 17]>\n' + """
    g (float[2,3] x, float[2,3] a) => (float[2,2] y, float[2,3] z)
    <int8[2,3] wq = {1, -2, 3, 127, -128, 0}, float s = {0.5}>
    { w = DequantizeLinear(wq, s)
      wt = Transpose<perm=[1,0]>(w)
      y = MatMul(x, wt)
      z = Add(a, w) }
    """
    check_pipeline(text, "fold-constants,remove-unused", Transpose=1, DequantizeLinear=1)
