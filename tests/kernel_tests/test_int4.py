"""The native int4 MatMulNBits kernel against a numpy reference and onnxruntime's own MatMulNBits:
the fp32 paths (decode and prefill panels, scalar and AVX-512; ``accuracy_level=1``) and the
int8-activation path (the default: scalar reference and AVX-512 VNNI, bit for bit equal); ragged
K and N, zero points, bias, block sizes 16-128, 1..33 rows."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import graphopt
from graphopt import _C

from .conftest import pinned, supported


@pytest.fixture(params=supported(["scalar", "avx512", "avx512_vnni"]))
def int4_isa(request: pytest.FixtureRequest) -> Iterator[str]:
    yield from pinned(request.param)


Q8_LEVELS = supported(["scalar", "avx512_vnni"])  # the ISAs with an int8-activation path
pinned_ctx = contextlib.contextmanager(pinned)


def _pack(codes: np.ndarray) -> np.ndarray:
    """[N, nb*block] 4-bit codes -> uint8 with element 2j in the low nibble."""
    return (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)


def _case(k: int, n: int, block: int, zp: bool, bias: bool, seed: int, accuracy_level: int | None = None):
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
    extra = {} if accuracy_level is None else {"accuracy_level": accuracy_level}
    node = helper.make_node("MatMulNBits", inputs, ["y"], domain="com.microsoft", K=k, N=n, bits=4, block_size=block,
                            **extra)
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
    mp, w, b = _case(k, n, block, zp, bias, seed=k * 7 + n + m, accuracy_level=1)
    x = np.random.default_rng(m).standard_normal((m, k)).astype(np.float32)
    want = x.astype(np.float64) @ w.astype(np.float64) + (0 if b is None else b)
    sess = graphopt.compile(graphopt.from_onnx(mp))
    assert not sess.summary().fallbacks
    got = sess.run({"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    ref = ort.InferenceSession(mp.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-3 * np.abs(want).max())


def test_int4_batched_input() -> None:
    mp, w, _ = _case(64, 32, 32, False, False, seed=1, accuracy_level=1)
    mp.graph.input[0].type.tensor_type.shape.dim.insert(0, helper.make_tensor_value_info("a", 1, [2]).type.tensor_type
                                                        .shape.dim[0])
    mp.graph.output[0].type.tensor_type.shape.dim.insert(0, mp.graph.input[0].type.tensor_type.shape.dim[0])
    x = np.random.default_rng(0).standard_normal((2, 3, 64)).astype(np.float32)
    sess = graphopt.compile(graphopt.from_onnx(mp))
    assert not sess.summary().fallbacks
    np.testing.assert_allclose(sess.run({"x": x})[0], x @ w, rtol=1e-4, atol=1e-4)


def _q8_reference(mp, x: np.ndarray) -> np.ndarray:
    """The int8-activation path in numpy (float64 after the int8 codes): per row and K-block the scale
    max|x| / 127 over the block, codes rint(x * 127 / max|x|), exact integer block sums, then the
    block's fp32 weight scales times its activation scale."""
    node = mp.graph.node[0]
    at = {a.name: a.i for a in node.attribute}
    k, n, block = at["K"], at["N"], at["block_size"]
    init = {t.name: numpy_helper.to_array(t) for t in mp.graph.initializer}
    nb = -(-k // block)
    q = init["q"].reshape(n, nb * block // 2)
    codes = np.stack([q & 15, q >> 4], -1).reshape(n, nb * block)[:, :k].astype(np.int64)
    z = init.get("z")
    zz = np.stack([z & 15, z >> 4], -1).reshape(n, -1)[:, :nb] if z is not None else np.full((n, nb), 8)
    s = init["s"].reshape(n, nb).astype(np.float64)
    y = np.zeros((x.shape[0], n))
    for b in range(nb):
        sl = slice(b * block, min(k, (b + 1) * block))
        amax = np.abs(x[:, sl]).max(1).astype(np.float32)
        inv = np.where(amax > 0, np.float32(127) / np.where(amax > 0, amax, 1), 0).astype(np.float32)
        xq = np.rint(x[:, sl] * inv[:, None]).astype(np.int64)
        sx = (amax / np.float32(127)).astype(np.float64)[:, None]
        y += (xq @ (codes[:, sl] - zz[:, b:b + 1].astype(np.int64)).T) * s[:, b] * sx
    if "b" in init:
        y += init["b"]
    return y


@pytest.mark.parametrize("k,n,block,zp,bias", [(64, 48, 32, False, False), (100, 37, 32, True, True),
                                               (256, 70, 16, False, True), (200, 19, 64, True, False),
                                               (384, 33, 128, True, False), (129, 50, 128, False, False)])
@pytest.mark.parametrize("m", [1, 3, 16, 33])
def test_int4_int8_activations_match_reference_and_onnxruntime(k: int, n: int, block: int, zp: bool, bias: bool,
                                                               m: int) -> None:
    """Every int8-activation ISA gives the same bits, the numpy model of the path to fp32 rounding, and
    onnxruntime's MatMulNBits (fp32 and its own int8 compute, accuracy_level 4) to int8 accuracy."""
    mp, w, b = _case(k, n, block, zp, bias, seed=k * 5 + n + m)
    x = np.random.default_rng(m + 1).standard_normal((m, k)).astype(np.float32)
    x[0, 0] = -4.0  # the row's extreme on a negative value
    exact = x.astype(np.float64) @ w.astype(np.float64) + (0 if b is None else b)
    ref = _q8_reference(mp, x)
    outs = {}
    for level in Q8_LEVELS:
        with pinned_ctx(level):
            sess = graphopt.compile(graphopt.from_onnx(mp))
            assert not sess.summary().fallbacks
            outs[level] = sess.run({"x": x})[0]
        np.testing.assert_allclose(outs[level], ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    for level in Q8_LEVELS[1:]:
        np.testing.assert_array_equal(outs[level], outs[Q8_LEVELS[0]])
    scale = np.abs(exact).max()
    got = outs[Q8_LEVELS[-1]]
    assert np.abs(got - exact).max() < 0.03 * scale
    for acc in (None, 4):
        mo = _case(k, n, block, zp, bias, seed=k * 5 + n + m, accuracy_level=acc)[0]
        peer = ort.InferenceSession(mo.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        assert np.abs(got - peer).max() < 0.03 * scale


def test_int4_accuracy_level_chooses_the_path() -> None:
    """accuracy_level 1 (fp32 compute) keeps float activations: the fp32 result; the default does not."""
    mp, w, _ = _case(64, 32, 32, False, False, seed=3)
    mf = _case(64, 32, 32, False, False, seed=3, accuracy_level=1)[0]
    x = np.random.default_rng(0).standard_normal((5, 64)).astype(np.float32)
    fp = graphopt.compile(graphopt.from_onnx(mf))
    assert "int8 activations" not in str(fp.summary())
    np.testing.assert_allclose(fp.run({"x": x})[0], x @ w, rtol=1e-4, atol=1e-4)
    q8 = graphopt.compile(graphopt.from_onnx(mp))
    assert "int8 activations" in str(q8.summary())
    # The packed copy is built by the first run and counted, on the VNNI path (not under a lower GRAPHOPT_ISA cap).
    if "avx512_vnni" in Q8_LEVELS and _C.isa_selected() in ("avx512_vnni", "avx512_bf16", "amx"):
        assert q8.summary().packed_bytes == 0
        q8.run({"x": x})
        assert q8.summary().packed_bytes >= 32 * 64 // 2


def test_int4_int8_activations_keep_nan_and_zero_rows() -> None:
    """A NaN in a row makes that row's outputs NaN (as the fp32 path); an all-zero row gives the bias."""
    mp, _, b = _case(96, 40, 32, True, True, seed=4)
    x = np.random.default_rng(0).standard_normal((6, 96)).astype(np.float32)
    x[1, 50] = np.nan
    x[3] = 0.0
    for level in Q8_LEVELS:
        with pinned_ctx(level):
            y = graphopt.compile(graphopt.from_onnx(mp)).run({"x": x})[0]
        assert np.isnan(y[1]).all() and np.isfinite(np.delete(y, 1, 0)).all()
        np.testing.assert_array_equal(y[3], b)


def test_int4_int8_activations_scale_each_k_block() -> None:
    """A block of large activations no longer coarsens the codes of the row's other blocks: with one
    outlier block (x100) the error to the exact product is well under the one-scale-per-row error."""
    mp, w, _ = _case(256, 64, 32, False, False, seed=9)
    rng = np.random.default_rng(9)
    x = rng.standard_normal((4, 256)).astype(np.float32)
    x[:, :32] *= 100
    exact = x.astype(np.float64) @ w.astype(np.float64)
    with pinned_ctx(Q8_LEVELS[-1]):  # an int8-activation path, whatever GRAPHOPT_ISA caps
        got = graphopt.compile(graphopt.from_onnx(mp)).run({"x": x})[0]
    np.testing.assert_allclose(got, _q8_reference(mp, x), rtol=1e-5, atol=1e-5 * np.abs(exact).max())
    amax = np.abs(x).max(1, keepdims=True)  # one scale per row (the path before K-block scales)
    per_row = (np.rint(x * (127 / amax)) * (amax / 127)).astype(np.float64) @ w.astype(np.float64)
    rms = lambda e: float(np.sqrt(np.mean(e ** 2)))  # noqa: E731
    assert rms(got - exact) < 0.6 * rms(per_row - exact), (rms(got - exact), rms(per_row - exact))
