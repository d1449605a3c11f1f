"""O1 on real exported transformers: outputs unchanged, fewer nodes, fast."""

import time

import numpy as np
import pytest

import graphopt
from graphopt.pattern.testing import run_ort
from graphopt.pm import NumericGuard, PassManager
from graphopt.testing.asserts import count_calls

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Graph compilers fuse operators so that fewer kernels touch memory.",
]


@pytest.mark.slow
def test_o1_minilm_keeps_outputs(minilm_spec, capsys):
    from graphopt.models import sample_feeds

    feeds = sample_feeds(minilm_spec, SENTENCES, seq=128)
    original = graphopt.load(minilm_spec.path)
    m = graphopt.load(minilm_spec.path)
    t0 = time.perf_counter()
    r = PassManager.from_text("O1")(m)
    dt = time.perf_counter() - t0
    want = run_ort(original, feeds)[0]
    got = run_ort(m, feeds)[0]
    err = float(np.abs(got - want).max())
    with capsys.disabled():
        print(f"\nMiniLM O1: nodes {r.nodes_before} -> {r.nodes_after} in {dt * 1e3:.0f} ms, max |diff| {err:.2e}")
        print(r.table())
    assert err <= 1e-5
    assert r.nodes_after < 0.6 * r.nodes_before
    ops = m.graph.op_counts()
    assert "Constant" not in ops and "Identity" not in ops
    assert ops["MatMul"] == 48 and ops["LayerNormalization"] == 13  # compute is untouched
    assert not PassManager.from_text("O1")(m).modified  # idempotent


@pytest.mark.slow
def test_o1_minilm_under_numeric_guard(minilm_spec):
    from graphopt.models import sample_feeds

    feeds = sample_feeds(minilm_spec, SENTENCES[:1], seq=32)
    m = graphopt.load(minilm_spec.path)
    guard = NumericGuard(feeds, rtol=0, atol=1e-6)
    PassManager.from_text("O1", instruments=[guard])(m)
    assert "fold-constants" in guard.checked


@pytest.mark.slow
def test_o1_distilbert_is_fast():
    import torch  # noqa: F401 - installed with the suite's extras
    from graphopt.models import distilbert_onnx, sample_feeds

    from graphopt.ir.clone import clone

    spec = distilbert_onnx()
    base = graphopt.load(spec.path)
    m = clone(base)
    r, calls = count_calls(PassManager.from_text("O1"), m)
    assert calls < 1_500_000, f"O1 on DistilBERT made {calls} function calls (0.40 M when written)"
    feeds = sample_feeds(spec, batch=1, seq=16)
    np.testing.assert_allclose(run_ort(m, feeds)[0], run_ort(base, feeds)[0], rtol=0, atol=1e-5)
    assert r.nodes_after < r.nodes_before

