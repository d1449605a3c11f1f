"""NaN and +-Inf through every native kernel and precision, against onnxruntime.

ONNX semantics: NaN propagates (Relu, Clip, Max/Min, the GEMM/Conv ReLU epilogue,
exp-based ops, pooling, reductions); a non-finite input never becomes a finite,
normal-looking output. fp32 must match onnxruntime's NaN/Inf pattern exactly;
bf16 and int8 must never turn an ORT non-finite into a finite number.

Where onnxruntime itself drops NaN (MaxPool, GlobalMaxPool, ReduceMax: a NaN in
the window is ignored; ReduceMax even returns a value below the maximum, and
onnx.reference's MaxPool ignores it too), graphopt propagates it as numpy's and
PyTorch's max do, and the oracle is numpy.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

import graphopt
from graphopt import _C

RNG = np.random.default_rng(0)


def _w(*shape: int, name: str) -> onnx.TensorProto:
    return nh.from_array(RNG.standard_normal(shape).astype(np.float32) * 0.3, name)


def _model(nodes, x_shape, y_shape, inits=(), opset=17) -> onnx.ModelProto:
    g = h.make_graph(nodes, "special", [h.make_tensor_value_info("x", T.FLOAT, x_shape)],
                     [h.make_tensor_value_info("y", T.FLOAT, y_shape)], list(inits))
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)])
    m.ir_version = 10
    return m


def _unary(op, shape=(2, 3, 20), opset=17, **attrs):
    return _model([h.make_node(op, ["x"], ["y"], **attrs)], list(shape), None, opset=opset)


# name -> (model, oracle): "ort", or a numpy function where ORT ignores NaN
CASES: dict[str, tuple[onnx.ModelProto, Any]] = {
    "Relu": (_unary("Relu"), "ort"),
    "LeakyRelu": (_unary("LeakyRelu", alpha=0.1), "ort"),
    "Clip": (_model([h.make_node("Clip", ["x", "lo", "hi"], ["y"])], [2, 3, 20], None,
                    [nh.from_array(np.float32(-0.5), "lo"), nh.from_array(np.float32(0.5), "hi")]), "ort"),
    "Max": (_model([h.make_node("Max", ["x", "c"], ["y"])], [2, 3, 20], None, [_w(20, name="c")]), "ort"),
    "Min": (_model([h.make_node("Min", ["x", "c"], ["y"])], [2, 3, 20], None, [_w(20, name="c")]), "ort"),
    "Sigmoid": (_unary("Sigmoid"), "ort"),
    "Tanh": (_unary("Tanh"), "ort"),
    "Exp": (_unary("Exp"), "ort"),
    "Erf": (_unary("Erf"), "ort"),
    "Gelu": (_unary("Gelu", opset=20), "ort"),
    "Softmax": (_unary("Softmax", axis=-1), "ort"),
    "LayerNorm": (_model([h.make_node("LayerNormalization", ["x", "g", "b"], ["y"], axis=-1)], [2, 3, 20], None,
                         [_w(20, name="g"), _w(20, name="b")]), "ort"),
    # MatMul + Add + Relu fuse into one Linear: the GEMM with its bias/ReLU epilogue
    "Linear+Relu": (_model([h.make_node("MatMul", ["x", "w"], ["m"]), h.make_node("Add", ["m", "b"], ["a"]),
                            h.make_node("Relu", ["a"], ["y"])], [2, 3, 20], None,
                           [_w(20, 24, name="w"), _w(24, name="b")]), "ort"),
    "Gemm+Relu": (_model([h.make_node("Gemm", ["x", "w", "b"], ["a"], transB=1), h.make_node("Relu", ["a"], ["y"])],
                         [6, 20], None, [_w(24, 20, name="w"), _w(24, name="b")]), "ort"),
    "Conv+Relu": (_model([h.make_node("Conv", ["x", "w", "b"], ["a"], pads=[1, 1, 1, 1]),
                          h.make_node("Relu", ["a"], ["y"])], [2, 3, 6, 6], None,
                         [_w(8, 3, 3, 3, name="w"), _w(8, name="b")]), "ort"),
    "MaxPool": (_unary("MaxPool", shape=(2, 3, 6, 6), kernel_shape=[2, 2], strides=[2, 2]),
                lambda x: x.reshape(2, 3, 3, 2, 3, 2).max(axis=(3, 5))),
    "AveragePool": (_unary("AveragePool", shape=(2, 3, 6, 6), kernel_shape=[2, 2], strides=[2, 2]), "ort"),
    "GlobalMaxPool": (_unary("GlobalMaxPool", shape=(2, 3, 6, 6)), lambda x: x.max(axis=(2, 3), keepdims=True)),
    "ReduceMax": (_unary("ReduceMax", axes=[-1], keepdims=0), lambda x: x.max(axis=-1)),
}
GEMM_CASES = ("Linear+Relu", "Gemm+Relu", "Conv+Relu")
# Each ISA's code path (scalar, AVX2, the best this CPU has) for the kernels with vector code.
LEVELS = ["scalar", "avx2", "avx512", "avx512_vnni", "avx512_bf16", "amx"]
ISAS = [lv for lv in ("scalar", "avx2") if LEVELS.index(lv) < LEVELS.index(_C.isa_available())] + ["best"]
VECTOR_CASES = GEMM_CASES + ("Relu", "Softmax", "Exp", "Gelu", "LayerNorm")
PARAMS = [(c, p, i) for c in CASES for p in ("fp32", "bf16", "int8") for i in ISAS
          if (p == "fp32" or c in GEMM_CASES) and (i == "best" or c in VECTOR_CASES)]


@contextlib.contextmanager
def _isa(level: str) -> Iterator[None]:
    before = _C.isa_selected()
    _C.set_max_isa(_C.isa_available() if level == "best" else level)
    try:
        yield
    finally:
        _C.set_max_isa(before)


@functools.lru_cache(maxsize=None)
def _session(case: str, precision: str, isa: str = "best") -> graphopt.runtime.session.Session:
    with _isa(isa):  # weights are packed for the ISA in effect
        return graphopt.compile(CASES[case][0], precision=precision, num_threads=1)


@functools.lru_cache(maxsize=None)
def _oracle(case: str):
    model, kind = CASES[case]
    if kind != "ort":
        return kind
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return lambda x: sess.run(None, {"x": x})[0]


def _shape(case: str) -> tuple[int, ...]:
    return tuple(d.dim_value for d in CASES[case][0].graph.input[0].type.tensor_type.shape.dim)


SPECIAL = st.sampled_from([np.nan, np.inf, -np.inf])


@pytest.mark.parametrize("case,precision,isa", PARAMS)
@settings(max_examples=8)
@given(data=st.data())
def test_special_values_follow_onnx(case: str, precision: str, isa: str, data: st.DataObject) -> None:
    shape = _shape(case)
    x = np.random.default_rng(data.draw(st.integers(0, 2**16))).standard_normal(shape).astype(np.float32)
    flat = x.reshape(-1)
    for i in data.draw(st.lists(st.integers(0, flat.size - 1), min_size=1, max_size=4, unique=True)):
        flat[i] = data.draw(SPECIAL)
    want = _oracle(case)(x)
    with _isa(isa):
        got = _session(case, precision, isa).run({"x": x})[0]
    assert got.shape == want.shape
    bad_want = ~np.isfinite(want)
    # never a plausible-looking number where ONNX gives NaN/Inf
    assert not np.any(np.isfinite(got) & bad_want), f"{case} {precision}: non-finite became finite"
    if precision == "fp32":
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{case}: NaN pattern")
        np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want), err_msg=f"{case}: +Inf pattern")
        np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want), err_msg=f"{case}: -Inf pattern")
        ok = np.isfinite(want)
        np.testing.assert_allclose(got[ok], want[ok], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", ["Relu", "Clip", "Linear+Relu", "Conv+Relu"])
def test_all_nan_input_gives_nan_not_zero(case: str) -> None:
    """The issue's probe: an all-NaN image/batch came out all zeros (or Clip's bound)."""
    x = np.full(_shape(case), np.nan, np.float32)
    for precision in ("fp32", "bf16", "int8") if case in GEMM_CASES else ("fp32",):
        assert np.isnan(_session(case, precision).run({"x": x})[0]).all(), precision
