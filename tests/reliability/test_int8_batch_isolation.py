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
def _conv_model():
    w = nh.from_array(RNG.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3, "w")
    b = nh.from_array(RNG.standard_normal(8).astype(np.float32), "b")
    g = h.make_graph([h.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), h.make_node("Relu", ["c"], ["y"])],
                     "conv", [h.make_tensor_value_info("x", T.FLOAT, ["batch", 3, 10, 10])],
                     [h.make_tensor_value_info("y", T.FLOAT, ["batch", 8, 10, 10])], [w, b])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)])


@functools.lru_cache(maxsize=None)
def _session(kind: str):
    sess = graphopt.compile(_linear_model() if kind == "linear" else _conv_model(), precision="int8", num_threads=1)
    assert "int8" in str(sess.summary()).lower()
    return sess


def _x(kind: str) -> np.ndarray:
    shape = (2, 5, 32) if kind == "linear" else (2, 3, 10, 10)
    return np.random.default_rng(2).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("kind", ["linear", "conv"])
@pytest.mark.parametrize("poison", [255.0, np.inf, -np.inf, np.nan])
def test_poisoned_sample_does_not_touch_the_others(kind: str, poison: float) -> None:
    sess = _session(kind)
    x = _x(kind)
    clean = sess.run({"x": x})[0]
    bad = x.copy()
    bad[0].reshape(-1)[3] = poison  # sample 0, token 0 (linear) / one pixel of image 0 (conv)
    got = sess.run({"x": bad})[0]
    np.testing.assert_array_equal(got[1], clean[1])  # bit-identical: sample 1 has its own scale
    if kind == "linear":
        np.testing.assert_array_equal(got[0, 1:], clean[0, 1:])  # ... and so does every other token
    if not np.isfinite(poison):
        hit = got[0, 0] if kind == "linear" else got[0]
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
