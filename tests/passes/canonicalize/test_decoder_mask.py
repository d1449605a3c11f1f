"""canonicalize-decoder-mask: a decoder's exported mask on graphopt::Attention becomes causal=1 (+ window,
+ the [B, Sk] key-padding input) only when it is proved; a mask that merely looks similar keeps the bias.

The graphs are the dynamo exporter's vmap-built mask (Range / Unsqueeze / LessOrEqual / GatherND / And /
Where(.., 0, finfo.min)) around a plain attention core, with one detail changed per negative case.
Every case is checked against onnxruntime on left- and right-padded inputs."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import graphopt
from graphopt.ops import lower_to_onnxruntime
from graphopt.passes.canonicalize._mask_prover import prove_mask
from graphopt.pm import PassManager

B, N, S, D = "batch", 2, "seq", 8
FMIN = float(np.finfo(np.float32).min)


def _c(name: str, value, dtype=np.int64) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=onnx.numpy_helper.from_array(np.array(value, dtype), name))


def _model(case: str) -> onnx.ModelProto:
    """Q, K, V [batch, 2, seq, 8] (K/V [batch, 2, kseq, 8] for "sq_ne_sk") and attention_mask [batch, kseq|seq];
    scores + mask -> Softmax -> @ V. ``case`` picks the mask."""
    kseq = "kseq" if case == "sq_ne_sk" else S
    nodes = [
        _c("zero", 0), _c("one", 1), _c("start", 1 if case == "range_from_1" else 0),
        helper.make_node("Shape", ["q"], ["qshape"]),
        helper.make_node("Shape", ["attention_mask"], ["mshape"]),
        _c("i0", 0), _c("i2", 2), _c("i1", 1),
        helper.make_node("Gather", ["qshape", "i0"], ["nb"], axis=0),
        helper.make_node("Gather", ["qshape", "i2"], ["nq"], axis=0),
        helper.make_node("Gather", ["mshape", "i1"], ["nk"], axis=0),
        helper.make_node("Add", ["nq", "start"], ["nq_end"]),  # positions start .. start + Sq - 1
        helper.make_node("Range", ["start", "nq_end", "one"], ["qi"]),
        helper.make_node("Range", ["zero", "nk", "one"], ["ki"]),
        helper.make_node("Range", ["zero", "nb", "one"], ["bi"]),
        _c("ax013", [0, 1, 3]), _c("ax012", [0, 1, 2]), _c("ax123", [1, 2, 3]), _c("axm1", [-1]),
        helper.make_node("Unsqueeze", ["qi", "ax013"], ["q4"]),   # [1, 1, Sq, 1]
        helper.make_node("Unsqueeze", ["ki", "ax012"], ["k4"]),   # [1, 1, 1, Sk]
        helper.make_node("Unsqueeze", ["bi", "ax123"], ["b4"]),   # [B, 1, 1, 1]
    ]
    if case == "offset":  # a KV cache: query i sees keys up to i + 3
        nodes += [_c("past", 3), helper.make_node("Add", ["q4", "past"], ["qpos"]),
                  helper.make_node("LessOrEqual", ["k4", "qpos"], ["causal"])]
    elif case != "bidirectional":
        nodes += [helper.make_node("LessOrEqual", ["k4", "q4"], ["causal"])]
    if case == "window":
        nodes += [_c("w", 4), helper.make_node("Sub", ["q4", "w"], ["qw"]),
                  helper.make_node("Greater", ["k4", "qw"], ["win"]),
                  helper.make_node("And", ["causal", "win"], ["causal_w"])]
    causal = "causal_w" if case == "window" else "causal"
    nodes += [
        helper.make_node("Cast", ["attention_mask"], ["amb"], to=TensorProto.BOOL),
        helper.make_node("Max", ["b4", "k4"], ["bk"]),
        helper.make_node("Shape", ["bk"], ["bkshape"]),
        helper.make_node("Expand", ["b4", "bkshape"], ["bx"]),
        helper.make_node("Expand", ["k4", "bkshape"], ["kx"]),
        helper.make_node("Unsqueeze", ["bx", "axm1"], ["bx5"]),
        helper.make_node("Unsqueeze", ["kx", "axm1"], ["kx5"]),
        helper.make_node("Concat", ["bx5", "kx5"], ["idx"], axis=-1),
        helper.make_node("GatherND", ["amb", "idx"], ["pad"]),     # [B, 1, 1, Sk]
    ]
    if case == "bidirectional":
        nodes += [helper.make_node("Identity", ["pad"], ["keep"])]
    else:
        nodes += [helper.make_node("And", [causal, "pad"], ["keep"])]
    nodes += [_c("zf", 0.0, np.float32), _c("minf", FMIN, np.float32)]
    mask = "mask_in" if case == "mask_input" else "mask"
    if case != "mask_input":
        nodes += [helper.make_node("Where", ["keep", "zf", "minf"], ["mask"])]
    nodes += [
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
        helper.make_node("MatMul", ["q", "kt"], ["qk"]),
        _c("scale", 1.0 / np.sqrt(D), np.float32),
        helper.make_node("Mul", ["qk", "scale"], ["s"]),
        helper.make_node("Add", ["s", mask], ["sm"]),
        helper.make_node("Softmax", ["sm"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "v"], ["y"]),
    ]
    f = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("q", f, [B, N, S, D]),
              helper.make_tensor_value_info("k", f, [B, N, kseq, D]),
              helper.make_tensor_value_info("v", f, [B, N, kseq, D]),
              helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [B, kseq])]
    if case == "mask_input":
        inputs.append(helper.make_tensor_value_info("mask_in", f, [B, 1, S, kseq]))
        nodes = [n for n in nodes if "keep" not in n.output]
    g = helper.make_graph(nodes, case, inputs, [helper.make_tensor_value_info("y", f, [B, N, S, D])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 9
    return m


def _feeds(case: str, b=3, s=11) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    am = np.ones((b, s), np.int64)
    am[1, s - 3:] = 0  # right padding
    am[2, :4] = 0      # left padding: queries 0..3 see no key
    f = {"q": rng.standard_normal((b, N, s, D)).astype(np.float32),
         "k": rng.standard_normal((b, N, s, D)).astype(np.float32),
         "v": rng.standard_normal((b, N, s, D)).astype(np.float32), "attention_mask": am}
    if case == "mask_input":
        f["mask_in"] = np.where(np.tril(np.ones((s, s), bool)), 0.0, FMIN).astype(np.float32)[None, None].repeat(b, 0)
    return f


def _fused(case: str):
    m = graphopt.load(_model(case))
    PassManager.from_text("O2")(m)
    att = [n for n in m.graph if n.op_type == "Attention"]
    assert len(att) == 1
    return m, att[0]


def _parity(case: str, m) -> None:
    feeds = _feeds(case)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    ref = ort.InferenceSession(_model(case).SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    for threads in (1, 2):
        sess = graphopt.compile(m, precision="fp32", level="O0", num_threads=threads)
        y = np.asarray(sess.run(feeds)[0] if isinstance(sess.run(feeds), (list, tuple)) else sess.run(feeds))
        np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
        assert np.array_equal(y, np.asarray(sess.run(feeds)[0] if isinstance(sess.run(feeds), (list, tuple))
                                            else sess.run(feeds)))


@pytest.mark.parametrize("case,window", [("causal", 0), ("window", 4)])
def test_proved_mask_becomes_causal(case, window):
    m, n = _fused(case)
    assert int(n.attr("causal")) == 1 and int(n.attr("window", 0)) == window
    assert n.inputs[3] is not None and n.inputs[3].name == "attention_mask"
    assert len(n.inputs) < 5 or n.inputs[4] is None, "the [B, 1, S, S] bias is gone"
    assert "GatherND" not in m.graph.op_counts(), "the mask subgraph is removed"
    _parity(case, m)
    # the ONNX decomposition (causal, window, padding filler, a Where-built padding term) for onnxruntime,
    # and O2 on it again: the same proved Attention
    lower_to_onnxruntime(m)
    feeds = _feeds(case)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    run = lambda model: ort.InferenceSession(model.SerializeToString(), so,  # noqa: E731
                                             providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    np.testing.assert_allclose(run(graphopt.to_onnx(m)), run(_model(case)), rtol=1e-4, atol=1e-4)
    again = graphopt.load(graphopt.to_onnx(m))
    PassManager.from_text("O2")(again)
    (n2,) = [x for x in again.graph if x.op_type == "Attention"]
    assert int(n2.attr("causal")) == 1 and n2.inputs[3] is not None and (len(n2.inputs) < 5 or n2.inputs[4] is None)


@pytest.mark.parametrize("case", ["bidirectional", "offset", "mask_input", "range_from_1"])
def test_similar_masks_keep_their_meaning(case):
    """Not causal (padding only), a KV-cache offset, a mask read from an input, shifted positions:
    never causal=1; the numbers stay onnxruntime's."""
    m, n = _fused(case)
    assert int(n.attr("causal", 0)) == 0
    _parity(case, m)


def test_sq_ne_sk_is_not_proved():
    """Keys and queries of different (symbolic) lengths: no proof, whatever the values."""
    m = graphopt.load(_model("sq_ne_sk"))
    PassManager.from_text("O2")(m)
    att = [n for n in m.graph if n.op_type == "Attention"]
    assert all(int(n.attr("causal", 0)) == 0 for n in att)
    mask = next(v for n in m.graph for v in n.outputs if v.name == "mask") if att else None
    if mask is not None:
        assert prove_mask(mask, B, S, "kseq") is None
