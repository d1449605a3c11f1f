"""GPTQ in bounded memory (issue 16): float32 Gram accumulated in bands, its inverse factor made in
place (LAPACK potrf/potri/potrf), the weight swept a column slice at a time -- with the quality of
the float64 reference on a real layer (all-MiniLM-L6-v2's FFN, real activations)."""

from __future__ import annotations

import numpy as np
import pytest

import graphopt
from graphopt.quant import gptq as gq
from graphopt.quant.calibrate import calibrate
from graphopt.quant.gptq import GramObserver, dequantize_groups, gptq_factor, gptq_quantize, rtn_quantize


def _out_err(w: np.ndarray, deq: np.ndarray, h: np.ndarray) -> float:
    d = (deq - w).astype(np.float64)
    return float(np.sqrt(np.sum(d * (h.astype(np.float64) @ d))))  # ||X (W' - W)||_F


@pytest.fixture(scope="module")
def ffn_layer(minilm_spec):
    """(W [1536, 384], float32 Gram of its input) of MiniLM's first FFN down-projection."""
    from graphopt.data import sentences
    from graphopt.models import sample_feeds

    m = graphopt.load(minilm_spec.path)
    node = next(n for n in m.graph if n.op_type == "MatMul" and n.inputs[1].const is not None
                and n.inputs[1].const.shape == (1536, 384))
    cal = sentences("calib")
    batches = [sample_feeds(minilm_spec, cal[i:i + 16], batch=16, seq=32) for i in range(0, 32, 16)]
    res = calibrate(m, batches, [node.inputs[0].name], kind="gram-f32", progress=False)
    gram = res.stats[node.inputs[0].name].gram
    assert gram.dtype == np.float32
    return np.array(node.inputs[1].const, np.float32), gram


def test_float32_in_place_gptq_keeps_the_float64_quality_on_a_real_layer(ffn_layer, monkeypatch) -> None:
    w, h = ffn_layer
    errs = {}
    for name in ("f32", "f64"):
        if name == "f64":
            monkeypatch.setattr(gq, "_lapack", lambda: None)  # the numpy float64 path
        q, s = gptq_quantize(w, h.copy(), bits=4, group=32)
        errs[name] = _out_err(w, dequantize_groups(q, s, 32), h)
    errs["rtn"] = _out_err(w, dequantize_groups(*rtn_quantize(w, 4, 32), 32), h)
    assert errs["f32"] < 0.8 * errs["rtn"], errs
    assert abs(errs["f32"] - errs["f64"]) < 0.02 * errs["f64"], errs


def test_the_factor_is_made_in_the_gram_itself_and_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((512, 96)).astype(np.float32)
    x[:, 5] = 0.0  # a dead input channel
    o = GramObserver(np.float32)
    o._BAND_BYTES = 4 * 96 * 7  # several bands
    o.update(x[:300])
    o.update(x[300:])
    np.testing.assert_allclose(o.gram, x.T @ x, rtol=1e-4, atol=1e-3)
    h = o.gram
    ref = gq._upper_inv_factor_numpy(_damped(h.astype(np.float64)))
    f = gptq_factor(h, overwrite=True)
    assert np.shares_memory(f.u, h) and f.dead[5] and f.dead.sum() == 1
    np.testing.assert_allclose(np.triu(f.u), ref, rtol=1e-3, atol=1e-4 * np.abs(ref).max())


def _damped(h: np.ndarray) -> np.ndarray:
    h = h.copy()
    d = np.diag(h).copy()
    d[d == 0] = 1.0
    h[np.diag_indices(len(d))] = d + 0.01 * d.mean()
    return h


def test_column_slices_give_the_whole_weight_result() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((256, 128)).astype(np.float32)
    w = rng.standard_normal((128, 80)).astype(np.float32)
    f = gptq_factor(x.T @ x)
    whole = gptq_quantize(w, f, bits=4, group=32, chunk_bytes=1 << 30)
    sliced = gptq_quantize(w, f, bits=4, group=32, chunk_bytes=4 * 128 * 16)  # 16 columns at a time
    assert np.mean(whole[0] == sliced[0]) > 0.999
    np.testing.assert_allclose(whole[1], sliced[1], rtol=1e-5)


def test_gptq_rounds_size_grams_from_the_weights_when_shapes_are_unknown(tmp_path) -> None:
    from graphopt.bench.scale_models import matmul_stack
    from graphopt.quant.api import _input_width

    m = graphopt.load(matmul_stack(tmp_path / "s.onnx", layers=3, hidden=64))
    inner = [v for v in m.graph.all_values() if v.shape is None and v.uses()]
    assert inner and all(_input_width(v) == 64 for v in inner)
