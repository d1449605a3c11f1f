"""fp32 parity of OpenVINO IR exports with onnxruntime on the same graph:
MiniLM (real weights), DistilBERT and ResNet-50 (random weights).

"Relative" here is max|OpenVINO - onnxruntime| / max|onnxruntime| per output
(element-wise relative error is meaningless on values near zero); the bound
is 1e-4. Both runtimes run in fp32: OpenVINO with INFERENCE_PRECISION_HINT=f32
(its CPU default on this machine is bf16), onnxruntime with graph rewrites off.
"""

import numpy as np
import pytest

import openvino as ov  # noqa: F401
import torch  # noqa: F401 - installed with the suite's extras

import graphopt  # noqa: E402
from graphopt.backends.openvino import compile_for_cpu, export_openvino, infer  # noqa: E402

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Graph compilers fuse operators so that fewer kernels touch memory.",
    "She planted tomatoes in the garden after the last frost of spring.",
    "Quantization trades a little accuracy for a large gain in speed.",
]


def _ort(path, feeds):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(None, feeds)


def _parity(path, feeds, tmp_path):
    xml = export_openvino(graphopt.load(path), tmp_path / "model.xml", precision="fp32")
    got = infer(compile_for_cpu(xml, precision=None), feeds)  # the recorded hint: f32
    want = _ort(path, feeds)
    assert len(got) == len(want)
    worst = 0.0
    for g, w in zip(got, want):
        assert g.shape == w.shape
        worst = max(worst, float(np.abs(g - w).max() / np.abs(w).max()))
    return worst


@pytest.mark.slow
def test_minilm_fp32_parity(minilm_spec, tmp_path):
    from graphopt.models import sample_feeds

    feeds = sample_feeds(minilm_spec, SENTENCES, seq=128)
    assert _parity(minilm_spec.path, feeds, tmp_path) <= 1e-4  # measured 8.2e-7


@pytest.mark.slow
def test_distilbert_fp32_parity(tmp_path):
    import transformers  # noqa: F401 - installed with the suite's extras
    from graphopt.models import distilbert_onnx, sample_feeds

    spec = distilbert_onnx()
    feeds = sample_feeds(spec, batch=2, seq=128)
    feeds["attention_mask"][1, 64:] = 0  # exercise the padding mask
    assert _parity(spec.path, feeds, tmp_path) <= 1e-4  # measured ~9e-7


@pytest.mark.slow
def test_resnet50_fp32_parity(tmp_path):
    from graphopt.models.resnet import resnet50_onnx

    spec = resnet50_onnx()
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    assert _parity(spec.path, {"image": x}, tmp_path) <= 1e-4


@pytest.mark.slow
def test_minilm_o2_fused_graph_decomposes_for_openvino(minilm_spec, tmp_path):
    """O2 leaves graphopt-domain fused ops (attention, SkipLayerNorm, BiasGelu...);
    the exporter decomposes them to standard ONNX (graphopt.ops.decompose_all)."""
    from graphopt.models import sample_feeds
    from graphopt.pm import PassManager

    model = graphopt.load(minilm_spec.path)
    PassManager.from_text("O2")(model)
    fused = [n for n in model.graph if n.domain == "graphopt"]
    assert fused, "O2 should have fused something"
    xml = export_openvino(model, tmp_path / "o2.xml")
    assert len([n for n in model.graph if n.domain == "graphopt"]) == len(fused)  # caller's model untouched
    feeds = sample_feeds(minilm_spec, SENTENCES, seq=128)
    got = infer(compile_for_cpu(xml, "fp32"), feeds)[0]
    want = _ort(minilm_spec.path, feeds)[0]  # the original, unfused graph
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()  # measured 1.9e-6
