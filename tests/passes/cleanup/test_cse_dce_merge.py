"""cse, remove-unused, merge-transposes, merge-reshapes."""

from graphopt.pattern import explain
from graphopt.pattern.testing import check_pipeline, parse_model
from graphopt.passes.cleanup.merge_reshapes import MERGE_RESHAPES
from graphopt.passes.cleanup.merge_transposes import MergeTransposePair
from graphopt.pm import PassManager

HDR = '<ir_version: 8, opset_import: ["" : 17]>\n'


def test_cse_merges_duplicates_transitively():
    text = HDR + """
    g (float[2,3] x) => (float[2,3] y)
    <float[3] b1 = {1, 2, 3}, float[3] b2 = {1, 2, 3}>
    { a1 = Add(x, b1)
      a2 = Add(x, b2)
      r1 = Relu(a1)
      r2 = Relu(a2)
      y = Mul(r1, r2) }
    """
    m, r = check_pipeline(text, "cse", Add=1, Relu=1, Mul=1)
    assert len(m.graph.initializers) == 1
    n = m.graph.nodes[-1]
    assert n.inputs[0] is n.inputs[1]


def test_cse_respects_attributes_and_keeps_both_graph_outputs():
    text = HDR + """
    g (float[2,3] x) => (float[3,2] y, float[3,2] z, float[2,3] w)
    { y = Transpose<perm=[1,0]>(x)
      z = Transpose<perm=[1,0]>(x)
      s1 = Softmax<axis=0>(x)
      s2 = Softmax<axis=1>(x)
      w = Add(s1, s2) }
    """
    m, _ = check_pipeline(text, "cse", Transpose=2, Softmax=2)
    assert [v.name for v in m.graph.outputs] == ["y", "z", "w"]


def test_cse_leaves_random_ops():
    text = HDR + """
    g (float[2,3] x) => (float[2,3] y)
    { r1 = RandomUniformLike<seed=1.0>(x)
      r2 = RandomUniformLike<seed=1.0>(x)
      y = Add(r1, r2) }
    """
    m = parse_model(text)
    PassManager.from_text("cse")(m)
    assert m.graph.op_counts()["RandomUniformLike"] == 2


def test_remove_unused_nodes_and_initializers():
    text = HDR + """
    g (float[2,3] x, float[2,3] unused_in) => (float[2,3] y)
    <float[3] w = {1, 2, 3}, float[3] dead = {4, 5, 6}>
    { a = Add(x, dead)
      b = Relu(a)
      y = Mul(x, w) }
    """
    m, r = check_pipeline(text, "remove-unused", Add=0, Relu=0, Mul=1)
    assert set(m.graph.initializers) == {"w"}
    assert [v.name for v in m.graph.inputs] == ["x", "unused_in"]  # the interface stays
    assert r.records[0].stats == {"nodes": 2, "initializers": 1}


def test_remove_unused_inside_subgraphs():
    text = HDR + """
    g (bool c, float[2] x) => (float[2] y)
    { y = If(c) <then_branch = t () => (float[2] a) { dead = Neg(x)
                                                      a = Relu(x) },
                 else_branch = e () => (float[2] b) { b = Neg(x) }> }
    """
    m = parse_model(text)
    PassManager.from_text("remove-unused")(m)
    then = m.graph.nodes[0].attrs["then_branch"].value
    assert [n.op_type for n in then] == ["Relu"]
    assert m.graph.inputs[1].num_uses() == 2  # the dead Neg's use of x is gone


def test_merge_transposes_to_identity_then_removed():
    text = HDR + """
    g (float[2,3,4] x) => (float[2,3,4] y)
    { a = Transpose<perm=[2,0,1]>(x)
      b = Transpose<perm=[1,2,0]>(a)
      y = Relu(b) }
    """
    check_pipeline(text, "merge-transposes,remove-noops", Transpose=0, Relu=1)


def test_merge_transposes_default_perm():
    text = HDR + """
    g (float[2,3,4] x) => (float[3,4,2] y)
    { a = Transpose(x)
      b = Transpose<perm=[1,0,2]>(a)
      y = Relu(b) }
    """
    check_pipeline(text, "merge-transposes", Transpose=1)


def test_merge_transposes_shared_inner_is_kept():
    text = HDR + """
    g (float[2,3] x) => (float[2,3] y, float[3,2] z)
    { a = Transpose<perm=[1,0]>(x)
      b = Transpose<perm=[1,0]>(a)
      y = Relu(b)
      z = Neg(a) }
    """
    m = parse_model(text)
    assert "outside the match" in explain(MergeTransposePair(), m).reason
    check_pipeline(text, "merge-transposes", Transpose=2)


def test_merge_reshapes():
    text = HDR + """
    g (float[2,3,4] x) => (float[4,6] y)
    <int64[2] s1 = {6, 4}, int64[3] s2 = {4, 2, 3}, int64[2] s3 = {4, -1}>
    { a = Reshape(x, s1)
      b = Reshape(a, s2)
      c = Reshape(b, s3)
      y = Relu(c) }
    """
    m, _ = check_pipeline(text, "merge-reshapes,remove-unused", Reshape=1)
    assert set(m.graph.initializers) == {"s3"}


def test_merge_reshape_after_flatten_and_unsqueeze():
    text = HDR + """
    g (float[2,3,4] x) => (float[24] y)
    <int64[1] ax = {0}, int64[1] s = {-1}>
    { a = Unsqueeze(x, ax)
      b = Flatten<axis=2>(a)
      c = Reshape(b, s)
      y = Relu(c) }
    """
    check_pipeline(text, "merge-reshapes", Reshape=1, Unsqueeze=0, Flatten=0)


def test_merge_reshapes_refuses_copied_dims():
    text = HDR + """
    g (float[2,3,4] x) => (float[6,4] y)
    <int64[2] s1 = {6, 4}, int64[2] s2 = {0, 4}>
    { a = Reshape(x, s1)
      b = Reshape(a, s2)
      y = Relu(b) }
    """
    rule = MERGE_RESHAPES.rules[0]
    assert "copies dims (0)" in explain(rule, parse_model(text)).reason
    check_pipeline(text, "merge-reshapes", Reshape=2)
