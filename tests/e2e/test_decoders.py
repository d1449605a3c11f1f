"""Tiny LLaMA-style decoders (transformers configs, random weights: 2 layers, hidden 64, 4 heads,
2 KV heads, intermediate 128) in each export form: O2 fuses every RMSNorm, gated MLP and rotary
embedding; the native runtime matches onnxruntime on the original file at fp32 / bf16 / int8;
the fused graph exported for onnxruntime matches too. Exports are cached in a temp folder
(graphopt.testing.decoders); the first run exports them (~20-30 s per dynamo export)."""

from __future__ import annotations

import collections

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
ort = pytest.importorskip("onnxruntime")

import graphopt  # noqa: E402
from graphopt.ops import lower_to_onnxruntime  # noqa: E402
from graphopt.pm import PassManager  # noqa: E402
from graphopt.testing.asserts import run_onnxruntime  # noqa: E402
from graphopt.testing.decoders import decoder_feeds, decoder_onnx  # noqa: E402

FORMS = [("llama", False, "sdpa"), ("llama", False, "eager"), ("llama", True, "sdpa"), ("llama", True, "eager"),
         ("mistral", False, "sdpa"), ("qwen2", False, "sdpa")]
IDS = [f"{f}-{'dynamo' if d else 'torchscript'}-{a}" for f, d, a in FORMS]
LAYERS = 2


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module", params=FORMS, ids=IDS)
def decoder(request, tmp_path_factory):
    family, dynamo, attn = request.param
    try:
        path = decoder_onnx(family, dynamo=dynamo, attn=attn)
    except Exception as e:  # an exporter that cannot export this form on this torch/transformers
        pytest.skip(f"export failed: {type(e).__name__}: {e}")
    feeds = decoder_feeds(batch=2, seq=16)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    want = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    model = graphopt.load(path)
    PassManager.from_text("O2")(model)
    return path, model, feeds, want


def test_o2_fuses_every_norm_mlp_and_rotary(decoder):
    _, model, _, _ = decoder
    fused = collections.Counter(n.op_type for n in model.graph if n.domain == "graphopt")
    assert fused["RMSNorm"] + fused["SkipRMSNorm"] == 2 * LAYERS + 1
    assert fused["SkipRMSNorm"] == 2 * LAYERS  # every norm after the first reads a residual Add
    assert fused["SiluMul"] == LAYERS
    assert fused["RotaryEmbedding"] == 2 * LAYERS  # Q and K of each layer, separately
    assert fused["Attention"] == LAYERS  # fuse-sdpa: causal (+ key padding), grouped KV heads
    for n in model.graph:
        if n.op == "graphopt::Attention":
            # causal + padding keeps the exported mask as the bias (fully padded queries spread over all keys)
            assert (int(n.attr("causal")) == 1 or n.inputs[4] is not None) and int(n.attr("kv_num_heads")) == 2
    ops = model.graph.op_counts()
    assert ops.get("Softmax", 0) == 0
    assert ops.get("Sigmoid", 0) == 0 and ops.get("Pow", 0) == 0 and ops.get("Neg", 0) == 0
    assert ops.get("Sqrt", 0) == 0 and ops.get("ReduceMean", 0) == 0


@pytest.mark.parametrize("precision,bound", [("fp32", None), ("bf16", 0.999), ("int8", 0.98)])
def test_native_matches_onnxruntime(decoder, precision, bound):
    _, model, feeds, want = decoder
    sess = graphopt.compile(model, precision=precision)
    fallbacks = [f for f in sess.summary().fallbacks if "graphopt" in f]
    assert not fallbacks, fallbacks
    got = sess.run(feeds)[0]
    assert got.shape == want.shape
    if bound is None:
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    else:
        assert _cos(got, want) >= bound


def test_padding_mask_and_thread_count(decoder):
    """Right padding in the attention mask; the same bits at 1 and 2 threads, run after run."""
    path, model, _, _ = decoder
    feeds = decoder_feeds(batch=2, seq=24, seed=3)
    feeds["attention_mask"][1, 17:] = 0
    want = run_onnxruntime(graphopt.load(path), feeds)[0]
    outs = [graphopt.compile(model, num_threads=t).run(feeds)[0] for t in (1, 2, 2)]
    np.testing.assert_allclose(outs[0], want, rtol=0, atol=1e-4)
    assert all(np.array_equal(outs[0], o) for o in outs[1:])


def test_onnxruntime_export_of_the_fused_graph(decoder):
    _, model, feeds, want = decoder
    m = graphopt.from_onnx(graphopt.to_onnx(model))
    lower_to_onnxruntime(m)
    ops = m.graph.op_counts()
    assert ops.get("SimplifiedLayerNormalization", 0) == 1
    assert ops.get("com.microsoft::SkipSimplifiedLayerNormalization", 0) == 2 * LAYERS
    got = run_onnxruntime(m, feeds)[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


def test_saved_o2_file_reads_back_its_norms(decoder, tmp_path):
    """graphopt.save writes RMSNorm / SkipRMSNorm as onnxruntime's (Skip)SimplifiedLayerNormalization;
    graphopt.load reads them back as the graphopt ops, and the file compiles to the same numbers."""
    _, model, feeds, want = decoder
    p = graphopt.save(model, tmp_path / "o2.onnx")
    back = graphopt.load(p)
    fused = collections.Counter(n.op_type for n in back.graph if n.domain == "graphopt")
    assert fused["RMSNorm"] == 1 and fused["SkipRMSNorm"] == 2 * LAYERS
    assert "SimplifiedLayerNormalization" not in back.graph.op_counts()
    got = graphopt.compile(back, precision="fp32").run(feeds)[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


def test_static_int8_after_o2():
    """QDQ quantization of the fused decoder: the packed gate|up MatMul quantizes like every linear,
    SmoothQuant folds into the RMSNorm gammas, and the native int8 plan stays close to fp32."""
    from graphopt.quant import quantize

    path = decoder_onnx("llama", dynamo=False, attn="sdpa")
    feeds = decoder_feeds(batch=2, seq=16)
    want = run_onnxruntime(graphopt.load(path), feeds)[0]
    model = graphopt.load(path)
    PassManager.from_text("O2")(model)
    packed = [n for n in model.graph if n.op_type == "MatMul" and any(
        c.op_type == "SiluMul" for c in n.outputs[0].consumers())]
    assert len(packed) == LAYERS
    q, report = quantize(model, data=[decoder_feeds(1, 16, seed=s) for s in range(1, 7)], progress=False)
    assert report.stats["smoothquant"]["folded_into_layernorm"] == 2 * LAYERS + 1
    for mm in packed:
        w = mm.inputs[1].producer()
        assert w is not None and w.op_type == "DequantizeLinear"  # the packed weight is int8
    got = graphopt.compile(q, precision="int8").run(feeds)[0]
    assert _cos(got, want) >= 0.98


def test_quantize_then_o2_packs_the_int8_gate_and_up():
    """The other order: QDQ first, then O2 packs the already-int8 gate/up weights (q, scales)."""
    from graphopt.quant import quantize

    path = decoder_onnx("llama", dynamo=False, attn="sdpa")
    feeds = decoder_feeds(batch=2, seq=16)
    want = run_onnxruntime(graphopt.load(path), feeds)[0]
    model = graphopt.load(path)
    PassManager.from_text("O1")(model)
    q, _ = quantize(model, data=[decoder_feeds(1, 16, seed=s) for s in range(1, 7)], progress=False)
    PassManager.from_text("O2")(q)
    fused = collections.Counter(n.op_type for n in q.graph if n.domain == "graphopt")
    assert fused["SiluMul"] == LAYERS and fused["SkipRMSNorm"] == 2 * LAYERS and fused["RotaryEmbedding"] == 2 * LAYERS
    got = graphopt.compile(q, precision="int8").run(feeds)[0]
    assert _cos(got, want) >= 0.98
