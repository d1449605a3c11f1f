"""Every graphopt op: numpy reference == onnxruntime lowering == standard-ONNX decomposition."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

import graphopt
from graphopt.testing.attention import attention_case
from graphopt.errors import UnsupportedError
from graphopt.ir import DType, Graph, Model, Node, TensorType
from graphopt.ops import OPS, decompose_all, get_op, lower_to_onnxruntime, reference

RNG = np.random.default_rng(0)


def _f32(*shape: int, scale: float = 1.0) -> np.ndarray:
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def _model(op: str, inputs: dict, consts: dict, attrs: dict, order: list, num_outputs: int = 1,
           opset: int = 17) -> Model:
    """One graphopt node; ``order`` lists input names (None = omitted), inputs are graph inputs, consts initializers."""
    g = Graph("g")
    vals = {}
    for name, arr in inputs.items():
        vals[name] = g.add_input(name, TensorType(DType.from_numpy(arr.dtype), tuple(arr.shape)))
    for name, arr in consts.items():
        vals[name] = g.add_initializer(name, arr)
    n = g.append(Node(op, [None if k is None else vals[k] for k in order], attrs, domain="graphopt",
                      num_outputs=num_outputs, name="fused"))
    g.outputs = list(n.outputs)
    for i, o in enumerate(n.outputs):
        o.name = f"y{i}"
    m = Model(g, opset_imports={"": opset, "graphopt": 1})
    graphopt.infer_shapes(m)
    return m


def _copy(m: Model) -> Model:
    return graphopt.from_onnx(graphopt.to_onnx(m))


def _run(m: Model, feeds: dict) -> list:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(graphopt.to_onnx(m).SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _check(op: str, inputs: dict, consts: dict, attrs: dict, order: list, *, num_outputs: int = 1,
           opset: int = 17, atol: float = 1e-5, rtol: float = 1e-5) -> None:
    m = _model(op, inputs, consts, attrs, order, num_outputs, opset)
    args = [None if k is None else {**inputs, **consts}[k] for k in order]
    want = reference(op, args, **attrs)
    lowered, decomposed = _copy(m), _copy(m)
    assert lower_to_onnxruntime(lowered) == 1
    assert decompose_all(decomposed) == 1
    assert all(n.domain != "graphopt" for n in lowered.graph)
    assert all(n.domain == "" for n in decomposed.graph), "decomposition must use standard ONNX only"
    assert "graphopt" not in decomposed.opset_imports
    for label, mm in (("onnxruntime lowering", lowered), ("decomposition", decomposed)):
        mm.verify()
        got = _run(mm, inputs)
        for i, (g, w) in enumerate(zip(got, want)):
            np.testing.assert_allclose(g, w, atol=atol, rtol=rtol, err_msg=f"{op} {label} output {i}")


@pytest.mark.parametrize("approx", ["none", "tanh"])
@pytest.mark.parametrize("opset", [17, 20])
def test_gelu(approx, opset):
    _check("Gelu", {"x": _f32(2, 3, 16, scale=3)}, {}, {"approximate": approx}, ["x"], opset=opset)


@pytest.mark.parametrize("approx", ["none", "tanh"])
def test_bias_gelu(approx):
    _check("BiasGelu", {"x": _f32(2, 5, 32, scale=2)}, {"b": _f32(32)}, {"approximate": approx}, ["x", "b"])


@pytest.mark.parametrize("act,params", [("", []), ("Relu", []), ("Sigmoid", []), ("Tanh", []),
                                        ("LeakyRelu", [0.1]), ("Clip", [-0.5, 0.6]), ("HardSigmoid", [0.3, 0.4]),
                                        ("Gelu", []), ("FastGelu", [])])
def test_linear(act, params):
    attrs = {"activation": act, "activation_params": params} if act else {}
    _check("Linear", {"x": _f32(2, 7, 24)}, {"w": _f32(24, 40, scale=0.2), "b": _f32(40)}, attrs, ["x", "w", "b"])


def test_linear_without_bias():
    _check("Linear", {"x": _f32(3, 24)}, {"w": _f32(24, 8)}, {"activation": "Relu"}, ["x", "w"])


@pytest.mark.parametrize("beta,bias", [(True, True), (True, False), (False, True)])
@pytest.mark.parametrize("opset", [13, 17])
def test_skip_layer_norm(beta, bias, opset):
    h = 48
    consts = {"g": _f32(h), "beta": _f32(h), "bias": _f32(h)}
    order = ["x", "s", "g", "beta" if beta else None, "bias" if bias else None]
    while order[-1] is None:
        order.pop()
    _check("SkipLayerNorm", {"x": _f32(2, 5, h), "s": _f32(2, 5, h)}, consts, {"epsilon": 1e-6}, order,
           num_outputs=2, opset=opset)


@pytest.mark.parametrize("segment,positions,beta", [(True, True, True), (False, True, True), (True, False, True),
                                                    (False, False, False)])
def test_embed_layer_norm(segment, positions, beta):
    b, s, h = 2, 7, 32
    inputs = {"ids": RNG.integers(0, 50, (b, s)).astype(np.int64)}
    consts = {"word": _f32(50, h), "pos": _f32(16, h), "seg": _f32(2, h), "g": _f32(h), "beta": _f32(h)}
    if segment:
        inputs["tt"] = RNG.integers(0, 2, (b, s)).astype(np.int64)
    if positions:
        inputs["pid"] = np.arange(s, dtype=np.int64)[None, ::-1].copy()  # not the default 0..S-1
    order = ["ids", "tt" if segment else None, "word", "pos", "seg" if segment else None, "g",
             "beta" if beta else None, "pid" if positions else None]
    while order[-1] is None:
        order.pop()
    _check("EmbedLayerNorm", inputs, consts, {"epsilon": 1e-12}, order)


@pytest.mark.parametrize("mask", ["none", "bias", "padding", "both", "key_bias"])
def test_multi_head_attention(mask):
    b, s, hin, h, n = 2, 6, 32, 32, 4
    inputs = {"x": _f32(b, s, hin)}
    consts = {"w": _f32(hin, 3 * h, scale=0.3), "bqkv": _f32(3 * h, scale=0.1)}
    order = ["x", "w", "bqkv"]
    if mask in ("padding", "both"):
        kpm = np.ones((b, s), np.int64)
        kpm[1, 4:] = 0
        inputs["kpm"] = kpm
        order.append("kpm")
    if mask in ("bias", "both", "key_bias"):
        if mask != "both":
            order.append(None)
        ab = np.zeros((b, 1, 1 if mask == "key_bias" else s, s), np.float32)
        ab[0, :, :, 5] = np.finfo(np.float32).min  # BERT/DistilBERT exports' additive mask value
        inputs["ab"] = ab
        order.append("ab")
    _check("MultiHeadAttention", inputs, consts, {"num_heads": n}, order, atol=2e-5, rtol=1e-4)


def test_multi_head_attention_explicit_scale():
    consts = {"w": _f32(16, 48, scale=0.3), "bqkv": _f32(48)}
    _check("MultiHeadAttention", {"x": _f32(1, 5, 16)}, consts, {"num_heads": 2, "scale": 0.3},
           ["x", "w", "bqkv"], atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("act,params", [("", []), ("Relu", []), ("Clip", [0.0, 6.0]), ("LeakyRelu", [0.2]),
                                        ("Sigmoid", []), ("Gelu", [])])
@pytest.mark.parametrize("conv", [{"pads": [1, 1, 1, 1]}, {"strides": [2, 2], "group": 2},
                                  {"dilations": [2, 1], "pads": [0, 1, 2, 0]}])
def test_fused_conv(act, params, conv):
    group = conv.get("group", 1)
    attrs = {**conv, "activation": act, "activation_params": params}
    _check("FusedConv", {"x": _f32(2, 4, 9, 8)}, {"w": _f32(6, 4 // group, 3, 3), "b": _f32(6)}, attrs,
           ["x", "w", "b"], atol=1e-4, rtol=1e-4)



@pytest.mark.parametrize("layout", ["bnsd", "bsh"])
@pytest.mark.parametrize("nkv", [4, 2, 1])
@pytest.mark.parametrize("causal", [0, 1])
@pytest.mark.parametrize("mask", ["none", "padding", "bias", "both"])
def test_attention(layout, nkv, causal, mask):
    inputs, attrs, order = attention_case(layout, nkv, causal, mask, rng=RNG)
    _check("Attention", inputs, {}, attrs, order, atol=2e-5, rtol=1e-4)


def test_attention_cross_lengths_and_scale():
    inputs, attrs, order = attention_case("bnsd", 2, 1, "none", sq=3, sk=7, rng=RNG)
    _check("Attention", inputs, {}, {**attrs, "scale": 0.2}, order, atol=2e-5, rtol=1e-4)


def test_every_op_has_a_spec_and_is_tested():
    for name, op in OPS.items():
        assert op.spec.startswith(f"graphopt::{name}("), name
    assert set(OPS) == {"Gelu", "BiasGelu", "Linear", "SkipLayerNorm", "EmbedLayerNorm", "MultiHeadAttention",
                        "FusedConv", "RMSNorm", "SkipRMSNorm", "Silu", "SiluMul", "RotaryEmbedding", "Attention"}


def test_shape_rules_fill_types():
    m = _model("MultiHeadAttention", {"x": _f32(2, 5, 16)}, {"w": _f32(16, 48), "bqkv": _f32(48)},
               {"num_heads": 4}, ["x", "w", "bqkv"])
    assert m.graph.outputs[0].shape == (2, 5, 16)


def test_bad_input_names_the_node():
    with pytest.raises(UnsupportedError, match="unknown graphopt op"):
        get_op("NoSuchOp")
    m = _model("Linear", {"x": _f32(2, 4)}, {"w": _f32(4, 3)}, {"activation": "Swish"}, ["x", "w"])
    with pytest.raises(UnsupportedError, match="fused.*unknown activation 'Swish'"):
        lower_to_onnxruntime(m)
    with pytest.raises(UnsupportedError, match="required attribute"):
        reference("MultiHeadAttention", [_f32(1, 2, 4), _f32(4, 12), None])
    m = _model("MultiHeadAttention", {"x": _f32(1, 3, 12)}, {"w": _f32(12, 36)}, {"num_heads": 5}, ["x", "w"])
    with pytest.raises(UnsupportedError, match="not divisible by num_heads=5"):
        decompose_all(m)


# --- decoder ops (graphopt/ops/decoder.py) ----------------------------------------------

@pytest.mark.parametrize("opset", [13, 18, 23])
def test_rms_norm(opset):
    _check("RMSNorm", {"x": _f32(2, 5, 48, scale=3)}, {"g": _f32(48)}, {"epsilon": 1e-6}, ["x", "g"], opset=opset)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("opset", [13, 18])
def test_skip_rms_norm(bias, opset):
    consts = {"g": _f32(48), "bias": _f32(48)}
    _check("SkipRMSNorm", {"x": _f32(2, 5, 48), "s": _f32(2, 5, 48)}, consts, {"epsilon": 1e-5},
           ["x", "s", "g"] + (["bias"] if bias else []), num_outputs=2, opset=opset)


@pytest.mark.parametrize("opset", [13, 18])
def test_silu_and_silu_mul(opset):
    _check("Silu", {"x": _f32(2, 5, 24, scale=4)}, {}, {}, ["x"], opset=opset)
    _check("SiluMul", {"x": _f32(2, 5, 2 * 40, scale=4)}, {}, {}, ["x"], opset=opset)


@pytest.mark.parametrize("opset", [13, 18])
def test_rotary_embedding(opset):
    ang = RNG.random((2, 1, 7, 16)) * 6
    _check("RotaryEmbedding", {"x": _f32(2, 3, 7, 16), "cos": np.cos(ang).astype(np.float32),
                               "sin": np.sin(ang).astype(np.float32)}, {}, {}, ["x", "cos", "sin"], opset=opset)
