"""Dynamic int8: each row (token) / image has its own activation scale.

One poisoned sample (an outlier, an Inf, a NaN) must not change the other
samples' outputs, and its own output must be NaN, never finite numbers.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

import graphopt

RNG = np.random.default_rng(1)


@functools.lru_cache(maxsize=None)
def _linear_model():
    w = nh.from_array(RNG.standard_normal((32, 48)).astype(np.float32) * 0.2, "w")
    b = nh.from_array(RNG.standard_normal(48).astype(np.float32), "b")
    g = h.make_graph([h.make_node("MatMul", ["x", "w"], ["m"]), h.make_node("Add", ["m", "b"], ["y"])], "lin",
                     [h.make_tensor_value_info("x", T.FLOAT, ["batch", 5, 32])],
                     [h.make_tensor_value_info("y", T.FLOAT, ["batch", 5, 48])], [w, b])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)])


@functools.lru_cache(maxsize=None)
def _ln_linear_model():
    """LayerNorm -> the Linear of _linear_model, the LayerNorm output also a graph output: the
    LayerNorm quantizes the Linear's rows in its own pass (lower.quantize_in_layernorm)."""
    lin = _linear_model().graph
    g = nh.from_array((RNG.standard_normal(32) + 1).astype(np.float32), "g")
    be = nh.from_array(RNG.standard_normal(32).astype(np.float32), "be")
    nodes = [h.make_node("LayerNormalization", ["x", "g", "be"], ["n"], axis=-1),
             h.make_node("MatMul", ["n", "w"], ["m"]), h.make_node("Add", ["m", "b"], ["y"])]
    gr = h.make_graph(nodes, "ln_lin", [h.make_tensor_value_info("x", T.FLOAT, ["batch", 5, 32])],
                      [lin.output[0], h.make_tensor_value_info("n", T.FLOAT, ["batch", 5, 32])],
                      [*lin.initializer, g, be])
    return h.make_model(gr, opset_imports=[h.make_opsetid("", 17)])


@functools.lru_cache(maxsize=None)
def _conv_model():
    w = nh.from_array(RNG.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3, "w")
    b = nh.from_array(RNG.standard_normal(8).astype(np.float32), "b")
    g = h.make_graph([h.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), h.make_node("Relu", ["c"], ["y"])],
                     "conv", [h.make_tensor_value_info("x", T.FLOAT, ["batch", 3, 10, 10])],
                     [h.make_tensor_value_info("y", T.FLOAT, ["batch", 8, 10, 10])], [w, b])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)])


@functools.lru_cache(maxsize=None)
def _session(kind: str):
    model = {"linear": _linear_model, "ln-linear": _ln_linear_model, "conv": _conv_model}[kind]()
    sess = graphopt.compile(model, precision="int8", num_threads=1)
    assert "int8" in str(sess.summary()).lower()
    return sess


def _x(kind: str) -> np.ndarray:
    shape = (2, 3, 10, 10) if kind == "conv" else (2, 5, 32)
    return np.random.default_rng(2).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("kind", ["linear", "ln-linear", "conv"])
@pytest.mark.parametrize("poison", [255.0, np.inf, -np.inf, np.nan])
def test_poisoned_sample_does_not_touch_the_others(kind: str, poison: float) -> None:
    sess = _session(kind)
    x = _x(kind)
    clean = sess.run({"x": x})[0]
    bad = x.copy()
    bad[0].reshape(-1)[3] = poison  # sample 0, token 0 (linear) / one pixel of image 0 (conv)
    got = sess.run({"x": bad})[0]
    np.testing.assert_array_equal(got[1], clean[1])  # bit-identical: sample 1 has its own scale
    if kind != "conv":
        np.testing.assert_array_equal(got[0, 1:], clean[0, 1:])  # ... and so does every other token
    if not np.isfinite(poison):
        hit = got[0] if kind == "conv" else got[0, 0]
        assert np.isnan(hit).all(), "a non-finite input turned into finite output"


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_per_row_scales_track_fp32(kind: str) -> None:
    """Rows of very different magnitude: each keeps int8 accuracy (a shared scale would zero the small one)."""
    x = _x(kind)
    x[0] *= 100.0
    want = graphopt.compile(_linear_model() if kind == "linear" else _conv_model(), num_threads=1).run({"x": x})[0]
    got = _session(kind).run({"x": x})[0]
    for i in range(2):
        cos = float(np.dot(got[i].ravel(), want[i].ravel()) /
                    (np.linalg.norm(got[i]) * np.linalg.norm(want[i])))
        assert cos > 0.999, (i, cos)


@pytest.mark.parametrize("threads", [1, 2])
def test_layernorm_quantized_rows_equal_the_linears_own(threads: int) -> None:
    """The rows a LayerNorm quantizes for a dynamic int8 Linear are the bits the Linear would
    quantize from the LayerNorm's fp32 output itself: same outputs, at 1 and 2 threads."""
    fused = graphopt.compile(_ln_linear_model(), precision="int8", num_threads=threads)
    assert any("rows quantized by the LayerNorm" in r[2] for r in fused.summary().rows)
    x = _x("ln-linear") * 3
    y, n = fused.run({"x": x})
    alone = graphopt.compile(_linear_model(), precision="int8", num_threads=threads)
    np.testing.assert_array_equal(y, alone.run({"x": n})[0])
    np.testing.assert_array_equal(y, _session("ln-linear").run({"x": x})[0])


@functools.lru_cache(maxsize=None)
def _ffn_model(expose_hidden: bool):
    """MatMul+Add+GELU -> MatMul+Add (an FFN); with ``expose_hidden`` the GELU output is also a graph
    output, so the first GEMM keeps its fp32 output (no chaining)."""
    rng = np.random.default_rng(4)  # the same weights in both variants
    w1 = nh.from_array(rng.standard_normal((32, 96)).astype(np.float32) * 0.2, "w1")
    b1 = nh.from_array(rng.standard_normal(96).astype(np.float32) * 0.1, "b1")
    w2 = nh.from_array(rng.standard_normal((96, 24)).astype(np.float32) * 0.1, "w2")
    b2 = nh.from_array(rng.standard_normal(24).astype(np.float32), "b2")
    nodes = [h.make_node("MatMul", ["x", "w1"], ["m1"]), h.make_node("Add", ["m1", "b1"], ["a1"]),
             h.make_node("Gelu", ["a1"], ["hid"]), h.make_node("MatMul", ["hid", "w2"], ["m2"]),
             h.make_node("Add", ["m2", "b2"], ["y"])]
    outs = [h.make_tensor_value_info("y", T.FLOAT, ["batch", 300, 24])]
    if expose_hidden:
        outs.append(h.make_tensor_value_info("hid", T.FLOAT, ["batch", 300, 96]))
    g = h.make_graph(nodes, "ffn", [h.make_tensor_value_info("x", T.FLOAT, ["batch", 300, 32])], outs, [w1, b1, w2, b2])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 20)])


@pytest.mark.parametrize("threads", [1, 2])
def test_gemm_quantized_rows_equal_the_next_gemms_own(threads: int) -> None:
    """A dynamic int8 GEMM feeding another quantizes its output rows itself (in L2-sized row chunks):
    the bits of the unchained plan, at 1 and 2 threads; a poisoned row still comes out NaN."""
    chained = graphopt.compile(_ffn_model(False), precision="int8", num_threads=threads)
    assert any("u8 rows on their own grids" in r[2] for r in chained.summary().rows)
    plain = graphopt.compile(_ffn_model(True), precision="int8", num_threads=threads)
    assert not any("u8 rows on their own grids" in r[2] for r in plain.summary().rows)
    x = np.random.default_rng(3).standard_normal((2, 300, 32)).astype(np.float32)  # 600 rows: 5 chunks
    x[1, 250, 7] = np.nan
    y = chained.run({"x": x})[0]
    np.testing.assert_array_equal(y, plain.run({"x": x})[0])
    assert np.isnan(y[1, 250]).all() and np.isfinite(np.delete(y.reshape(-1, 24), 550, axis=0)).all()
