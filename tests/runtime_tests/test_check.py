"""Never silently wrong (issue 12): minimal graphs for the SkipLayerNorm Sum bug, and the
runtime check (`graphopt.runtime.check`, `compile(check=...)`, `graphopt check`)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import graphopt
from graphopt.pm import PassManager
from graphopt.runtime.check import NativeMismatch, check, make_feeds

H, S = 16, 5


def _ort(model: onnx.ModelProto, feeds):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feeds)


def pre_ln_embedding_block() -> onnx.ModelProto:
    """h = x + pos[1,S,H] (broadcast over the batch); out = h + LayerNorm(h) @ W.

    O2 fuses the Add + LayerNorm into SkipLayerNorm whose second output (the sum h) carries the
    residual stream -- GPT-2's and ViT's first block. The native LayerNorm left that output
    unwritten whenever the skip broadcast (batch > 1): arena garbage, NaN, run-to-run changes.
    """
    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(rng.standard_normal((1, S, H)).astype(np.float32), "pos"),
             numpy_helper.from_array((1 + 0.1 * rng.standard_normal(H)).astype(np.float32), "gamma"),
             numpy_helper.from_array((0.1 * rng.standard_normal(H)).astype(np.float32), "beta"),
             numpy_helper.from_array((0.2 * rng.standard_normal((H, H))).astype(np.float32), "W")]
    nodes = [helper.make_node("Add", ["x", "pos"], ["h"]),
             helper.make_node("LayerNormalization", ["h", "gamma", "beta"], ["ln"], axis=-1, epsilon=1e-5),
             helper.make_node("MatMul", ["ln", "W"], ["mm"]),
             helper.make_node("Add", ["h", "mm"], ["out"])]
    g = helper.make_graph(nodes, "pre_ln", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", S, H])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", S, H])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("threads", [1, 2])
def test_skip_layernorm_sum_with_broadcast_skip(batch, threads):
    proto = pre_ln_embedding_block()
    m = graphopt.from_onnx(proto)
    PassManager.from_text("O2")(m)
    assert any(n.op_type == "SkipLayerNorm" for n in m.graph), "the fusion this test is about did not happen"
    x = np.random.default_rng(0).standard_normal((batch, S, H)).astype(np.float32)
    (want,) = _ort(proto, {"x": x})
    sess = graphopt.compile(m, precision="fp32", num_threads=threads)
    runs = [sess.run({"x": x})[0] for _ in range(3)]
    np.testing.assert_allclose(runs[0], want, rtol=1e-5, atol=1e-5)
    assert all(np.array_equal(runs[0], r) for r in runs[1:])


def test_layernorm_kernel_writes_sum_without_residual():
    """eltwise.h: sum_out receives s -- also when there is no residual (s = x), on every ISA."""
    from graphopt import _C

    plan = _C.Plan()
    x, gm, y, s = (plan.add_slot(1, n) for n in ("x", "gamma", "y", "sum"))
    plan.set_const(gm, np.ones(H, np.float32))
    plan.add_step("LayerNorm", "ln", [x, gm, -1, -1], [y, s], {"axis": -1}, {"epsilon": 1e-5}, [])
    plan.set_io([x], [y, s])
    plan.set_poison(True)
    xv = np.random.default_rng(2).standard_normal((4, H)).astype(np.float32)
    _, sv = plan.run([xv], 1)
    np.testing.assert_array_equal(sv, xv)


def test_check_names_the_first_diverging_node(monkeypatch):
    """A wrong kernel for one node: the check names that node (value, op), not just the output."""
    from graphopt.runtime import lowering_table

    def wrong_relu(lw, n):  # GELU where Relu was asked: wrong for negative inputs
        lw.emit("Gelu", n, [n.inputs[0]], [n.outputs[0]], iattrs={"tanh": 0})
        return True

    proto = _relu_model()
    assert check(proto, "fp32", {"x": _relu_feed()}).ok
    monkeypatch.setitem(lowering_table.LOWERING, ("", "Relu", "fp32"), wrong_relu)
    rep = check(proto, "fp32", {"x": _relu_feed()})
    assert not rep.ok
    assert rep.first is not None and rep.first.value == "r" and "Relu" in rep.first.op
    assert rep.first.max_abs > rep.first.bound
    assert "first diverging node" in str(rep) and "'r'" in str(rep)
    with pytest.raises(NativeMismatch, match="value 'r'"):
        graphopt.compile(proto, precision="fp32", check={"x": _relu_feed()})


def _relu_model() -> onnx.ModelProto:
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Mul", ["r", "x"], ["y"]),
             helper.make_node("Tanh", ["y"], ["out"])]
    g = helper.make_graph(nodes, "relu", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, [2, 8])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _relu_feed() -> np.ndarray:
    return np.linspace(-2, 2, 16, dtype=np.float32).reshape(2, 8)


def test_compile_check_true_passes_and_returns_a_session():
    sess = graphopt.compile(pre_ln_embedding_block(), precision="bf16", check=True)
    assert sess.run({"x": np.zeros((2, S, H), np.float32)})[0].shape == (2, S, H)


def test_make_feeds_ids_in_range_and_padded_masks():
    proto = helper.make_model(helper.make_graph(
        [helper.make_node("Gather", ["emb", "input_ids"], ["e"]),
         helper.make_node("Cast", ["attention_mask"], ["mf"], to=TensorProto.FLOAT),
         helper.make_node("Unsqueeze", ["mf", "ax"], ["mu"]),
         helper.make_node("Mul", ["e", "mu"], ["out"])], "emb",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", "seq", 4])],
        [numpy_helper.from_array(np.ones((37, 4), np.float32), "emb"), numpy_helper.from_array(np.array([-1]), "ax")]),
        opset_imports=[helper.make_opsetid("", 17)])
    f = make_feeds(graphopt.from_onnx(proto), batch=3, seq=12)
    assert f["input_ids"].shape == (3, 12) and f["input_ids"].max() < 37 and f["input_ids"].min() >= 0
    mask = f["attention_mask"]
    assert mask[0].all() and all(0 < mask[r].sum() < 12 for r in (1, 2))
    assert check(proto, "int8", f).ok


def test_check_cli(tmp_path, capsys, monkeypatch):
    from graphopt.cli import main
    from graphopt.runtime import lowering_table

    path = tmp_path / "relu.onnx"
    onnx.save(_relu_model(), path)
    assert main(["check", str(path), "--precision", "bf16"]) == 0
    assert "OK" in capsys.readouterr().out
    monkeypatch.setitem(lowering_table.LOWERING, ("", "Relu", "fp32"),
                        lambda lw, n: bool(lw.emit("Gelu", n, [n.inputs[0]], [n.outputs[0]], iattrs={"tanh": 0})))
    np.savez(tmp_path / "feeds.npz", x=_relu_feed())
    assert main(["check", str(path), "--json", "--feeds", str(tmp_path / "feeds.npz")]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False and data["first_diverging"]["value"] == "r"
