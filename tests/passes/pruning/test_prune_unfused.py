"""Structured pruning on unfused graphs: attention heads (grouped KV heads as whole KV groups)
and FFN neurons (GELU written out, SiLU-gated MLP) of the zoo's models in several export forms.
The pruned model equals the masked original (the removed heads' / neurons' output rows zeroed)
on onnxruntime, and the native runtime agrees."""

from __future__ import annotations

import numpy as np
import pytest

import graphopt
from graphopt.passes.pruning.blocks import linear_weight, neuron_groups
from graphopt.passes.pruning.unfused_heads import unfused_head_groups
from graphopt.pm import PassManager
from graphopt.testing import zoo

CASES = [("bert", "eager", "torchscript", "O0"), ("bert", "sdpa", "dynamo", "O0"),
         ("distilbert", "sdpa", "torchscript", "O0"), ("vit", "eager", "torchscript", "O0"),
         ("llama", "sdpa", "dynamo", "O0"), ("llama", "eager", "dynamo", "O0"),
         ("llama", "sdpa", "dynamo", "O2")]


def _export(name, attn, exporter):
    e = zoo.export(name, attn, exporter)
    if e.path is None:
        pytest.skip(f"{name} does not export as {attn}+{exporter} here: {e.error}")
    return e


def _masked(path, unit=0):
    """The model with attention unit ``unit`` (a head, or a KV group with its query heads) of every
    block and every other FFN neuron silenced by zero output-projection rows."""
    m = graphopt.load(path)
    PassManager.from_text("infer-shapes")(m)
    g = m.graph
    blocks = unfused_head_groups(g)
    for grp in blocks:
        w = linear_weight(grp.out_proj).copy()
        w[grp.index_sets(np.array([unit]))["Cq"]] = 0
        grp.out_proj.set_input(1, g.add_initializer(g.unique_name("masked_wo"), w))
    groups = neuron_groups(g)
    for grp in groups:
        w2 = linear_weight(grp.down).copy()
        w2[::2] = 0
        grp.down.set_input(1, g.add_initializer(g.unique_name("masked_w2"), w2))
    PassManager.from_text("remove-unused")(m)
    return m, blocks, groups


def _ort(model, feeds, path):
    import onnxruntime as ort

    p = graphopt.save(model, path)
    return ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


@pytest.mark.parametrize("name,attn,exporter,level", CASES)
def test_unfused_pruning_equals_the_masked_model(name, attn, exporter, level, tmp_path):
    e = _export(name, attn, exporter)
    feeds = e.feeds(batch=2, seed=9)
    calib = [e.feeds(batch=4, seed=s) for s in range(2)]
    masked, blocks, groups = _masked(e.path)
    assert len(blocks) == 2 and len(groups) == 2
    kv_groups = blocks[0].units
    ref = _ort(masked, feeds, tmp_path / "masked.onnx")
    pruned, rep = graphopt.prune(masked, calib, heads=1 / kv_groups, ffn=0.5, reconstruct=False, level=level,
                                 progress=False)
    pruned.verify()
    heads = blocks[0].num_heads
    assert sorted(set(rep.heads.values())) == [(heads, heads - heads // kv_groups)]
    assert sorted(set(rep.neurons.values())) == [(128, 64)]
    np.testing.assert_allclose(_ort(pruned, feeds, tmp_path / "pruned.onnx"), ref, rtol=1e-5, atol=2e-6)
    native = graphopt.compile(pruned, precision="fp32", level="O0").run(feeds)[0]
    np.testing.assert_allclose(native, ref, rtol=1e-4, atol=1e-4)


def test_grouped_kv_heads_go_by_whole_groups(tmp_path):
    e = _export("llama", "sdpa", "dynamo")
    m = graphopt.load(e.path)
    PassManager.from_text("infer-shapes")(m)
    (b0, _) = unfused_head_groups(m.graph)
    assert (b0.num_heads, b0.num_kv_heads, b0.rep, b0.head_dim) == (4, 2, 2, 16)
    calib = [e.feeds(batch=4, seed=s) for s in range(2)]
    pruned, rep = graphopt.prune(m, calib, heads=0.5, level="O0", progress=False)
    shapes = {n.name: linear_weight(n).shape for n in pruned.graph if linear_weight(n) is not None}
    assert sorted(set(rep.heads.values())) == [(4, 2)]
    assert sorted(shapes.values()).count((64, 16)) == 4  # K and V of both layers: one KV group of 16
    assert sorted(shapes.values()).count((64, 32)) == 2  # Q: the two query heads of that group
    feeds = e.feeds(batch=2, seed=3)
    np.testing.assert_allclose(graphopt.compile(pruned, precision="fp32", level="O0").run(feeds)[0],
                               _ort(pruned, feeds, tmp_path / "p.onnx"), rtol=1e-4, atol=1e-4)


def test_per_head_position_bias_leaves_heads_alone(tmp_path):
    """T5 adds a per-head relative position bias to the scores: its heads are not pruned (the
    FFN still is), and the result still runs correctly."""
    e = _export("t5-encoder", "eager", "torchscript")
    calib = [e.feeds(batch=4, seed=s) for s in range(2)]
    m, rep = graphopt.prune(graphopt.load(e.path), calib, heads=0.5, ffn=0.5, level="O0", progress=False)
    assert not rep.heads
    assert rep.neurons and all(b > a for b, a in rep.neurons.values())
    feeds = e.feeds(batch=2, seed=4)
    np.testing.assert_allclose(graphopt.compile(m, precision="fp32", level="O0").run(feeds)[0],
                               _ort(m, feeds, tmp_path / "t5.onnx"), rtol=1e-4, atol=1e-4)


def test_cli_prune_level_o0_keeps_the_graph_unfused(tmp_path):
    from graphopt.cli import main

    e = _export("bert", "sdpa", "dynamo")
    folder = tmp_path / "calib"
    folder.mkdir()
    for s in range(2):
        np.savez(folder / f"b{s}.npz", **e.feeds(batch=4, seed=s))
    out = tmp_path / "pruned.onnx"
    assert main(["prune", str(e.path), "--heads", "0.5", "--ffn", "0.25", "--calib", str(folder), "--level", "O0",
                 "-o", str(out), "--no-progress", "-q"]) == 0
    back = graphopt.load(out)
    assert not any(n.domain == "graphopt" for n in back.graph)  # as imported: no fused ops
    PassManager.from_text("infer-shapes")(back)
    assert [linear_weight(grp.out_proj).shape[0] for grp in unfused_head_groups(back.graph)] == [32, 32]
