"""graphopt.compile's per-node precision (what a tuned mixed model runs with)."""

from __future__ import annotations

import json

import numpy as np

import graphopt
from graphopt.quant.testing import mlp_model, random_batches
from graphopt.tune import Recipe, build, find_groups


def _details(sess):
    return {st.name: st.detail for st in sess._steps if st.kind == "Linear"}  # what each GEMM step was lowered to


def test_node_precision_overrides_the_global_precision():
    m = mlp_model()
    d = _details(graphopt.compile(m, "fp32", node_precision={"weight:w1": "bf16", "side": "int8"}))
    assert sorted(d.values()) == ["bf16", "fp32",
                                  "int8 dynamic per-row act, per-channel s8 weights (rows quantized by the LayerNorm)"]
    assert d["side"].startswith("int8")  # not fused: keeps its name


def test_tuned_metadata_is_applied_and_outputs_stay_close():
    m = mlp_model()
    groups = find_groups(m)
    assert [g.name for g in groups] == ["fc1", "fc2", "side"]
    batches = random_batches(4)
    q = build(m, Recipe.make({"fc1": "bf16", "fc2": "fp32"}, smoothquant=None), groups, batches)
    meta = json.loads(q.metadata_props["graphopt.node_precision"])
    assert {k: meta[k] for k in ("fc1", "fc2", "side", "weight:w1")} == \
        {"fc1": "bf16", "fc2": "fp32", "side": "int8", "weight:w1": "bf16"}
    sess = graphopt.compile(q, "int8")  # the metadata names the non-int8 nodes
    assert sorted(_details(sess).values()) == ["bf16", "fp32", "int8 static (QDQ)"]
    ref = graphopt.compile(m, "fp32").run(batches[0])[0]
    got = sess.run(batches[0])[0]
    assert np.abs(got - ref).max() / np.abs(ref).max() < 0.05
