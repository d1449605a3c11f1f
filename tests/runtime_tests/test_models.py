"""Native runtime vs onnxruntime on real transformer and CNN graphs."""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import graphopt


def _ort(path_or_proto, feeds):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    src = path_or_proto.SerializeToString() if isinstance(path_or_proto, onnx.ModelProto) else str(path_or_proto)
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"]).run(None, feeds)


def _rel(got, want):
    return float(np.abs(got - want).max() / np.abs(want).max())


def _pooled(h, mask):
    m = mask[..., None].astype(np.float32)
    return (h * m).sum(1) / m.sum(1)


def _cos(a, b):
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


@pytest.fixture(scope="module")
def minilm(minilm_spec):
    from graphopt.data import sentences
    from graphopt.models import sample_feeds

    sents = sentences("eval")[:16]
    feeds = sample_feeds(minilm_spec, sents, batch=len(sents), seq=128)
    feeds = {k: v for k, v in feeds.items() if k in minilm_spec.input_names}
    return minilm_spec, feeds, _ort(minilm_spec.path, feeds)[0]


@pytest.mark.parametrize("optimize", ["O2", "O0"])
def test_minilm_fp32_matches_onnxruntime(minilm, optimize):
    spec, feeds, want = minilm
    sess = graphopt.compile(spec, precision="fp32", level=optimize)
    got = sess.run(feeds)[0]
    assert got.shape == want.shape
    assert _rel(got, want) <= 1e-4
    assert sess.fallbacks == []
    kinds = sess.summary().kernel_counts
    if optimize == "O2":
        assert kinds.get("Attention") == 6 and "MatMul" not in kinds and "Softmax" not in kinds
    else:  # fusion is the passes' job: O0 lowers node for node (each GEMM still a packed Linear)
        assert "Attention" not in kinds and kinds.get("Softmax") == 6 and kinds.get("Linear") == 36, kinds


def test_minilm_bf16_and_int8_bounds(minilm):
    spec, feeds, want = minilm
    ref = _pooled(want, feeds["attention_mask"])
    bf16 = graphopt.compile(spec, precision="bf16").run(feeds)[0]
    assert _cos(_pooled(bf16, feeds["attention_mask"]), ref).min() >= 0.999
    assert _rel(bf16, want) <= 5e-2
    int8 = graphopt.compile(spec, precision="int8").run(feeds)[0]
    cos = _cos(_pooled(int8, feeds["attention_mask"]), ref)
    assert cos.mean() >= 0.99, cos


def test_minilm_other_shapes_same_session(minilm):
    spec, feeds, _ = minilm
    sess = graphopt.compile(spec)
    for b, s in [(1, 128), (3, 17)]:
        f = {k: np.ascontiguousarray(v[:b, :s]) for k, v in feeds.items()}
        np.testing.assert_allclose(sess.run(f)[0], _ort(spec.path, f)[0], rtol=1e-4, atol=1e-4)
    assert len(sess.summary().peak_by_signature) == 2


@pytest.mark.slow
def test_distilbert_two_layers_fp32():
    import transformers  # noqa: F401 - installed with the suite's extras
    from graphopt.models import distilbert_onnx, sample_feeds

    spec = distilbert_onnx(n_layers=2)
    feeds = {k: v for k, v in sample_feeds(spec, None, batch=2, seq=64).items() if k in spec.input_names}
    feeds["attention_mask"][1, 40:] = 0
    want = _ort(spec.path, feeds)[0]
    for opt in ("O2", "O0"):
        sess = graphopt.compile(spec, level=opt)
        assert _rel(sess.run(feeds)[0], want) <= 1e-4
        assert sess.fallbacks == []


def _light_resnet():
    path = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light", "light_resnet50.onnx")
    if not os.path.exists(path):
        pytest.skip("onnx light_resnet50 model not shipped with this onnx")
    return onnx.load(path)


@pytest.mark.slow
def test_light_resnet50_native():
    mp = _light_resnet()
    x = (np.arange(3 * 224 * 224).reshape(1, 3, 224, 224) / (3 * 224 * 224)).astype(np.float32)
    name = mp.graph.input[0].name
    sess = graphopt.compile(mp, level="O0")
    assert _rel(sess.run({name: x})[0], _ort(mp, {name: x})[0]) <= 1e-4
    assert sess.fallbacks == []


@pytest.mark.slow
def test_resnet50_random_weights_fp32():
    import torch  # noqa: F401 - installed with the suite's extras
    from graphopt.models.resnet import resnet50_onnx

    spec = resnet50_onnx()
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    sess = graphopt.compile(spec)
    assert _rel(sess.run({"image": x})[0], _ort(spec.path, {"image": x})[0]) <= 1e-4
    assert sess.fallbacks == []


@pytest.fixture(scope="module")
def minilm_static(minilm_spec):
    """MiniLM after O2, statically quantized (QDQ) on shipped calibration sentences."""
    from graphopt.data import sentences
    from graphopt.models import sample_feeds
    from graphopt.quant.api import quantize
    from graphopt.quant.config import QuantConfig
    from graphopt.runtime.compile import prepare

    cal = sample_feeds(minilm_spec, sentences("calib")[:16], batch=16, seq=128)
    cal = {k: v for k, v in cal.items() if k in minilm_spec.input_names}
    m = prepare(minilm_spec, "O2")
    quantize(m, QuantConfig(quantize_act_matmul=False, embeddings=False),
             [{k: v[i:i + 8] for k, v in cal.items()} for i in (0, 8)], progress=False)
    return m


def test_minilm_static_int8_every_gemm_static(minilm, minilm_static):
    spec, feeds, want = minilm
    sess = graphopt.compile(minilm_static, precision="int8", level="O0")
    linears = [st for st in sess._steps if st.kind == "Linear"]
    # QKV projections of the fused attention included: no GEMM measures its input range at run time
    assert len(linears) == 24 and all("static" in st.detail for st in linears), [st.detail for st in linears]
    assert sum("u8 out" in st.detail for st in linears) == 6  # FFN up -> down keeps u8 between the GEMMs
    assert not any(st.kind in ("QuantizeLinear", "DequantizeLinear") for st in sess._steps)
    # the word-embedding table is stored int8 with per-row scales: the model holds ~23 MB, not ~58 MB
    assert [st.detail for st in sess._steps if st.kind == "Gather"].count("int8 rows, per-row scales") == 1
    summary = sess.summary()
    assert summary.packed_bytes + summary.const_bytes < 30e6
    # every LayerNorm feeding a GEMM (embeddings, then 2 per layer but the last) also writes its u8 input
    assert sum("u8 copy" in st.detail for st in sess._steps if st.kind == "LayerNorm") == 12
    ref = _pooled(want, feeds["attention_mask"])
    cos = _cos(_pooled(sess.run(feeds)[0], feeds["attention_mask"]), ref)
    assert cos.mean() >= 0.99 and cos.min() >= 0.98, cos
    # the same QDQ graph (quantized QKV weights feeding com.microsoft.Attention) runs in onnxruntime
    from graphopt.ir.clone import clone
    from graphopt.ops import lower_to_onnxruntime

    lowered = clone(minilm_static)
    lower_to_onnxruntime(lowered)
    cos_ort = _cos(_pooled(_ort(graphopt.to_onnx(lowered), feeds)[0], feeds["attention_mask"]), ref)
    assert cos_ort.mean() >= 0.99, cos_ort


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_chained_linears_equal_unchained(minilm, minilm_static, monkeypatch, precision):
    """Handing bf16 / u8 to a GEMM from the producer's pass (GEMM epilogue, LayerNorm) is the same
    arithmetic as converting afterwards."""
    from graphopt.runtime import lower

    spec, feeds, _ = minilm
    model = minilm_static if precision == "int8" else spec
    opt = "O0" if precision == "int8" else "O2"
    chained = graphopt.compile(model, precision=precision, level=opt)
    monkeypatch.setattr(lower, "chain_linears", lambda steps, outs: 0)
    monkeypatch.setattr(lower, "quantize_in_layernorm", lambda steps, outs: 0)
    plain = graphopt.compile(model, precision=precision, level=opt)
    assert any(" out" in st.detail for st in chained._steps)
    assert not any(" out" in st.detail or "u8 copy" in st.detail for st in plain._steps)
    np.testing.assert_allclose(chained.run(feeds)[0], plain.run(feeds)[0], rtol=1e-5, atol=1e-5)
