"""fuse-sdpa on every export form of the zoo's decoders: every attention core becomes one
graphopt::Attention (causal from the recognised mask, grouped KV heads kept grouped, padding as the
key-padding input), the mask subgraph dies, and the fused graph lowered to onnxruntime computes
what the exported graph computes."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import graphopt  # noqa: E402
from graphopt.ops import lower_to_onnxruntime  # noqa: E402
from graphopt.pm import PassManager  # noqa: E402
from graphopt.testing.zoo import export  # noqa: E402

pytestmark = [pytest.mark.e2e]

# model -> grouped KV heads (kv_num_heads > 0)
DECODERS = {"gpt2": False, "llama": True, "mistral": True, "qwen2": True}


def _run(model_or_path, feeds):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    src = str(model_or_path) if not isinstance(model_or_path, graphopt.ir.Model) else \
        graphopt.to_onnx(model_or_path).SerializeToString()
    sess = ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    return sess.run(None, {k: v for k, v in feeds.items() if k in names})[0]


@pytest.mark.parametrize("masked", [False, True], ids=["ids-only", "with-mask"])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("name", sorted(DECODERS))
def test_fuse_sdpa_dynamo_forms(name, attn, masked):
    """With an attention_mask the mask is causal + padding: canonicalize-decoder-mask proves it and makes it
    ``causal`` + the attention_mask (GPT-2: its view(batch, -1)) as the key-padding input (no [B, 1, S, S]
    bias). Without one, transformers builds a packed-sequence mask (document ids from a CumSum of the
    position steps) that the prover does not cover: it stays the bias -- never causal on probing alone."""
    e = export(name, attn, "dynamo", inputs=None if masked else ("input_ids",))
    if e.error:
        pytest.skip(e.error)
    grouped = DECODERS[name]
    m = graphopt.load(e.path)
    PassManager.from_text("O2")(m)
    fused = [n for n in m.graph if n.op == "graphopt::Attention"]
    assert len(fused) == e.entry.attention_blocks
    for n in fused:
        assert int(n.attr("causal")) == int(masked)
        kv = int(n.attr("kv_num_heads", 0))
        assert (0 < kv < int(n.attr("num_heads"))) == grouped
        assert kv == 0 or n.inputs[1].shape[1] == kv, "K keeps its KV heads (repeat_kv dropped)"
        kpm = n.inputs[3] if len(n.inputs) > 3 else None
        reads_mask = kpm is not None and (kpm.name == "attention_mask" or kpm.producer().inputs[0].name == "attention_mask")
        assert reads_mask == masked
        has_bias = len(n.inputs) >= 5 and n.inputs[4] is not None
        assert has_bias != masked, "a proved mask becomes causal (+ the key-padding input), no bias"
        if name == "mistral" and masked:
            assert int(n.attr("window", 0)) == 4096, "Mistral's sliding window is kept"
    ops = m.graph.op_counts()
    dead = {"Softmax", "GatherND", "CumSum", "Trilu"} if masked else {"Softmax"}  # a proved mask's subgraph is gone
    assert not dead & set(ops), ops
    feeds = e.feeds()
    ref = _run(e.path, feeds)
    lower_to_onnxruntime(m)
    np.testing.assert_allclose(_run(m, feeds), ref, atol=2e-5, rtol=1e-4)


def _sdpa_graph(mask: str):
    """Q, K, V [1, 4, S, 8] inputs; scores * 0.5 (+ a [1, 4, S, S] bias input | + a Trilu causal mask)."""
    from onnx import TensorProto, helper

    S = "S"
    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4, S, 8]) for n in "qkv"]
    nodes = [helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
             helper.make_node("MatMul", ["q", "kt"], ["qk"]),
             helper.make_node("Mul", ["qk", "half"], ["s"])]
    inits = [helper.make_tensor("half", TensorProto.FLOAT, [], [0.5])]
    if mask == "bias":
        ins.append(helper.make_tensor_value_info("bias", TensorProto.FLOAT, [1, 4, S, S]))
        nodes.append(helper.make_node("Add", ["s", "bias"], ["sm"]))
    else:  # causal from the token ids' shape: Where(Trilu(ones[S, S]), 0, -inf)
        ins.append(helper.make_tensor_value_info("ids", TensorProto.INT64, [1, S]))
        nodes += [helper.make_node("Shape", ["ids"], ["qs"], start=1, end=2),
                  helper.make_node("Concat", ["qs", "qs"], ["ss"], axis=0),
                  helper.make_node("ConstantOfShape", ["ss"], ["ones"],
                                   value=helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])),
                  helper.make_node("Trilu", ["ones"], ["tri"], upper=0),
                  helper.make_node("Cast", ["tri"], ["keep"], to=TensorProto.BOOL),
                  helper.make_node("Where", ["keep", "zero", "ninf"], ["m2"]),
                  helper.make_node("Unsqueeze", ["m2", "ax01"], ["m4"]),
                  helper.make_node("Add", ["s", "m4"], ["sm"])]
        inits += [helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
                  helper.make_tensor("ninf", TensorProto.FLOAT, [], [float("-inf")]),
                  helper.make_tensor("ax01", TensorProto.INT64, [2], [0, 1])]
    nodes += [helper.make_node("Softmax", ["sm"], ["p"], axis=-1), helper.make_node("MatMul", ["p", "v"], ["y"])]
    g = helper.make_graph(nodes, "sdpa", ins, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("mask", ["bias", "causal"])
def test_mask_kinds_on_a_plain_graph(mask):
    """A Trilu-built causal mask becomes ``causal`` (proved by canonicalize-decoder-mask); an additive input
    bias stays the Bias input."""
    proto = _sdpa_graph(mask)
    m = graphopt.from_onnx(proto)
    PassManager.from_text("infer-shapes,fuse-sdpa,canonicalize-decoder-mask,remove-unused")(m)
    (n,) = [n for n in m.graph if n.op == "graphopt::Attention"]
    assert int(n.attr("causal")) == (mask == "causal")
    assert (len(n.inputs) > 4 and n.inputs[4] is not None) == (mask == "bias")
    assert float(n.attr("scale")) == 0.5
    rng = np.random.default_rng(0)
    feeds = {k: rng.standard_normal((1, 4, 9, 8)).astype(np.float32) for k in "qkv"}
    if mask == "bias":
        feeds["bias"] = rng.standard_normal((1, 4, 9, 9)).astype(np.float32)
    else:
        feeds["ids"] = np.zeros((1, 9), np.int64)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = sess.run(None, feeds)[0]
    native = graphopt.compile(m, precision="fp32", level="O0")
    assert not native.fallbacks
    np.testing.assert_allclose(np.asarray(native.run(feeds)[0]), ref, atol=2e-6, rtol=1e-5)
    lower_to_onnxruntime(m)
    np.testing.assert_allclose(_run(m, feeds), ref, atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_a_saved_fused_decoder_refuses_after_reload(name, tmp_path):
    """An O2 file writes graphopt::Attention as its standard-ONNX decomposition; loading it and running
    O2 again gives the same fused causal attention (grouped KV heads kept, the key-padding input back),
    and the same numbers."""
    e = export(name, "sdpa", "dynamo")
    if e.error:
        pytest.skip(e.error)
    m = graphopt.load(e.path)
    PassManager.from_text("O2")(m)
    first = [(int(n.attr("causal")), int(n.attr("kv_num_heads", 0)), n.inputs[3] is not None)
             for n in m.graph if n.op == "graphopt::Attention"]
    graphopt.save(m, tmp_path / "o2.onnx")
    again = graphopt.load(tmp_path / "o2.onnx")
    assert not [n for n in again.graph if n.op == "graphopt::Attention"]  # the file holds the decomposition
    PassManager.from_text("O2")(again)
    second = [(int(n.attr("causal")), int(n.attr("kv_num_heads", 0)), n.inputs[3] is not None)
              for n in again.graph if n.op == "graphopt::Attention"]
    assert second == first and len(first) == e.entry.attention_blocks and all(c == 1 and p for c, _, p in first)
    assert "Trilu" not in again.graph.op_counts()
    feeds = e.feeds()
    ref = _run(e.path, feeds)
    np.testing.assert_allclose(_run(tmp_path / "o2.onnx", feeds), ref, atol=2e-5, rtol=1e-4)
    sess = graphopt.compile(again, "fp32")
    np.testing.assert_allclose(np.asarray(sess.run(feeds)[0]), ref, atol=1e-4, rtol=1e-4)
