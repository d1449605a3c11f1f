"""all-MiniLM-L6-v2 (real weights), static int8 with the default transformer config (SmoothQuant):
sentence-embedding cosine to fp32 on shipped eval sentences, file size, calibration time.

The full figure (>= 200 eval sentences, side by side with onnxruntime's quantizers) comes from
``python benchmarks/quant_fidelity.py``; this test runs a 60-sentence subset.
"""

import numpy as np
import pytest

import graphopt
from graphopt.data import sentences

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def _batches(tok, names, sents, batch, pad):
    out = []
    for i in range(0, len(sents), batch):
        enc = tok(sents[i:i + batch], padding=pad, truncation=True, max_length=128, return_tensors="np")
        out.append({k: enc[k].astype(np.int64) for k in names})
    return out


def _embed(path, batches):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outs = []
    for b in batches:
        h = sess.run(None, b)[0]
        m = b["attention_mask"][..., None].astype(np.float32)
        e = (h * m).sum(1) / m.sum(1)
        outs.append(e / np.linalg.norm(e, axis=1, keepdims=True))
    return np.concatenate(outs)


def test_minilm_static_int8_fidelity(minilm_spec, tmp_path):
    from graphopt.models import minilm_tokenizer
    from graphopt.quant import QuantConfig, quantize

    tok = minilm_tokenizer()
    calib = _batches(tok, minilm_spec.input_names, sentences("calib", 100), 10, "longest")
    evalb = _batches(tok, minilm_spec.input_names, sentences("eval", 60), 20, "longest")
    m, rep = quantize(graphopt.load(minilm_spec.path), QuantConfig.transformer(), calib, progress=False)
    assert rep.stats["smoothquant"]["smoothed"] == 24
    assert rep.calibration_seconds < 60, "calibrating MiniLM on 100 sentences must take under a minute"
    out = graphopt.save(m, tmp_path / "minilm.int8.onnx")
    cos = (_embed(out, evalb) * _embed(minilm_spec.path, evalb)).sum(1)
    ratio = out.stat().st_size / minilm_spec.path.stat().st_size
    print(f"MiniLM int8: mean cos {cos.mean():.4f}, min {cos.min():.4f}, size {ratio:.1%}, "
          f"calibration {rep.calibration_seconds:.1f} s")
    assert cos.mean() >= 0.99 and cos.min() >= 0.97
    assert ratio <= 0.30
