"""Session.run on bad or unusual feeds: a clear GraphoptError or the right result, never a crash."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

import graphopt
from graphopt.errors import GraphoptError
from graphopt.runtime.session import InputError

W = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
E = np.arange(40, dtype=np.float32).reshape(10, 4)


@functools.lru_cache(maxsize=None)
def _embed(precision: str):
    """Token ids -> embedding table (Gather) -> MatMul."""
    g = h.make_graph([h.make_node("Gather", ["E", "ids"], ["e"]), h.make_node("MatMul", ["e", "W"], ["y"])], "emb",
                     [h.make_tensor_value_info("ids", T.INT64, ["b", "s"])],
                     [h.make_tensor_value_info("y", T.FLOAT, ["b", "s", 3])],
                     [nh.from_array(E, "E"), nh.from_array(W, "W")])
    return graphopt.compile(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), precision=precision)


@functools.lru_cache(maxsize=None)
def _linear(precision: str):
    g = h.make_graph([h.make_node("MatMul", ["x", "W"], ["y"])], "lin",
                     [h.make_tensor_value_info("x", T.FLOAT, ["b", 4])],
                     [h.make_tensor_value_info("y", T.FLOAT, ["b", 3])], [nh.from_array(W, "W")])
    return graphopt.compile(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), precision=precision)


PRECISIONS = ["fp32", "int8"]
IDS = np.array([[1, 2]], np.int64)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("feeds,match", [
    ({"idz": IDS}, "unknown input name"),
    ({}, "missing input"),
    ({"ids": IDS.astype(np.int32)}, "expected dtype int64, got int32"),
    ({"ids": IDS[0]}, "expected rank 2"),
    ({"ids": None}, "is None"),
    ({"ids": np.array([[10, 1]])}, "index 10 out of range"),
    ({"ids": np.array([[1, -11]])}, "index -11 out of range"),
    ({"ids": np.array([[2**40, 0]])}, "out of range"),
])
def test_bad_feeds_are_clear_errors(precision: str, feeds: dict, match: str) -> None:
    with pytest.raises(GraphoptError, match=match):
        _embed(precision).run(feeds)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_wrong_fixed_dim(precision: str) -> None:
    with pytest.raises(InputError, match="dim 1 must be 4"):
        _linear(precision).run({"x": np.zeros((2, 5), np.float32)})


@pytest.mark.parametrize("precision", PRECISIONS)
def test_negative_token_id_counts_from_the_end(precision: str) -> None:
    got = _embed(precision).run({"ids": np.array([[-1, 9]])})[0]
    np.testing.assert_array_equal(got[0, 0], got[0, 1])


X = np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("layout", ["strided", "fortran", "reversed", "big-endian", "list"])
def test_any_memory_layout_gives_the_contiguous_result(precision: str, layout: str) -> None:
    base = X[:, ::2]
    feed = {"strided": base, "fortran": np.asfortranarray(base), "reversed": base[::-1].copy()[::-1],
            "big-endian": base.astype(">f4"), "list": base.tolist()}[layout]
    want = _linear(precision).run({"x": np.ascontiguousarray(base)})[0]
    np.testing.assert_array_equal(_linear(precision).run({"x": feed})[0], want)
