"""annotate -> smoothquant -> insert-qdq -> fold-qdq on a small LayerNorm/MLP graph, run in onnxruntime."""

import numpy as np
import pytest

import graphopt.passes.quant as pq
from graphopt.errors import PreconditionError
from graphopt.pm import PassContext, get_pass
from graphopt.quant import CHANNEL_MAX, QUANT_INPUTS, QuantConfig, calibrate, quantize
from graphopt.quant.testing import mlp_model, random_batches, run_ort

CTX = PassContext()


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def data():
    return random_batches(4), random_batches(1, seed=9)[0]


def test_passes_are_registered():
    for name in ("quant-annotate", "smoothquant", "insert-qdq", "fold-qdq", "quantize-dynamic",
                 "quantize-weight-only"):
        assert get_pass(name).name == name


def test_annotate_only_writes_meta():
    m = mlp_model()
    before = str(m.graph)
    res = pq.AnnotateQuantPass(QuantConfig()).run(m, CTX)
    assert str(m.graph) == before
    assert res.stats == {"annotated": 3, "weights": 3, "activations": 3, "decided": 0}
    specs = m.graph.node("fc1").meta[QUANT_INPUTS]
    assert specs[1].axis == 1 and specs[1].per_channel and specs[0].dtype.value == "u8"
    assert QUANT_INPUTS not in m.graph.node("ln").meta


def test_insert_qdq_shares_one_pair_per_value_and_is_close(data):
    calib, feeds = data
    ref = run_ort(mlp_model(), feeds)[0]
    m, rep = quantize(mlp_model(), QuantConfig(), calib, progress=False)
    counts = m.graph.op_counts()
    # activations: ln (shared by fc1 and side) and r -> 2 pairs; 3 weights
    assert counts["QuantizeLinear"] == 2 and counts["DequantizeLinear"] == 5
    assert rep.stats["insert-qdq"]["qdq_pairs"] == 2
    got = run_ort(m, feeds)[0]
    assert _rel(got, ref) < 0.03
    again = pq.InsertQDQPass().run(m, CTX)  # idempotent
    assert not again.modified and m.graph.op_counts() == counts


def test_fp32_override_keeps_node_float(data):
    calib, _ = data
    m, _ = quantize(mlp_model(), QuantConfig(nodes={"fc2": "fp32"}), calib, progress=False)
    fc2 = m.graph.node("fc2")
    assert all(v.producer() is None or v.producer().op_type != "DequantizeLinear" for v in fc2.inputs)


def test_missing_calibration_is_a_clear_error():
    m = mlp_model()
    pq.AnnotateQuantPass(QuantConfig()).run(m, CTX)
    with pytest.raises(PreconditionError, match="%ln has no calibration"):
        pq.InsertQDQPass().run(m, CTX)
    lenient = PassContext(config={"insert_qdq.require_calibration": False})
    assert pq.InsertQDQPass().run(m, lenient).stats["skipped_nodes"] == 3


@pytest.mark.parametrize("alpha", [0.5, 0.8])
def test_smoothquant_is_exact_in_fp32_and_flattens_channels(data, alpha):
    calib, feeds = data
    ref = run_ort(mlp_model(), feeds)[0]
    m = mlp_model()
    calibrate(m, calib, ["ln", "r"], kind="channel_absmax", progress=False).attach(m)
    amax = m.graph.value("ln").meta[CHANNEL_MAX]
    res = pq.SmoothQuantPass(alpha).run(m, CTX)
    # ln also feeds the residual Add, so a Mul is inserted instead of folding into gamma
    assert res.stats == {"smoothed": 2, "folded_into_layernorm": 0, "muls": 2}
    m.graph.verify()
    np.testing.assert_allclose(run_ort(m, feeds)[0], ref, rtol=1e-4, atol=1e-4)
    from graphopt.passes.quant.smoothquant import SMOOTHED_MAX

    new = m.graph.node("fc1").inputs[0].meta[SMOOTHED_MAX]
    assert new.max() / np.median(new) < amax.max() / np.median(amax)
    before = str(m.graph)
    assert not pq.SmoothQuantPass(alpha).run(m, CTX).modified and str(m.graph) == before  # idempotent


def test_smoothquant_folds_into_layernorm_when_exclusive(data):
    calib, feeds = data
    m = mlp_model()
    m.graph.node("residual").set_input(1, m.graph.inputs[0])  # ln now feeds only fc1 and side
    ref = run_ort(m, feeds)[0]
    calibrate(m, calib, ["ln"], kind="channel_absmax", progress=False).attach(m)
    res = pq.SmoothQuantPass(0.5).run(m, CTX)
    assert res.stats["folded_into_layernorm"] == 1 and "Mul" not in m.graph.op_counts()
    np.testing.assert_allclose(run_ort(m, feeds)[0], ref, rtol=1e-4, atol=1e-4)


def test_smoothquant_reduces_quantization_error(data):
    calib, feeds = data
    ref = run_ort(mlp_model(outlier=60.0), feeds)[0]
    errs = {}
    for sq in (None, 0.8):
        m, _ = quantize(mlp_model(outlier=60.0), QuantConfig(smoothquant=sq), calib, progress=False)
        errs[sq] = _rel(run_ort(m, feeds)[0], ref)
    assert errs[0.8] < errs[None]


def test_fold_qdq_to_qoperator(data):
    calib, feeds = data
    qdq, _ = quantize(mlp_model(), QuantConfig(), calib, progress=False)
    qop, rep = quantize(mlp_model(), QuantConfig(), calib, fmt="qoperator", progress=False)
    assert rep.stats["fold-qdq"]["matmul_integer"] == 3
    counts = qop.graph.op_counts()
    assert counts["MatMulInteger"] == 3 and "MatMul" not in counts and "DequantizeLinear" not in counts
    np.testing.assert_allclose(run_ort(qop, feeds)[0], run_ort(qdq, feeds)[0], rtol=1e-3, atol=1e-3)


def test_fold_qdq_qlinear_matmul_when_output_is_quantized(data):
    calib, feeds = data
    m = mlp_model()
    # fc2's output feeds a quantized MatMul directly: the DQ->MatMul->Q island becomes QLinearMatMul
    import onnx  # noqa: F401
    from graphopt.ir import Node

    g = m.graph
    w4 = g.add_initializer("w4", np.eye(16, dtype=np.float32))
    h4 = Node("MatMul", [g.value("h2"), w4], name="fc4", outputs=["h4"])
    g.insert_after(g.node("fc2"), h4)
    g.node("fc2_bias").set_input(0, h4.output)
    ref = run_ort(m, feeds)[0]
    m, rep = quantize(m, QuantConfig(), calib, fmt="qoperator", progress=False)
    assert rep.stats["fold-qdq"]["qlinear_matmul"] == 1
    assert m.graph.op_counts()["QLinearMatMul"] == 1
    assert _rel(run_ort(m, feeds)[0], ref) < 0.05


def test_fused_linear_from_fusion_is_quantized(data):
    """graphopt::Linear (fuse-matmul-add) is annotated, calibrated (lowered copy) and runs after lowering."""

    fuse = get_pass("fuse-matmul-add")
    from graphopt.ops.lowering import lower_to_onnxruntime
    calib, feeds = data
    ref = run_ort(mlp_model(), feeds)[0]
    m = mlp_model()
    fuse().run(m, CTX)
    assert "graphopt::Linear" in m.graph.op_counts()
    m, rep = quantize(m, QuantConfig(smoothquant=0.5), calib, progress=False)
    assert rep.stats["quant-annotate"]["annotated"] == 3 and rep.stats["smoothquant"]["smoothed"] == 2
    lower_to_onnxruntime(m)
    assert _rel(run_ort(m, feeds)[0], ref) < 0.03


def test_onnxruntime_runs_the_qdq_graph_with_integer_kernels(data, tmp_path):
    import onnx
    import onnxruntime as ort

    import graphopt

    calib, _ = data
    m, _ = quantize(mlp_model(), QuantConfig(), calib, progress=False)
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    so.log_severity_level = 3
    ort.InferenceSession(str(graphopt.save(m, tmp_path / "q.onnx")), so, providers=["CPUExecutionProvider"])
    ops = {n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node}
    assert "MatMulIntegerToFloat" in ops or "QLinearMatMul" in ops
    assert "MatMul" not in ops and "DequantizeLinear" not in ops


def test_sensitivity_ranks_nodes_and_fallback_reduces_error(data):
    from graphopt.quant.sensitivity import fallback_overrides, node_sensitivity, output_error

    calib, feeds = data
    ref = run_ort(mlp_model(outlier=60.0), feeds)
    q, _ = quantize(mlp_model(outlier=60.0), QuantConfig(), calib, progress=False)
    before = str(q.graph)
    sens = node_sensitivity(q, ref, feeds)
    assert set(sens) == {"fc1", "fc2", "side"} and str(q.graph) == before  # restored after each trial
    err_all = output_error(ref, run_ort(q, feeds))
    cfg = QuantConfig(nodes=fallback_overrides(sens, 1))
    q1, _ = quantize(mlp_model(outlier=60.0), cfg, calib, progress=False)
    assert output_error(ref, run_ort(q1, feeds)) < err_all
