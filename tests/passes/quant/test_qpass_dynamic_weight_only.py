"""quantize-dynamic and quantize-weight-only: op forms onnxruntime runs, bounded error."""

import numpy as np
import pytest

from graphopt.quant import QuantConfig, quantize
from graphopt.quant.testing import mlp_model, random_batches, run_ort
from graphopt.quant.weights import quantize_int4_blocks


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def feeds():
    return random_batches(1, seed=5)[0]


@pytest.mark.parametrize("contrib, op", [(True, "com.microsoft::DynamicQuantizeMatMul"), (False, "MatMulInteger")])
@pytest.mark.parametrize("per_channel", [True, False])
def test_dynamic(feeds, contrib, op, per_channel):
    import graphopt.passes.quant as pq
    from graphopt.pm import PassContext

    ref = run_ort(mlp_model(), feeds)[0]
    m = mlp_model()
    res = pq.DynamicQuantPass(QuantConfig(mode="dynamic", per_channel_dynamic=per_channel), contrib=contrib).run(
        m, PassContext())
    assert res.stats["matmuls"] == 3
    assert m.graph.op_counts()[op] == 3 and "MatMul" not in m.graph.op_counts()
    m.graph.verify()
    assert _rel(run_ort(m, feeds)[0], ref) < 0.03
    assert _rel(run_ort(m, feeds, optimize=True)[0], ref) < 0.03


def test_weight_only_int8(feeds):
    ref = run_ort(mlp_model(), feeds)[0]
    m, rep = quantize(mlp_model(), QuantConfig(mode="weight-only", weight_bits=8))
    assert rep.stats["quantize-weight-only"]["matmuls"] == 3
    assert m.graph.op_counts()["DequantizeLinear"] == 3
    assert _rel(run_ort(m, feeds)[0], ref) < 0.01


def test_weight_only_int4_matches_numpy_reference(feeds):
    m, _ = quantize(mlp_model(d=64, hidden=128), QuantConfig(mode="weight-only", weight_bits=4, group_size=32))
    assert m.graph.op_counts()["com.microsoft::MatMulNBits"] == 3
    # the kernel must compute exactly x @ dequant(W): check one layer against numpy
    fp = mlp_model(d=64, hidden=128).graph
    _, _, deq = quantize_int4_blocks(fp.value("w1").const, 32)
    x = np.random.default_rng(0).standard_normal((2, 3, 64)).astype(np.float32)
    h1b, ln = run_ort(m, {"x": x}, ["h1b", "ln"])
    np.testing.assert_allclose(h1b, ln @ deq + fp.value("b1").const, rtol=1e-3, atol=1e-3)
    ref = run_ort(mlp_model(d=64, hidden=128), {"x": x})[0]
    assert _rel(run_ort(m, {"x": x})[0], ref) < 0.1


def test_int4_packing_layout():
    w = np.arange(-8, 8, dtype=np.float32).reshape(16, 1).repeat(2, axis=1)  # K=16, N=2
    packed, scales, deq = quantize_int4_blocks(w, 16)
    assert packed.shape == (2, 1, 8) and scales.shape == (2,)
    np.testing.assert_allclose(scales, [1.0, 1.0], rtol=1e-6)  # the extreme -8 maps to -8: all 16 levels
    codes = np.stack([packed & 0xF, packed >> 4], axis=-1).reshape(2, 16)  # low nibble = even k
    np.testing.assert_array_equal(codes[0], w[:, 0] + 8)
    np.testing.assert_array_equal(deq, w)
    p2, s2, _ = quantize_int4_blocks(-w, 16)  # a positive extreme: a negative scale, as onnxruntime's quantizer
    np.testing.assert_allclose(s2, [-1.0, -1.0], rtol=1e-6)
    assert (np.stack([p2 & 0xF, p2 >> 4], axis=-1).reshape(2, 16)[0] == w[:, 0] + 8).all()


def test_pack_int4_matches_rtn_packing():
    from graphopt.quant.gptq import rtn_quantize
    from graphopt.quant.weights import pack_int4

    w = np.random.default_rng(0).standard_normal((64, 8)).astype(np.float32)
    packed, scales, _ = quantize_int4_blocks(w, 32)
    p2, s2 = pack_int4(*rtn_quantize(w, bits=4, group=32), 32)
    np.testing.assert_array_equal(p2, packed)
    np.testing.assert_allclose(s2, scales, rtol=1e-6)


@pytest.mark.parametrize("bits", [4, 8])
def test_gptq_beats_round_to_nearest(bits):
    calib = random_batches(40, d=64)  # GPTQ needs rows >> K for a Gram matrix that generalises
    x = random_batches(1, d=64, seed=11)[0]
    ref = run_ort(mlp_model(d=64, hidden=128), x)[0]
    errs = {}
    for gptq in (False, True):
        cfg = QuantConfig(mode="weight-only", weight_bits=bits, group_size=16, gptq=gptq)
        m, rep = quantize(mlp_model(d=64, hidden=128), cfg, calib if gptq else None, progress=False)
        errs[gptq] = _rel(run_ort(m, x)[0], ref)
    assert errs[True] < errs[False]
