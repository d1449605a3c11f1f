"""Native index / small element-wise ops (csrc/runtime/ops/index.cpp) against onnxruntime:
CumSum, GatherElements, GatherND, Pad (every mode), Tile, Sign, HardSigmoid, HardSwish and
integer Abs/Neg/Clip, each as a one-node model fed at run time (nothing folds), including
negative axes and indices, int types, broadcasting-free edge shapes and empty dims; every
case must run natively (no Python fallback). Bad input raises an error naming the node."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper

import graphopt

_RNG = np.random.default_rng(0)


def _model(op: str, feeds: dict[str, np.ndarray], n_out: int = 1, opset: int = 18, consts=None, **attrs):
    consts = consts or {}
    ins = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), list(v.shape))
           for k, v in feeds.items()]
    inits = [onnx.numpy_helper.from_array(v, k) for k, v in consts.items()]
    names = list(feeds) + list(consts)
    order = attrs.pop("_order", None)
    node = helper.make_node(op, order if order is not None else names, [f"y{i}" for i in range(n_out)],
                            name=f"the_{op.lower()}", **attrs)
    et = helper.np_dtype_to_tensor_dtype(next(iter(feeds.values())).dtype)  # every op here keeps x's type
    outs = [helper.make_tensor_value_info(f"y{i}", et, None) for i in range(n_out)]
    g = helper.make_graph([node], op, ins, outs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _check(op: str, feeds: dict[str, np.ndarray], **kw):
    m = _model(op, feeds, **kw)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    want = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feeds)
    sess = graphopt.compile(m, level="O0")
    assert sess.fallbacks == [], sess.fallbacks
    got = sess.run(feeds)
    for g, w in zip(got, want):
        g = np.asarray(g)
        assert g.dtype == w.dtype and g.shape == w.shape, (g.dtype, g.shape, w.dtype, w.shape)
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)


def _ints(shape, lo=-5, hi=5, dtype=np.int64):
    return _RNG.integers(lo, hi, size=shape).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.int32, np.float64])
@pytest.mark.parametrize("axis", [0, 1, -1, -3])
@pytest.mark.parametrize("exclusive,reverse", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_cumsum(dtype, axis, exclusive, reverse):
    x = _ints((2, 3, 4)).astype(dtype)
    _check("CumSum", {"x": x, "axis": np.array(axis, np.int64)}, exclusive=exclusive, reverse=reverse)


def test_cumsum_empty_and_int32_axis():
    _check("CumSum", {"x": np.zeros((2, 0, 3), np.float32), "axis": np.array([1], np.int32)})


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.bool_, np.int8])
def test_gather_elements(axis, dtype):
    x = _ints((3, 4, 5)).astype(dtype)
    shp = [2, 3, 4]
    shp[axis] = 6  # longer than the data along the axis is allowed
    dim = x.shape[axis]
    idx = _RNG.integers(-dim, dim, size=shp).astype(np.int64)
    _check("GatherElements", {"x": x, "i": idx}, axis=axis)


def test_gather_elements_int32_indices_and_empty():
    _check("GatherElements", {"x": np.arange(6, dtype=np.float32).reshape(2, 3),
                              "i": np.array([[2, -1, 0]], np.int32)}, axis=1)
    _check("GatherElements", {"x": np.ones((2, 3), np.float32), "i": np.zeros((0, 3), np.int64)}, axis=0)


@pytest.mark.parametrize("batch_dims,xs,is_", [
    (0, (4, 5), (3, 2)), (0, (4, 5, 6), (2, 3, 1)), (0, (4, 5, 6), (2, 3)), (1, (2, 5, 6), (2, 3, 1)),
    (1, (2, 5, 6), (2, 2)), (2, (2, 3, 4, 5), (2, 3, 2, 2)), (0, (4, 0, 3), (2, 1))])
def test_gather_nd(batch_dims, xs, is_):
    x = _RNG.standard_normal(xs).astype(np.float32)
    m = is_[-1]
    dims = xs[batch_dims:batch_dims + m]
    idx = np.stack([_RNG.integers(-d, d, size=is_[:-1]) for d in dims], -1).astype(np.int64)
    _check("GatherND", {"x": x, "i": idx}, batch_dims=batch_dims)


def test_gather_nd_bool_data():
    x = _RNG.random((3, 4)) > 0.5
    _check("GatherND", {"x": x, "i": np.array([[0, 1], [2, -1]], np.int64)})


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
@pytest.mark.parametrize("pads", [[0, 1, 2, 1, 0, 2], [1, 0, 0, 0, 2, 1], [0, -1, 1, 0, 1, -1]])
def test_pad_modes(mode, pads):
    x = _RNG.standard_normal((2, 3, 4)).astype(np.float32)
    if mode == "wrap":  # pads must be constant and >= 0 for the native wrap (else onnxruntime runs it)
        m = _model("Pad", {"x": x}, consts={"pads": np.array(pads, np.int64)}, mode=mode)
        sess = graphopt.compile(m, level="O0")
        assert bool(sess.fallbacks) == (min(pads) < 0)
        want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
        np.testing.assert_allclose(sess.run({"x": x})[0], want[0], rtol=1e-6, atol=1e-6)
        return
    _check("Pad", {"x": x, "pads": np.array(pads, np.int64)}, mode=mode)


def test_pad_constant_value_axes_and_int():
    x = _ints((2, 3, 4))
    _check("Pad", {"x": x, "pads": np.array([1, 2, 0, 1], np.int64), "v": np.array(7, np.int64),
                   "axes": np.array([-1, 0], np.int64)}, mode="constant")
    f = _RNG.standard_normal((3, 4)).astype(np.float32)
    _check("Pad", {"x": f, "pads": np.array([0, 2, 0, 0], np.int64), "v": np.array(-1.5, np.float32)})
    _check("Pad", {"x": f, "pads": np.array([2, 0, 0, 0], np.int64)}, mode="reflect")


def test_pad_opset_10_attributes():
    x = _RNG.standard_normal((2, 3)).astype(np.float32)
    _check("Pad", {"x": x}, opset=10, pads=[0, 1, 1, 2], value=2.5)
    _check("Pad", {"x": x}, opset=10, pads=[1, 1, 0, 0], mode="edge")


@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.bool_, np.int32])
@pytest.mark.parametrize("xs,reps", [((2, 3), (2, 1)), ((2, 3, 1), (1, 2, 4)), ((4,), (3,)), ((2, 0), (2, 3)),
                                      ((2, 3), (0, 2))])
def test_tile(dtype, xs, reps):
    x = _ints(xs).astype(dtype)
    _check("Tile", {"x": x, "r": np.array(reps, np.int64)})


@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.int32, np.int8, np.float64, np.uint8])
def test_sign(dtype):
    x = _ints((3, 5), 0 if dtype == np.uint8 else -3, 4).astype(dtype)
    _check("Sign", {"x": x})


@pytest.mark.parametrize("op", ["Abs", "Neg"])
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int8, np.int16])
def test_int_abs_neg(op, dtype):
    _check(op, {"x": _ints((4, 3), -100, 100).astype(dtype)})


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int8, np.uint8])
def test_int_clip(dtype):
    x = _ints((4, 5), 0 if dtype == np.uint8 else -50, 50).astype(dtype)
    lo, hi = np.array(3 if dtype == np.uint8 else -7, dtype), np.array(20, dtype)
    _check("Clip", {"x": x, "lo": lo, "hi": hi})
    _check("Clip", {"x": x, "hi": hi}, _order=["x", "", "hi"])
    _check("Clip", {"x": x, "lo": lo})


def test_hard_sigmoid_and_swish():
    x = np.concatenate([np.linspace(-5, 5, 41, dtype=np.float32), np.array([np.nan, np.inf, -np.inf], np.float32)])
    _check("HardSigmoid", {"x": x.reshape(-1, 1)}, alpha=0.3, beta=0.4)
    _check("HardSigmoid", {"x": x})
    _check("HardSwish", {"x": x.reshape(1, -1)})


@pytest.mark.parametrize("op,feeds,attrs,what", [
    ("GatherElements", {"x": np.ones((2, 3), np.float32), "i": np.array([[3, 0, 0]], np.int64)}, {"axis": 1},
     "out of range"),
    ("GatherND", {"x": np.ones((2, 3), np.float32), "i": np.array([[0, 5]], np.int64)}, {}, "out of range"),
    ("CumSum", {"x": np.ones((2, 3), np.float32), "axis": np.array(2, np.int64)}, {}, "out of range"),
    ("Tile", {"x": np.ones((2, 3), np.float32), "r": np.array([2], np.int64)}, {}, "repeats"),
    ("Pad", {"x": np.ones((2, 3), np.float32), "pads": np.array([1, 1], np.int64)}, {}, "pads"),
])
def test_bad_input_names_the_node(op, feeds, attrs, what):
    sess = graphopt.compile(_model(op, feeds, **attrs), level="O0")
    assert sess.fallbacks == []
    with pytest.raises(Exception) as ei:
        sess.run(feeds)
    msg = str(ei.value)
    assert f"the_{op.lower()}" in msg and what in msg, msg
