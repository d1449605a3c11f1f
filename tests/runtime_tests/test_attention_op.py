"""graphopt::Attention on the native runtime: one fused ``Attention`` step (no fallback) for every
layout / grouped-KV / causal / mask combination, against the op's float64 numpy reference; bf16
products close; bit-identical at 1 and 2 threads."""

from __future__ import annotations

import numpy as np
import pytest

import graphopt
from graphopt.testing.attention import attention_case
from graphopt.ir import DType, Graph, Model, Node, TensorType
from graphopt.ops import reference

RNG = np.random.default_rng(0)



def _model(inputs: dict, attrs: dict, order: list) -> Model:
    g = Graph("g")
    vals = {k: g.add_input(k, TensorType(DType.from_numpy(a.dtype), tuple(a.shape))) for k, a in inputs.items()}
    node = g.append(Node("Attention", [None if k is None else vals[k] for k in order], attrs, domain="graphopt",
                         name="attn"))
    g.outputs = list(node.outputs)
    node.outputs[0].name = "y"
    m = Model(g, opset_imports={"": 17, "graphopt": 1})
    graphopt.infer_shapes(m)
    return m


@pytest.mark.parametrize("layout", ["bnsd", "bsh"])
@pytest.mark.parametrize("nkv", [4, 2, 1])
@pytest.mark.parametrize("causal", [0, 1])
@pytest.mark.parametrize("mask", ["none", "padding", "bias", "both"])
def test_native_attention_matches_reference(layout, nkv, causal, mask):
    inputs, attrs, order = attention_case(layout, nkv, causal, mask, d=16, rng=RNG)
    m = _model(inputs, attrs, order)
    s = graphopt.compile(m, precision="fp32", level="O0")
    assert not s.fallbacks
    want = reference("Attention", [None if k is None else inputs[k] for k in order], **attrs)[0]
    got = np.asarray(s.run(inputs)[0])
    np.testing.assert_allclose(got, want, atol=2e-6, rtol=1e-5)
    bf = np.asarray(graphopt.compile(m, precision="bf16", level="O0").run(inputs)[0])
    cos = float(bf.ravel().astype(np.float64) @ want.ravel() / (np.linalg.norm(bf) * np.linalg.norm(want)))
    assert cos > 0.999


def test_native_attention_bit_identical_across_threads():
    inputs, attrs, order = attention_case("bsh", 2, 1, "both", b=2, n=8, sq=70, sk=70, d=32, rng=RNG)
    m = _model(inputs, attrs, order)
    outs = [np.asarray(graphopt.compile(m, precision=p, level="O0", num_threads=t).run(inputs)[0])
            for p in ("fp32", "bf16") for t in (1, 2, 1)]
    assert all(np.array_equal(outs[0], o) for o in outs[1:3])
    assert all(np.array_equal(outs[3], o) for o in outs[4:])
