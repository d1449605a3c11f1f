"""The native int4 MatMulNBits kernel (decode and prefill paths, scalar and AVX-512) against a numpy
reference and onnxruntime's own MatMulNBits: ragged K, zero points, bias, 1..17 rows."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import graphopt

from .conftest import pinned, supported


@pytest.fixture(params=supported(["scalar", "avx512"]))
def int4_isa(request: pytest.FixtureRequest) -> Iterator[str]:
    yield from pinned(request.param)


def _pack(codes: np.ndarray) -> np.ndarray:
    """[N, nb*block] 4-bit codes -> uint8 with element 2j in the low nibble."""
    return (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)


def _case(k: int, n: int, block: int, zp: bool, bias: bool, seed: int):
    rng = np.random.default_rng(seed)
    nb = -(-k // block)
    codes = rng.integers(0, 16, (n, nb * block)).astype(np.uint8)
    scales = (rng.random((n, nb)) * 0.1 + 0.01).astype(np.float32)
    zps = rng.integers(0, 16, (n, nb + nb % 2)).astype(np.uint8) if zp else None
    z = zps[:, :nb] if zps is not None else np.full((n, nb), 8, np.uint8)
    deq = (codes.astype(np.float32) - np.repeat(z, block, 1)) * np.repeat(scales, block, 1)
    w = deq[:, :k].T  # [K, N]
    inits = {"q": _pack(codes).reshape(n, nb, block // 2), "s": scales.reshape(-1)}
    inputs = ["x", "q", "s"]
    if zps is not None:
        inits["z"] = _pack(zps).reshape(-1)
        inputs.append("z")
    b = rng.standard_normal(n).astype(np.float32) if bias else None
    if b is not None:
        inputs += [""] * (4 - len(inputs)) + ["", "b"]
        inits["b"] = b
    node = helper.make_node("MatMulNBits", inputs, ["y"], domain="com.microsoft", K=k, N=n, bits=4, block_size=block)
    g = helper.make_graph([node], "nbits", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", k])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", n])],
                          [numpy_helper.from_array(v, name) for name, v in inits.items()])
    mp = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    return mp, w, b


@pytest.mark.parametrize("k,n,block,zp,bias", [(64, 48, 32, False, False), (100, 37, 32, True, True),
                                               (256, 70, 16, False, True), (384, 33, 128, True, False)])
@pytest.mark.parametrize("m", [1, 3, 4, 5, 17])
def test_int4_matmul_matches_reference_and_onnxruntime(int4_isa: str, k: int, n: int, block: int, zp: bool,
                                                       bias: bool, m: int) -> None:
    mp, w, b = _case(k, n, block, zp, bias, seed=k * 7 + n + m)
    x = np.random.default_rng(m).standard_normal((m, k)).astype(np.float32)
    want = x.astype(np.float64) @ w.astype(np.float64) + (0 if b is None else b)
    sess = graphopt.compile(graphopt.from_onnx(mp))
    assert not sess.summary().fallbacks
    got = sess.run({"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    ref = ort.InferenceSession(mp.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-3 * np.abs(want).max())


def test_int4_batched_input() -> None:
    mp, w, _ = _case(64, 32, 32, False, False, seed=1)
    mp.graph.input[0].type.tensor_type.shape.dim.insert(0, helper.make_tensor_value_info("a", 1, [2]).type.tensor_type
                                                        .shape.dim[0])
    mp.graph.output[0].type.tensor_type.shape.dim.insert(0, mp.graph.input[0].type.tensor_type.shape.dim[0])
    x = np.random.default_rng(0).standard_normal((2, 3, 64)).astype(np.float32)
    sess = graphopt.compile(graphopt.from_onnx(mp))
    assert not sess.summary().fallbacks
    np.testing.assert_allclose(sess.run({"x": x})[0], x @ w, rtol=1e-4, atol=1e-4)
