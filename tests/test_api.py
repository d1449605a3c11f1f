"""The flow API: graphopt.optimize / quantize / compile / export / save / load."""

from __future__ import annotations

import numpy as np
import pytest

import graphopt
from graphopt.errors import PassError, UsageError
from graphopt.quant.testing import mlp_model, random_batches


@pytest.fixture()
def mlp():
    return mlp_model()


def _outputs(sess, feeds):
    return sess.run(feeds)[0]


def test_optimize_returns_a_copy_and_keeps_the_callers_model(mlp):
    before = str(mlp)
    out = graphopt.optimize(mlp, level="O2")
    assert out is not mlp and str(mlp) == before
    assert graphopt.optimize(mlp, level="O0") is not mlp
    with pytest.raises(UsageError):
        graphopt.optimize(mlp, level="O3")  # one set of levels: O0, O1, O2
    with pytest.raises(UsageError):
        graphopt.optimize(mlp, passes="remove-noops,no-such-pass")


@pytest.mark.parametrize("source", ["list", "callable", "npz-folder", "npz-file", "reader"])
def test_quantize_takes_every_data_source(mlp, tmp_path, source):
    batches = random_batches(3)
    if source == "list":
        data = batches
    elif source == "callable":
        data = lambda: iter(batches)  # noqa: E731 - a zero-argument callable, called per pass
    elif source == "reader":
        it = iter(batches)

        class Reader:
            def get_next(self):
                return next(it, None)

        data = Reader()
    else:
        folder = tmp_path / "calib"
        folder.mkdir()
        for i, b in enumerate(batches):
            np.savez(folder / f"{i}.npz", **b)
        data = folder if source == "npz-folder" else folder / "0.npz"
    q = graphopt.quantize(mlp, data, mode="static")
    counts = q.graph.op_counts()
    assert counts.get("QuantizeLinear", 0) >= 2
    assert "QuantizeLinear" not in mlp.graph.op_counts()  # the caller's model is untouched


def test_quantization_runs_under_the_pass_manager_with_instruments(mlp):
    from graphopt.pm import Timing

    timing = Timing()
    graphopt.quantize(mlp, random_batches(2), instruments=[timing])
    names = [r.name for r in timing.records]
    assert "calibrate" in names and "insert-qdq" in names
    assert names.index("calibrate") < names.index("insert-qdq")


def test_dynamic_quantization_of_gemm_layers():
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")
    g = helper.make_graph([helper.make_node("Gemm", ["x", "w", "b"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])], [w, b])
    m = graphopt.from_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    q = graphopt.quantize(m, mode="dynamic")
    assert "Gemm" not in q.graph.op_counts()
    x = rng.standard_normal((2, 8)).astype(np.float32)
    from graphopt._ort import run_ort

    np.testing.assert_allclose(run_ort(q, {"x": x})[0], run_ort(m, {"x": x})[0], rtol=0.05, atol=0.05)


def test_compile_runs_a_qdq_model_in_int8_without_being_told(mlp):
    q = graphopt.quantize(mlp, random_batches(2))
    sess = graphopt.compile(q)
    assert sess.precision == "int8" and sess.int8_activations == "static"
    assert graphopt.compile(mlp).precision == "fp32"
    feeds = random_batches(1)[0]
    ref = graphopt.compile(mlp).run(feeds)[0]
    got = sess.run(feeds)[0]
    assert np.abs(got - ref).max() / np.abs(ref).max() < 0.1


def test_compile_int8_on_a_float_model_says_it_quantizes_dynamically(mlp, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="graphopt.api"):
        sess = graphopt.compile(mlp, precision="int8")
    assert sess.precision == "int8" and sess.int8_activations == "dynamic"
    assert any("dynamically" in r.getMessage() for r in caplog.records)


def test_compile_names_a_failing_pass_unless_fallback_was_asked_for(mlp, monkeypatch):
    from graphopt.passes.cleanup.cse import CSE

    def boom(self, model, ctx):
        raise RuntimeError("injected")

    monkeypatch.setattr(CSE, "run", boom)
    with pytest.raises(PassError, match="'cse'"):
        graphopt.compile(mlp)
    sess = graphopt.compile(mlp, fallback=True)
    assert sess.run(random_batches(1)[0])[0].shape[-1] == 16


def test_compile_keeps_ir_metadata_of_the_callers_model(mlp):
    from graphopt.runtime.compile import prepare

    from graphopt.quant import PRECISION

    next(iter(mlp.graph)).meta[PRECISION] = "fp32"  # IR metadata survives the IR clone (a protobuf copy loses it)
    m = prepare(mlp, None)
    assert next(iter(m.graph)).meta.get(PRECISION) == "fp32"


def test_save_after_o2_writes_a_file_onnxruntime_loads_and_graphopt_reads_back(mlp, tmp_path):
    from graphopt._ort import ort_session, run_ort

    o2 = graphopt.optimize(mlp, level="O2")
    assert any(n.domain == "graphopt" for n in o2.graph)
    path = graphopt.save(o2, tmp_path / "m.O2.onnx")
    ort_session(path)
    feeds = random_batches(1)[0]
    np.testing.assert_allclose(run_ort(path, feeds)[0], run_ort(mlp, feeds)[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("target,name", [("onnx", "m.onnx"), ("openvino", "m.xml")])
def test_export_reads_its_file_back(mlp, tmp_path, target, name):
    dst = graphopt.export(mlp, tmp_path / name, target=target)
    assert dst.exists()
    with pytest.raises(UsageError):
        graphopt.export(mlp, tmp_path / "m.bin", target="openvino")


def test_export_openvino_fails_when_openvino_cannot_read_the_file(mlp, tmp_path, monkeypatch):
    import openvino as ov

    from graphopt.errors import GraphoptError

    def unreadable(self, *a, **k):
        raise RuntimeError("cannot parse")

    monkeypatch.setattr(ov.Core, "read_model", unreadable)
    with pytest.raises(GraphoptError, match="read back"):
        graphopt.export(mlp, tmp_path / "m.xml", target="openvino")


@pytest.mark.e2e
def test_an_o2_transformer_file_reads_back_into_fused_ops_and_compiles_natively(tmp_path):
    from graphopt.models import bert_onnx

    spec = bert_onnx(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                     vocab_size=500, max_position_embeddings=64)
    o2 = graphopt.optimize(spec.path, level="O2")
    fused = {op for op in o2.graph.op_counts() if op.startswith("graphopt::")}
    assert {"graphopt::MultiHeadAttention", "graphopt::EmbedLayerNorm", "graphopt::SkipLayerNorm"} <= fused
    path = graphopt.save(o2, tmp_path / "bert.O2.onnx")
    back = graphopt.load(path)
    assert not any(n.domain == "com.microsoft" for n in back.graph)
    # read back as graphopt's fused ops; a GEMM's bias / GELU epilogue comes back on the contrib op
    # (BiasGelu, SkipLayerNorm's bias), and O2 of the file gives them back to the GEMM's Linear
    assert fused - {"graphopt::Linear"} <= set(back.graph.op_counts())
    again = graphopt.optimize(back, level="O2").graph.op_counts()
    assert {op for op in again if op.startswith("graphopt::")} == fused
    sess = graphopt.compile(path)
    assert sess.fallbacks == []  # every op, attention included, on a native kernel
    rng = np.random.default_rng(0)
    feeds = {"input_ids": rng.integers(0, 500, (2, 16)), "attention_mask": np.ones((2, 16), np.int64),
             "token_type_ids": np.zeros((2, 16), np.int64)}
    feeds["attention_mask"][1, 10:] = 0
    np.testing.assert_allclose(sess.run(feeds)[0], graphopt.compile(spec.path).run(feeds)[0], rtol=1e-4, atol=1e-4)
