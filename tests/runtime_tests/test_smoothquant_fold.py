"""SmoothQuant's 1/s Muls cost no step: they fold into the static int8 GEMMs (``fold_channel_mul``).

all-MiniLM-L6-v2 in the default export form (sdpa + dynamo), quantized with ``quantize``'s default
preset (SmoothQuant 0.8, which leaves 18 Muls: after each attention, each first FFN LayerNorm that
also feeds the residual, and each GELU): the plan has the steps of the preset without SmoothQuant,
the same bits as the unfolded plan (each Mul's products computed in the GEMM instead), the same
bits run to run at 1 and 2 threads, and it matches onnxruntime on the QDQ graph.
"""

from __future__ import annotations

import collections

import numpy as np
import pytest

import graphopt

pytest.importorskip("onnxruntime")
pytest.importorskip("transformers")


def _smoothed(o2_first: bool):
    from graphopt.data import sentences
    from graphopt.models import minilm_onnx, sample_feeds
    from graphopt.quant import QuantConfig, quantize

    spec = minilm_onnx(attn="sdpa", exporter="dynamo")
    calib = [sample_feeds(spec, sentences("calib")[i:i + 4], seq=64) for i in range(0, 8, 4)]
    m = graphopt.load(spec.path)
    if o2_first:
        m = graphopt.optimize(m, level="O2")
    _, report = quantize(m, QuantConfig.transformer(quantize_act_matmul=False, embeddings=False), calib,
                         progress=False)
    assert report.stats["smoothquant"]["muls"] == (18 if o2_first else 24)  # + the unfused Q/K/V input
    return m, sample_feeds(spec, sentences("calib")[40:42], seq=64)


@pytest.fixture(scope="module")
def smoothed():
    """O2, then quantize (as ``graphopt bench`` does): compiled at O0."""
    return _smoothed(True)


def test_muls_fold_bit_identically(smoothed, monkeypatch):
    import graphopt.runtime.lower as lower

    m, feeds = smoothed
    sess = graphopt.compile(m, precision="int8", num_threads=1, level="O0")
    kinds = collections.Counter(st.kind for st in sess._steps)
    assert kinds["Mul"] == 0 and kinds["Linear"] == 24 and kinds["Attention"] == 6, kinds
    details = [st.detail for st in sess._steps if st.kind == "Linear"]
    # a_mul: the output projection (after attention) and FFN-in (after the LayerNorm); out_mul: FFN-in
    # requantizes its GELU output for FFN-out already times 1/s
    assert sum("(folded Mul)" in d for d in details) == 12, details
    assert sum("u8 out (requantized for the next GEMM) x per-channel constant" in d for d in details) == 6, details
    got = sess.run(feeds)[0]
    monkeypatch.setattr(lower, "fold_channel_mul", lambda *a: 0)
    plain = graphopt.compile(m, precision="int8", num_threads=1, level="O0")
    assert collections.Counter(st.kind for st in plain._steps)["Mul"] == 18
    np.testing.assert_array_equal(got, plain.run(feeds)[0])
    monkeypatch.undo()
    np.testing.assert_array_equal(got, sess.run(feeds)[0])
    two = graphopt.compile(m, precision="int8", num_threads=2, level="O0")
    np.testing.assert_array_equal(got, two.run(feeds)[0])


def test_folded_plan_matches_onnxruntime():
    """Quantize, then compile (absorb-qdq + O2): the same fold; the attention products stay fp32 as
    the QDQ graph leaves them, so the plan computes what onnxruntime runs on that graph."""
    from graphopt._ort import run_ort

    m, feeds = _smoothed(False)
    sess = graphopt.compile(m, precision="int8", num_threads=1)
    assert collections.Counter(st.kind for st in sess._steps)["Mul"] == 0
    got = sess.run(feeds)[0]
    ref = run_ort(m, feeds)[0]
    cos = float(np.dot(got.ravel(), ref.ravel()) / (np.linalg.norm(got) * np.linalg.norm(ref)))
    assert cos >= 0.999, cos
