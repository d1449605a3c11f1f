"""PassManager, Fixpoint, textual pipelines, presets, instruments and error handling."""

import numpy as np
import pytest

from graphopt.errors import GraphoptError, PassError
from graphopt.ir import Node
from graphopt.ir.clone import clone
from graphopt.pattern.testing import parse_model, random_feeds
from graphopt.pm import (
    DumpIR,
    Fixpoint,
    Instrument,
    NumericGuard,
    NumericMismatch,
    Pass,
    PassContext,
    PassManager,
    PassResult,
    format_pipeline,
    parse_pipeline,
    preset_text,
)

HDR = '<ir_version: 8, opset_import: ["" : 17]>\n'
TEXT = HDR + """
g (float[2,3] x) => (float[2,3] y)
{ a = Identity(x)
  b = Relu(a)
  c = Identity(b)
  d = Relu(x)
  y = Add(c, d) }
"""


class BreakAddToSub(Pass):
    """Deliberately wrong: Add -> Sub."""

    name = "break-add"

    def run(self, model, ctx):
        changed = False
        for n in model.graph:
            if n.op_type == "Add":
                n.op_type = "Sub"
                changed = True
        return PassResult(changed)


class Boom(Pass):
    name = "boom"

    def run(self, model, ctx):
        for n in list(model.graph):
            n.set_inputs([])  # mutate first, then fail: the caller's model must not see it
        raise RuntimeError("kaboom")


class Dangle(Pass):
    """Leaves a dangling use: removes the producer of a used value."""

    name = "dangle"

    def run(self, model, ctx):
        relu = next(n for n in model.graph if n.op_type == "Relu")
        model.graph.remove(relu, safe=False)
        return PassResult(True)


class CountDown(Pass):
    """Modifies the model (adds an Identity chain link) a fixed number of times."""

    name = "count-down"

    def __init__(self, times=2):
        self.left = [times]

    def run(self, model, ctx):
        if self.left[0] == 0:
            return PassResult(False)
        self.left[0] -= 1
        g = model.graph
        y = g.outputs[0]
        n = g.append(Node("Identity", [y]))
        n.outputs[0].type = y.type
        y.replace_all_uses_with(n.outputs[0], outputs=True)
        n.set_input(0, y)
        return PassResult(True)


def test_parse_and_format_pipeline():
    ps = parse_pipeline("fold-constants, fixpoint(cse,remove-unused,max=3),remove-noops")
    assert [p.name for p in ps] == ["fold-constants", "fixpoint", "remove-noops"]
    assert isinstance(ps[1], Fixpoint) and ps[1].max_iters == 3
    assert [p.name for p in ps[1].passes] == ["cse", "remove-unused"]
    assert format_pipeline(ps) == "fold-constants,fixpoint(cse,remove-unused,max=3),remove-noops"
    (fc,) = parse_pipeline("fold-constants(max_elements=16)")
    assert fc.max_elements == 16


@pytest.mark.parametrize("text,msg", [
    ("fold-constants,no-such-pass", "unknown pass 'no-such-pass'; registered: .*remove-unused"),
    ("fixpoint(cse,bogus=1)", "fixpoint takes only max"),
    ("cse(", "expected a name"),
    ("cse)", "unexpected"),
    ("remove-unused(frobnicate=2)", "does not accept options"),
])
def test_bad_pipelines(text, msg):
    with pytest.raises(GraphoptError, match=msg):
        parse_pipeline(text)


def test_presets_expand():
    o1 = parse_pipeline("O1")
    assert "fold-constants" in [p.name for p in o1]
    assert preset_text("O2").startswith(preset_text("O1"))
    for unknown in ("O3", "O9"):  # no O3: precision is chosen by quantize/compile, not by a level
        with pytest.raises(GraphoptError, match="unknown preset"):
            preset_text(unknown)


def test_runs_passes_and_records_table():
    m = parse_model(TEXT)
    r = PassManager.from_text("remove-noops,cse,remove-unused")(m)
    assert [x.name for x in r.records] == ["remove-noops", "cse", "remove-unused"]
    assert r.nodes_before == 5 and r.nodes_after == 2
    assert r.records[0].stats == {"identity": 2}
    assert "remove-noops" in r.table() and "total" in r.table()
    assert m.graph.op_counts() == {"Relu": 1, "Add": 1}


def test_fixpoint_stops_when_nothing_changes():
    m = parse_model(TEXT)
    cd = CountDown(2)
    r = PassManager([Fixpoint([cd], max_iters=10)])(m)
    assert [x.iteration for x in r.records] == [1, 2, 3]
    assert [x.modified for x in r.records] == [True, True, False]
    cd2 = CountDown(5)
    r2 = PassManager([cd2], fixed_point=True, max_iters=3)(parse_model(TEXT))
    assert len(r2.records) == 3  # bounded


def test_failing_pass_names_pass_and_predecessor_and_leaves_input_unchanged():
    m = parse_model(TEXT)
    before = str(m)
    nodes = list(m.graph)
    with pytest.raises(PassError, match=r"pass 'boom' failed after 'remove-noops': RuntimeError: kaboom") as ei:
        PassManager([parse_pipeline("remove-noops")[0], Boom()])(m)
    assert isinstance(ei.value.__cause__, RuntimeError)
    assert str(m) == before
    assert list(m.graph) == nodes  # same node objects, untouched
    m.verify()


def test_verify_failure_names_pass_and_node():
    m = parse_model(TEXT)
    before = str(m)
    with pytest.raises(PassError, match=r"pass 'dangle'.*invalid.*Add|pass 'dangle'.*invalid.*Identity"):
        PassManager([Dangle()])(m)
    assert str(m) == before


def test_verify_each_can_be_disabled():
    m = parse_model(TEXT)
    PassManager([Dangle()], verify_each=False, atomic=False)(m)
    with pytest.raises(GraphoptError):
        m.verify()


def test_numeric_guard_names_first_bad_pass():
    m = parse_model(TEXT)
    feeds = random_feeds(m)
    guard = NumericGuard(feeds, rtol=1e-6, atol=1e-6)
    with pytest.raises(NumericMismatch, match=r"pass 'break-add' is the first that changed the outputs"):
        PassManager([*parse_pipeline("remove-noops,cse"), BreakAddToSub(), *parse_pipeline("remove-unused")],
                     instruments=[guard])(m)
    assert guard.checked == ["remove-noops", "cse", "break-add"]  # the first divergence is named
    assert m.graph.op_counts()["Add"] == 1


def test_numeric_guard_passes_on_correct_pipeline():
    m = parse_model(TEXT)
    guard = NumericGuard(random_feeds(m), rtol=0, atol=0)
    PassManager.from_text("O1", instruments=[guard])(m)
    assert "remove-noops" in guard.checked


def test_dump_ir(tmp_path):
    m = parse_model(TEXT)
    PassManager.from_text("remove-noops,cse", instruments=[DumpIR(tmp_path, before=True)])(m)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["000-input.txt", "001-remove-noops.before.txt", "001-remove-noops.txt",
                     "002-cse.before.txt", "002-cse.txt"]
    assert "Identity" in (tmp_path / "000-input.txt").read_text()
    assert "Identity" not in (tmp_path / "001-remove-noops.txt").read_text()


def test_instrument_hooks_and_disabled_passes():
    calls = []

    class Rec(Instrument):
        def enter(self, ctx):
            calls.append("enter")

        def exit(self, ctx):
            calls.append("exit")

        def should_run(self, model, info):
            return info.name != "cse"

        def before(self, model, info):
            calls.append(f"before:{info.name}")

        def after(self, model, info, result):
            calls.append(f"after:{info.name}")

    m = parse_model(TEXT)
    with PassContext(disabled={"remove-unused"}, instruments=[Rec()]):
        PassManager.from_text("remove-noops,cse,remove-unused")(m)
    assert calls == ["enter", "before:remove-noops", "after:remove-noops", "exit"]


def test_on_error_hook_sees_the_exception():
    seen = []

    class OnErr(Instrument):
        def on_error(self, model, info, exc):
            seen.append((info.name, type(exc).__name__))

    with pytest.raises(PassError):
        PassManager([Boom()], instruments=[OnErr()])(parse_model(TEXT))
    assert seen == [("boom", "RuntimeError")]


def test_clone_is_deep_and_constants_are_read_only():
    m = parse_model(HDR + """
    g (float[2] x) => (float[2] y) <float[2] w = {1, 2}>
    { y = Add(x, w) }""")
    c = clone(m)
    assert str(c) == str(m)
    assert list(c.graph)[0] is not list(m.graph)[0]
    w = c.graph.initializers["w"]
    with pytest.raises(ValueError):
        w.const[0] = 5
    c.graph.initializers["w"].const = np.array([7, 7], np.float32)
    assert m.graph.initializers["w"].const.tolist() == [1, 2]
    c.verify()


def test_clone_subgraphs():
    m = parse_model(HDR + """
    g (bool c, float[2] x) => (float[2] y)
    { y = If(c) <then_branch = t () => (float[2] a) { a = Relu(x) },
                 else_branch = e () => (float[2] b) { b = Neg(x) }> }""")
    c = clone(m)
    c.verify()
    assert str(c) == str(m)
    sub = c.graph.nodes[0].attrs["then_branch"].value
    assert sub.parent is c.graph.nodes[0]
    assert sub.nodes[0].inputs[0] is c.graph.inputs[1]


def test_reproducer_writes_input_and_pipeline(tmp_path):
    from graphopt.pm import Reproducer

    m = parse_model(TEXT)
    with pytest.raises(PassError):
        PassManager([*parse_pipeline("remove-noops,cse"), Boom()], instruments=[Reproducer(tmp_path)])(m)
    assert (tmp_path / "pipeline.txt").read_text().strip() == "remove-noops,cse,boom"
    assert "kaboom" in (tmp_path / "error.txt").read_text()
    import graphopt

    again = graphopt.load(tmp_path / "input.onnx")
    assert again.graph.op_counts() == m.graph.op_counts()  # the pipeline's input, not a half-done model


def test_functional_leaves_input_alone():
    from graphopt.pm import functional

    m = parse_model(TEXT)
    before = str(m)
    out = functional(parse_pipeline("remove-noops")[0])(m)
    assert str(m) == before
    assert "Identity" not in out.graph.op_counts()


def test_analysis_passes_are_really_unchanged():
    from graphopt.pattern.testing import assert_unchanged

    m = parse_model(HDR + "g (float[2] x) => (float[2] y) { y = Relu(x) }")
    for name in ("remove-noops", "cse", "remove-unused", "fold-constants", "fold-shape-chains", "merge-reshapes",
                 "merge-transposes", "infer-shapes"):
        assert_unchanged(parse_pipeline(name)[0], m)


class NudgeAdd(Pass):
    """Adds a small constant to the output each time it runs (a drifting pass)."""

    name = "nudge"

    def run(self, model, ctx):
        g = model.graph
        y = g.outputs[0]
        c = g.add_initializer(g.unique_name("eps"), np.array(0.004, np.float32))
        n = g.append(Node("Add", [y, c]))
        n.outputs[0].type = y.type
        y.replace_all_uses_with(n.outputs[0], outputs=True)
        n.set_input(0, y)
        return PassResult(True)


def test_numeric_guard_original_vs_previous():
    m = parse_model(TEXT)
    feeds = random_feeds(m)
    # Each nudge alone is within 5e-3, three in a row are not.
    PassManager([NudgeAdd()], instruments=[NumericGuard(feeds, rtol=0, atol=5e-3, compare="previous")])(
        parse_model(TEXT))
    passes = [NudgeAdd(), NudgeAdd(), NudgeAdd()]
    guard = NumericGuard(feeds, rtol=0, atol=5e-3, compare="previous")
    PassManager(passes, instruments=[guard])(m)
    assert len(guard.checked) == 3
    with pytest.raises(NumericMismatch, match="compared with the original"):
        PassManager([NudgeAdd(), NudgeAdd()], instruments=[NumericGuard(feeds, rtol=0, atol=5e-3)])(
            parse_model(TEXT))


def test_o2_includes_passes_tagged_with_preset():
    from graphopt.pm import register_pass
    from graphopt.pm.registry import _REGISTRY

    @register_pass
    class TaggedForO2(Pass):
        name = "test-tagged-o2"
        description = "test only"
        preset = "O2"

        def run(self, model, ctx):
            return PassResult(False)

    try:
        o2 = preset_text("O2")
        assert "test-tagged-o2" in o2
        assert "test-tagged-o2" not in preset_text("O1")
        names = [p.name for p in parse_pipeline("O2")]
        assert "test-tagged-o2" in names
    finally:
        _REGISTRY.pop("test-tagged-o2", None)


class Liar(Pass):
    name = "liar"

    def run(self, model, ctx):
        next(iter(model.graph)).op_type = "Neg"
        return PassResult(False)


def test_check_unmodified_catches_a_lying_pass():
    from graphopt.pm import CheckUnmodified

    with pytest.raises(PassError, match="pass 'liar' reported no change but modified"):
        PassManager([Liar()], instruments=[CheckUnmodified()])(parse_model(TEXT))
    PassManager.from_text("O1", instruments=[CheckUnmodified()])(parse_model(TEXT))


def test_invalid_input_is_blamed_on_the_input():
    from graphopt.errors import VerificationError

    m = parse_model(TEXT)
    relu = next(n for n in m.graph if n.op_type == "Relu")
    m.graph.remove(relu, safe=False)
    with pytest.raises(VerificationError, match="input model is invalid"):
        PassManager.from_text("cse")(m)


def test_stats_instrument_sums_counters():
    from graphopt.pm import Stats

    st = Stats()
    r = PassManager.from_text("remove-noops,cse", instruments=[st])(parse_model(TEXT))
    assert st.totals == {"remove-noops.identity": 2, "cse.nodes": 1}
    assert r.stats() == st.totals


def test_numeric_guard_default_exporter_lowers_fused_ops():
    """O2 creates graphopt-domain ops (here a fused GELU); the guard still runs them in onnxruntime."""
    text = HDR + """
    g (float[2,8] x) => (float[2,8] y)
    <float r2 = {1.4142135}, float one = {1.0}, float half = {0.5}>
    { d = Div(x, r2)
      e = Erf(d)
      p = Add(e, one)
      m = Mul(x, p)
      y = Mul(m, half) }
    """
    m = parse_model(text)
    guard = NumericGuard(random_feeds(m), rtol=1e-5, atol=1e-5)
    PassManager.from_text("O2", instruments=[guard])(m)
    assert any(n.domain == "graphopt" for n in m.graph), "the GELU fusion must fire on this graph"
    assert guard.checked
