"""remove-noops: one positive case per rule, and a negative case per check reason."""

import numpy as np
import pytest

from graphopt.pattern import explain
from graphopt.pattern.testing import check_pipeline, parse_model
from graphopt.passes.cleanup.remove_noops import NOOP_RULES

HDR = '<ir_version: 8, opset_import: ["" : 17]>\n'


def _rule(name):
    return next(r for r in NOOP_RULES if r.rule_name == name)


@pytest.mark.parametrize("body,op", [
    ("a = Identity(x)", "Identity"),
    ("a = Dropout(x)", "Dropout"),
    ("a, mask = Dropout(x)", "Dropout"),
    ("a = Cast<to=1>(x)", "Cast"),
    ("a = Reshape(x, s) ", "Reshape"),
    ("a = Transpose<perm=[0,1,2]>(x)", "Transpose"),
    ("a = Squeeze(x)", "Squeeze"),
    ("a = Pad(x, zp)", "Pad"),
    ("a = Expand(x, es)", "Expand"),
    ("a = Concat<axis=0>(x)", "Concat"),
])
def test_noop_removed(body, op):
    text = HDR + f"""
    g (float[2,3,4] x) => (float[2,3,4] y)
    <int64[3] s = {{0, 3, -1}}, int64[6] zp = {{0,0,0,0,0,0}}, int64[2] es = {{1, 4}}>
    {{ {body}
      y = Relu(a) }}
    """
    m, r = check_pipeline(text, "remove-noops", **{op: 0, "Relu": 1})
    assert sum(r.records[0].stats.values()) == 1


@pytest.mark.parametrize("body,rule,reason", [
    ("a = Cast<to=10>(x)", "cast-same-type", "casts f32 to another type"),
    ("a = Reshape(x, s2)", "reshape-same-shape", "differs from input shape"),
    ("a = Reshape(x, s1)", "reshape-same-shape", "reshapes rank 3 to rank 2"),
    ("a = Transpose<perm=[1,0,2]>(x)", "transpose-identity", "is not the identity"),
    ("a = Transpose(x)", "transpose-identity", "default perm reverses"),
    ("a = Pad(x, nzp)", "pad-zero", "are not all zero"),
    ("a = Expand(x, bigs)", "expand-same-shape", "expand adds dims"),
    ("a = Squeeze(x, ax)", "squeeze-nothing", "explicit axes"),
])
def test_noop_kept_with_reason(body, rule, reason):
    text = HDR + f"""
    g (float[2,3,4] x) => (float[2,3,4] y)
    <int64[3] s2 = {{3, 2, 4}}, int64[2] s1 = {{6, 4}}, int64[6] nzp = {{0,0,1,0,0,0}},
     int64[4] bigs = {{2, 2, 3, 4}}, int64[1] ax = {{0}}>
    {{ {body}
      y = Relu(a) }}
    """
    m = parse_model(text)
    ex = explain(_rule(rule), m)
    assert ex.matches == 0
    assert reason in ex.reason, str(ex)


def test_training_dropout_and_used_mask_are_kept():
    text = HDR + """
    g (float[2,3] x, bool t) => (float[2,3] y, bool[2,3] mk)
    <float r = {0.5}, bool f = {0}>
    { a, mk = Dropout(x, r, f)
      y = Relu(a) }
    """
    ex = explain(_rule("dropout-inference"), parse_model(text))
    assert "mask output is used" in ex.reason
    text2 = HDR + """
    g (float[2,3] x) => (float[2,3] y)
    <float r = {0.5}, bool tr = {1}>
    { a = Dropout(x, r, tr)
      y = Relu(a) }
    """
    ex = explain(_rule("dropout-inference"), parse_model(text2))
    assert "training_mode is true" in ex.reason


def test_noop_chain_and_graph_output_name():
    text = HDR + """
    g (float[2,3] x) => (float[2,3] y)
    { r = Relu(x)
      a = Identity(r)
      b = Cast<to=1>(a)
      y = Transpose<perm=[0,1]>(b) }
    """
    m, _ = check_pipeline(text, "remove-noops", Identity=0, Cast=0, Transpose=0, Relu=1)
    assert m.graph.outputs[0].name == "y"
    assert m.graph.outputs[0].producer().op_type == "Relu"


def test_identity_from_input_to_output_stays():
    text = HDR + "g (float[2] x) => (float[2] y) { y = Identity(x) }"
    check_pipeline(text, "remove-noops", Identity=1)


def test_expand_that_broadcasts_is_kept():
    text = HDR + """
    g (float[2,1,4] x) => (float[2,3,4] y)
    <int64[3] s = {2, 3, 4}>
    { a = Expand(x, s)
      y = Relu(a) }
    """
    ex = explain(_rule("expand-same-shape"), parse_model(text))
    assert "changes input shape" in ex.reason
    check_pipeline(text, "remove-noops", Expand=1)


def test_reshape_and_expand_to_own_shape():
    text = HDR + """
    g (float[N,3] x) => (float[N,3] y, int64[2] s)
    { s = Shape(x)
      a = Reshape(x, s)
      b = Expand(a, s)
      y = Relu(b) }
    """
    feeds = {"x": np.ones((5, 3), np.float32)}
    check_pipeline(text, "remove-noops", feeds=feeds, Reshape=0, Expand=0, Shape=1)


def test_squeeze_of_unsqueeze():
    text = HDR + """
    g (float[2,3] x) => (float[2,3] y, float[2,3] z)
    <int64[2] a = {0, 3}, int64[2] a2 = {-4, 3}, int64[1] other = {0}>
    { u = Unsqueeze(x, a)
      s = Squeeze(u, a2)
      y = Relu(s)
      u2 = Unsqueeze(x, other)
      q = Squeeze(u2)
      z = Neg(q) }
    """
    check_pipeline(text, "remove-noops", Unsqueeze=0, Squeeze=0, Relu=1, Neg=1)
    text2 = HDR + """
    g (float[2,1] x) => (float[2] y)
    <int64[1] a = {0}, int64[1] b = {2}>
    { u = Unsqueeze(x, a)
      y = Squeeze(u, b) }
    """
    rule = next(r for r in NOOP_RULES if r.rule_name == "squeeze-of-unsqueeze")
    assert "not the unsqueezed" in explain(rule, parse_model(text2)).reason
