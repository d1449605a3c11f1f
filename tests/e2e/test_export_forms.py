"""all-MiniLM-L6-v2 in each export form users produce (transformers eager or sdpa attention x
TorchScript or dynamo exporter): O2 fuses every attention block, nothing runs as a Python
fallback, and the native fp32 result equals onnxruntime's on the original graph."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

import graphopt
from graphopt.pm import PassManager

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SENTENCES = ["The train to Edinburgh leaves from platform four at half past nine.",
             "Could you tell me where the nearest pharmacy is?"]
FORMS = [("sdpa", "torchscript"), ("sdpa", "dynamo"), ("eager", "dynamo")]


@pytest.fixture(scope="module", params=FORMS, ids=lambda f: "+".join(f))
def form(request):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from graphopt.models import minilm_onnx, sample_feeds

    spec = minilm_onnx(attn=request.param[0], exporter=request.param[1])
    feeds = sample_feeds(spec, SENTENCES, seq=48)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    ref = ort.InferenceSession(str(spec.path), so, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    m = graphopt.load(spec.path)
    PassManager.from_text("O2")(m)
    return m, feeds, ref


def test_every_attention_block_fused(form):
    m, _, _ = form
    ops = m.graph.op_counts()
    assert ops.get("graphopt::MultiHeadAttention") == 6, ops
    for gone in ("IsNaN", "Softmax", "Where", "Transpose"):
        assert gone not in ops, (gone, ops)
    mha = [n for n in m.graph if n.op_type == "MultiHeadAttention"]
    mask = next(v for v in m.graph.inputs if v.name == "attention_mask")
    assert all(n.inputs[3] is mask for n in mha), "the 2-D attention_mask feeds the attention kernels"


def test_native_fp32_matches_onnxruntime_without_fallbacks(form):
    m, feeds, ref = form
    sess = graphopt.compile(m, precision="fp32", level="O0")
    assert sess.fallbacks == []
    y = sess.run(feeds)
    y = y[0] if isinstance(y, (list, tuple)) else (next(iter(y.values())) if isinstance(y, dict) else y)
    np.testing.assert_allclose(np.asarray(y), ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("lowering", ["onnxruntime", "standard-onnx"])
def test_exported_onnx_matches_original(form, lowering):
    from graphopt.ir.clone import clone
    from graphopt.ops import decompose_all, lower_to_onnxruntime

    m, feeds, ref = form
    target = clone(m)
    (lower_to_onnxruntime if lowering == "onnxruntime" else decompose_all)(target)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    got = ort.InferenceSession(graphopt.to_onnx(target).SerializeToString(), so,
                               providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
