"""A QuantConfig's attention precision reaches the native plan in either order (issue 12, "decide once").

``quant-annotate`` records the config's choice for the attention products on every attention core it
sees -- the activation x activation MatMuls of a float model (quantize, then O2 fuses them) or the
fused MultiHeadAttention / Attention node (O2, then quantize) -- and the choice of a GEMM it keeps
float; the file carries the decisions, the fusions carry them to the fused node, and the lowering
reads them (never a node name). So a config keeping attention in fp32 or bf16 is honoured, and O2
then quantize and quantize then O2 compile to one plan, step for step.

Models: all-MiniLM-L6-v2 (BERT-style: packed QKV MultiHeadAttention) and the zoo's GPT-2 in the
default export (sdpa + dynamo: causal ``Attention`` on separate Q, K, V). Each plan also runs against
onnxruntime on the float file: cosine of the unpadded positions' outputs >= 0.98 (the zoo's int8 bound;
MiniLM measured 0.991 with one calibration batch).
"""

from __future__ import annotations

import numpy as np
import pytest

import graphopt

pytest.importorskip("onnxruntime")
pytest.importorskip("torch")
pytest.importorskip("transformers")

#: QuantConfig.attention -> the attention kernel's bf16 flag (int8 products run the kernel's bf16 ones)
ATTENTION = {None: 1, "fp32": 0, "bf16": 1}


def _model(name: str):
    """(float ONNX path, calibration batches, feeds) of a test model."""
    if name == "minilm":
        from .test_int8_routes import _calib, _spec

        spec = _spec("eager-torchscript")
        from graphopt.data import sentences
        from graphopt.models import sample_feeds

        return spec.path, _calib(spec)[:1], sample_feeds(spec, sentences("calib")[40:42], seq=32)
    from graphopt.testing.zoo import export

    e = export(name, "sdpa", "dynamo")
    if e.error:
        pytest.skip(e.error)
    return e.path, [e.feeds(seed=2)], e.feeds()


def _quantized(src, calib, attention: str | None, route: str, tmp_path) -> str:
    from graphopt.quant import QuantConfig, quantize

    m = graphopt.optimize(str(src), level="O2") if route == "o2-then-quantize" else graphopt.load(src)
    quantize(m, QuantConfig(attention=attention, embeddings=False), calib, progress=False)
    path = tmp_path / f"{route}-{attention}.onnx"
    graphopt.save(m, path)  # the decisions travel in the file (node metadata)
    return str(path)


def _plan(sess) -> list[tuple]:
    """Every step's kind, detail, GEMM mode, attention products and chained output (sorted: the two
    graphs may list a view-like Transpose at another place of their topological order)."""
    return sorted((st.kind, st.detail, st.iattrs.get("mode", -1), st.iattrs.get("bf16", -1), st.iattrs.get("out", 0),
                   st.iattrs.get("causal", -1)) for st in sess._steps)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("attention", list(ATTENTION), ids=lambda a: f"attention-{a or 'default'}")
@pytest.mark.parametrize("name", ["minilm", "gpt2"])
def test_config_attention_precision_is_honoured_in_both_orders(name, attention, tmp_path):
    import onnxruntime as ort

    src, calib, feeds = _model(name)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    ref = ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    plans = {}
    for route in ("quantize-then-o2", "o2-then-quantize"):
        sess = graphopt.compile(_quantized(src, calib, attention, route, tmp_path), num_threads=1)
        assert sess.fallbacks == [], (route, sess.fallbacks)
        att = [st for st in sess._steps if st.kind == "Attention"]
        assert len(att) == (6 if name == "minilm" else 2), (route, len(att))
        assert {st.iattrs["bf16"] for st in att} == {ATTENTION[attention]}, (route, [st.detail for st in att])
        lin = [st for st in sess._steps if st.kind == "Linear"]
        assert lin and all(st.iattrs["mode"] == 2 and "static" in st.detail for st in lin), route
        keep = feeds["attention_mask"].astype(bool)  # padded positions' outputs are not compared
        cos = _cos(sess.run(feeds)[0][keep], ref[keep])
        assert cos >= 0.98, f"{route}: cosine {cos:.5f} to onnxruntime on the float file"
        plans[route] = _plan(sess)
    assert plans["quantize-then-o2"] == plans["o2-then-quantize"]


def test_config_node_override_on_an_attention_product_and_a_projection(tmp_path):
    """Per-node choices (quantize then O2): layer 0's score/context MatMuls in bf16 with the rest of
    the attention in fp32, layer 1's query projection in bf16 -- its packed Q|K|V GEMM runs bf16 (the
    widest of its parts), the other layers' stay int8."""
    from graphopt.quant import QuantConfig, quantize
    from graphopt.testing.int8_routes import attention_matmuls

    from .test_int8_routes import _calib, _spec

    import onnx

    spec = _spec("eager-torchscript")
    layer0 = [n for n in attention_matmuls(onnx.load(str(spec.path), load_external_data=False)) if "layer.0/" in n]
    m = graphopt.load(spec.path)
    q1 = next(n.name for n in m.graph if n.op_type == "MatMul" and "layer.1/attention/self/query" in n.name)
    cfg = QuantConfig(attention="fp32", embeddings=False, nodes={**{n: "bf16" for n in layer0}, q1: "bf16"})
    quantize(m, cfg, _calib(spec)[:1], progress=False)
    sess = graphopt.compile(m, num_threads=1)
    assert [st.iattrs["bf16"] for st in sess._steps if st.kind == "Attention"] == [1, 0, 0, 0, 0, 0]
    qkv = [st.iattrs["mode"] for st in sess._steps if st.kind == "Linear" and st.name.endswith("/qkv")]
    assert qkv == [2, 1, 2, 2, 2, 2]


def test_the_lowering_reads_no_names():
    """node_precision by the name of a node that O2 fused away has no effect in the lowering: only
    decisions recorded before the fusions count (the old name lookup of the packed QKV GEMM is gone)."""
    from .test_int8_routes import _spec

    spec = _spec("eager-torchscript")
    ref = _plan(graphopt.compile(spec.path, "int8", 1))
    m = graphopt.optimize(str(spec.path), level="O2")
    mha = next(n for n in m.graph if n.op_type == "MultiHeadAttention")
    name = mha.name or mha.outputs[0].name
    sess = graphopt.compile(spec.path, "int8", 1, node_precision={f"{name}/qkv": "fp32", name: "fp32"})
    assert _plan(sess) == ref
