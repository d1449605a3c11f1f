"""graphopt.train.qat: fake-quant from QuantConfig, STE, export to QDQ run int8 by the native runtime."""

import copy

import numpy as np
import pytest
import torch

import graphopt
from graphopt.errors import GraphoptError
from graphopt.quant import QuantConfig
from graphopt.quant.specs import QType, QuantSpec, dequantize_array, qparams_from_range, quantize_array
from graphopt.train import export_onnx, prepare_qat, qat

from .conftest import tiny_classifier, tiny_data

NAMES = ("input_ids", "attention_mask", "token_type_ids")
CFG = QuantConfig(quantize_act_matmul=False, embeddings=False)


def test_weight_fake_quant_is_graphopts_quantizer():
    """Per-channel symmetric s8 weights round exactly as graphopt's PTQ quantizes them."""
    lin = torch.nn.Linear(16, 8)
    m = torch.nn.Sequential(lin)
    prepare_qat(m, CFG)
    fq = m[0]
    w = lin.weight.detach().numpy()
    spec = QuantSpec(QType.S8, symmetric=True, per_channel=True, axis=0)
    qp = qparams_from_range(w.min(1), w.max(1), spec)
    want = dequantize_array(quantize_array(w, qp), qp)
    s, z = fq.weight_qparams()
    got = torch.fake_quantize_per_channel_affine(fq.weight, s, z, 0, -128, 127).detach().numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-7)


def test_ste_gradients_and_config_overrides():
    m = tiny_classifier()
    swapped = prepare_qat(m, QuantConfig(quantize_act_matmul=False, embeddings=False, nodes={"head": "fp32"}))
    assert "head" not in swapped and any(n.endswith("attention.self.query") for n in swapped)
    assert isinstance(m.head, torch.nn.Linear)
    d = tiny_data(8)
    m.train()
    out = m(**{k: torch.from_numpy(d[k]) for k in NAMES})
    out.sum().backward()
    q = m.encoder.encoder.layer[0].attention.self.query
    assert q.weight.grad is not None and float(q.weight.grad.abs().sum()) > 0  # straight-through
    with pytest.raises(GraphoptError, match="static"):
        prepare_qat(tiny_classifier(), QuantConfig(mode="dynamic"))


def test_qat_export_runs_int8_natively_within_one_step(tmp_path):
    d = tiny_data(64)
    m, res = qat(tiny_classifier(seed=3), d, CFG, steps=6, batch=8, lr=1e-3, progress=False)
    assert res.steps == 6
    feeds = {k: d[k][:6] for k in NAMES}
    with torch.no_grad():
        ref = m(**{k: torch.from_numpy(v) for k, v in feeds.items()}).numpy()
    path = export_onnx(m, tmp_path / "qat.onnx", {k: d[k][:2] for k in NAMES})
    model = graphopt.load(path)
    assert graphopt.api.has_qdq(model)
    sess = graphopt.compile(model)
    assert sess.precision == "int8"
    # every linear layer is an int8 GEMM with the export's grids, in the fused plan (absorb-qdq, then
    # O2): 4 layers x (packed Q|K|V, O, up, down) + the head, and the attention kernel in every layer
    assert str(sess.summary()).count("int8 static (QDQ)") == 17
    assert sum(st.kind == "Attention" for st in sess._steps) == 4
    got = sess.run(feeds)[0]
    # one quantization step of the head's input, through the head: every input element one step off
    s, _ = m.head.act_qparams()
    tol = float(s) * float(m.head.weight.detach().abs().sum(1).max())
    assert np.abs(got - ref).max() <= tol
    assert np.abs(got - ref).max() < 0.1 * np.abs(ref).max()


def test_qat_needs_labels_or_teacher():
    d = tiny_data(16)
    d.pop("labels")
    with pytest.raises(GraphoptError, match="labels"):
        qat(tiny_classifier(), d, CFG, steps=1, progress=False)


def test_qat_cached_teacher_equals_live_teacher_and_freeze(tmp_path):
    d = tiny_data(32)
    base = tiny_classifier(seed=4)
    emb = base.encoder.embeddings.word_embeddings.weight.detach().clone()
    kw = dict(steps=4, batch=8, lr=1e-3, progress=False, freeze=("encoder.embeddings.",))
    live, r1 = qat(copy.deepcopy(base), d, CFG, teacher=copy.deepcopy(base), **kw)
    m = copy.deepcopy(base)
    cached, r2 = qat(m, d, CFG, teacher=m, teacher_cache=tmp_path / "t", **kw)
    np.testing.assert_allclose(r1.losses, r2.losses, rtol=1e-5)
    assert torch.equal(cached.encoder.embeddings.word_embeddings.weight, emb)
    assert not torch.equal(cached.head.weight, base.head.weight)
