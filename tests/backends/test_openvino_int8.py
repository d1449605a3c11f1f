"""QDQ graphs run on OpenVINO's int8 kernels, within a stated fidelity bound.

How int8 execution is verified: the compiled model's runtime graph
(``compiled.get_runtime_model()``) reports, per executed layer, its type and
``runtimePrecision``; every quantized Convolution/FullyConnected must run in
``u8``/``i8`` (see graphopt.backends.openvino.int8_layers).
"""

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import openvino as ov  # noqa: F401
import onnxruntime.quantization as quantization

import graphopt  # noqa: E402
from graphopt.backends.openvino import compile_for_cpu, export_openvino, infer, int8_layers  # noqa: E402

INT8 = {"u8", "i8"}


def _ort(model, feeds):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    src = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"]).run(None, feeds)


def _fp32_model(batch):
    rng = np.random.default_rng(0)
    inits = {"W1": rng.standard_normal((64, 128)) * 0.1, "B1": rng.standard_normal(128) * 0.1,
             "W2": rng.standard_normal((128, 32)) * 0.1, "Wc": rng.standard_normal((16, 3, 3, 3)) * 0.2}
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h"]), helper.make_node("Add", ["h", "B1"], ["h2"]),
             helper.make_node("Relu", ["h2"], ["h3"]), helper.make_node("MatMul", ["h3", "W2"], ["y"]),
             helper.make_node("Conv", ["img", "Wc"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["z"])]
    g = helper.make_graph(
        nodes, "mlp_conv",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [batch, 64]),
         helper.make_tensor_value_info("img", onnx.TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [batch, 32]),
         helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, [1, 16, 16, 16])],
        [numpy_helper.from_array(np.asarray(a, np.float32), n) for n, a in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _feeds(seed):
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((8, 64)).astype(np.float32),
            "img": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)}


class _Reader(quantization.CalibrationDataReader):
    def __init__(self, batches):
        self.it = iter(batches)

    def get_next(self):
        return next(self.it, None)


@pytest.fixture(scope="module", params=["static", "dynamic-batch"])
def qdq_pair(request, tmp_path_factory):
    d = tmp_path_factory.mktemp("qdq")
    fp = _fp32_model(8 if request.param == "static" else "batch")
    onnx.save(fp, str(d / "fp32.onnx"))
    quantization.quantize_static(str(d / "fp32.onnx"), str(d / "int8.onnx"), _Reader([_feeds(s) for s in range(8)]),
                                 quant_format=quantization.QuantFormat.QDQ,
                                 activation_type=quantization.QuantType.QUInt8,
                                 weight_type=quantization.QuantType.QInt8)
    return fp, onnx.load(str(d / "int8.onnx")), d


def test_qdq_runs_as_int8_and_matches_onnxruntime(qdq_pair, tmp_path):
    fp, q, _ = qdq_pair
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in q.graph.node}
    xml = export_openvino(graphopt.load(q), tmp_path / "int8.xml")
    for precision in ("fp32", "bf16"):  # the hint governs float layers; int8 layers stay int8
        layers = int8_layers(compile_for_cpu(xml, precision))
        assert len([n for p in INT8 for n in layers.get(p, [])]) == 3, layers  # 2 FullyConnected + 1 Convolution
        assert set(layers) <= INT8
    feeds = _feeds(100)
    got = infer(compile_for_cpu(xml), feeds)
    ort_q = _ort(q, feeds)
    ref = _ort(fp, feeds)
    for g, oq, r in zip(got, ort_q, ref):
        scale = np.abs(r).max()
        # same QDQ graph: OpenVINO and onnxruntime may round a requantized value one step apart
        assert np.abs(g - oq).max() <= 0.03 * scale
        # int8 vs fp32: the quantization error itself, no worse than onnxruntime's by more than a step
        assert np.abs(g - r).max() <= np.abs(oq - r).max() + 0.02 * scale


@pytest.mark.parametrize("qdq_pair", ["static"], indirect=True)  # the bug needs static shapes
def test_static_int8_mlp_needs_snippets_off(qdq_pair, tmp_path):
    """Documents the OpenVINO 2026.4 CPU bug that compile_for_cpu works around."""
    fp, q, d = qdq_pair
    xml = export_openvino(q, tmp_path / "int8.xml")
    feeds = _feeds(100)
    want = _ort(q, feeds)[0]
    fixed = infer(compile_for_cpu(xml), feeds)[0]
    assert np.abs(fixed - want).max() <= 0.03 * np.abs(want).max()
    raw = infer(compile_for_cpu(xml, snippets=True), feeds)[0]
    if np.abs(raw - want).max() <= 0.03 * np.abs(want).max():
        pytest.xfail("OpenVINO's snippets no longer mis-compute this graph: the workaround can go")


def _embed(hidden, mask):
    m = mask[..., None].astype(np.float32)
    e = (hidden * m).sum(1) / m.sum(1)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


@pytest.mark.slow
def test_minilm_graphopt_int8_runs_int8_in_openvino_within_the_quant_bound(minilm_spec, tmp_path):
    """all-MiniLM-L6-v2 quantized by graphopt (QuantConfig.transformer(): SmoothQuant + static
    int8 QDQ, calibrated on 100 shipped sentences), exported to OpenVINO IR: every quantized
    MatMul executes in int8, and on 200 shipped eval sentences (disjoint from calibration) the
    sentence embeddings meet the quantization issue's bound against fp32: mean cosine >= 0.99,
    min >= 0.97. Measured (openvino 2026.4): mean 0.9981, min 0.9906 -- the same as onnxruntime
    running the same QDQ graph (OpenVINO vs onnxruntime int8: mean 0.9997, min 0.9986)."""
    from graphopt.data import sentences
    from graphopt.models import minilm_tokenizer
    from graphopt.quant import QuantConfig, quantize

    tok = minilm_tokenizer()

    def batches(texts, size):
        out = []
        for i in range(0, len(texts), size):
            enc = tok(texts[i:i + size], padding="longest", truncation=True, max_length=128, return_tensors="np")
            out.append({k: enc[k].astype(np.int64) for k in minilm_spec.input_names})
        return out

    qmodel, _ = quantize(graphopt.load(minilm_spec.path), QuantConfig.transformer(),
                         batches(sentences("calib", 100), 10), progress=False)
    qdq = sum(1 for n in qmodel.graph if n.op_type == "QuantizeLinear")
    xml = export_openvino(qmodel, tmp_path / "minilm_int8.xml")
    cm = compile_for_cpu(xml, "fp32")
    layers = int8_layers(cm)
    n_int8 = len(layers.get("u8", []) + layers.get("i8", []))
    assert qdq > 0 and n_int8 == 36, layers  # 6 layers x (Q, K, V, out, FFN1, FFN2)

    fp = onnx.load(str(minilm_spec.path))
    cos = []
    for b in batches(sentences("eval", 200), 25):
        ref = _embed(_ort(fp, b)[0], b["attention_mask"])
        got = _embed(infer(cm, b)[0], b["attention_mask"])
        cos += list((ref * got).sum(1))
    assert len(cos) == 200
    assert np.mean(cos) >= 0.99 and np.min(cos) >= 0.97, (np.mean(cos), np.min(cos))
