"""The decoder kernels (RMSNorm + residual and its sum, SiLU, SiluMul, rotary) through the native
runtime, against the numpy references of the graphopt ops, on every ISA path and ragged sizes."""

from __future__ import annotations

import numpy as np
import onnx
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

import graphopt
from graphopt.ops import reference

PROFILE = settings.get_profile("kernels")
F = TensorProto.FLOAT


def _model(op: str, inputs: list[tuple[str, tuple]], outputs: list[tuple[str, tuple]],
           inits: dict[str, np.ndarray] | None = None, **attrs) -> graphopt.Model:
    node = helper.make_node(op, [n for n, _ in inputs] + list(inits or {}), [n for n, _ in outputs], domain="graphopt",
                            **attrs)
    g = helper.make_graph([node], "k", [helper.make_tensor_value_info(n, F, s) for n, s in inputs],
                          [helper.make_tensor_value_info(n, F, s) for n, s in outputs],
                          [onnx.numpy_helper.from_array(v, k) for k, v in (inits or {}).items()])
    mp = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("graphopt", 1)])
    return graphopt.from_onnx(mp)


def _run(m: graphopt.Model, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    sess = graphopt.compile(m)
    assert not sess.summary().fallbacks
    return sess.run(feeds)


ROWS = st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple)


@PROFILE
@given(lead=ROWS, n=st.integers(1, 300), seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([1e-3, 1.0, 300.0]),
       with_sum=st.booleans())
def test_skip_rmsnorm(eltwise_isa: str, lead: tuple, n: int, seed: int, scale: float, with_sum: bool) -> None:
    rng = np.random.default_rng(seed)
    shape = lead + (n,)
    x = (rng.standard_normal(shape) * scale).astype(np.float32)
    r = (rng.standard_normal(shape) * scale).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    outs = [("y", shape)] + ([("s", shape)] if with_sum else [])
    m = _model("SkipRMSNorm", [("x", shape), ("r", shape)], outs, {"g": g}, epsilon=1e-6)
    got = _run(m, {"x": x, "r": r})
    want = reference("SkipRMSNorm", [x, r, g], epsilon=1e-6)
    np.testing.assert_allclose(got[0], want[0], rtol=2e-5, atol=2e-5 * np.abs(g).max())
    if with_sum:
        np.testing.assert_array_equal(got[1], x + r)  # the residual stream: exactly the float32 sum


@PROFILE
@given(lead=ROWS, n=st.integers(1, 300), seed=st.integers(0, 2**31 - 1))
def test_rmsnorm(eltwise_isa: str, lead: tuple, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = lead + (n,)
    x = rng.standard_normal(shape).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    m = _model("RMSNorm", [("x", shape)], [("y", shape)], {"g": g}, epsilon=1e-5)
    np.testing.assert_allclose(_run(m, {"x": x})[0], reference("RMSNorm", [x, g], epsilon=1e-5)[0],
                               rtol=2e-5, atol=2e-5 * np.abs(g).max())


@PROFILE
@given(lead=ROWS, i=st.integers(1, 200), seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([1.0, 30.0]))
def test_silu_mul(eltwise_isa: str, lead: tuple, i: int, seed: int, scale: float) -> None:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(lead + (2 * i,)) * scale).astype(np.float32)
    x.reshape(-1)[:3] = [-200.0, 200.0, 0.0][: x.size]  # the clamped ends of exp
    m = _model("SiluMul", [("x", x.shape)], [("y", lead + (i,))])
    np.testing.assert_allclose(_run(m, {"x": x})[0], reference("SiluMul", [x])[0], rtol=1e-5, atol=1e-6)
    m = _model("Silu", [("x", x.shape)], [("y", x.shape)])
    np.testing.assert_allclose(_run(m, {"x": x})[0], reference("Silu", [x])[0], rtol=1e-5, atol=1e-6)


@PROFILE
@given(b=st.integers(1, 3), h=st.integers(1, 4), s=st.integers(1, 9), half=st.integers(1, 40),
       cos_kind=st.sampled_from(["1,1,S,D", "B,1,S,D", "S,D", "B,H,S,D"]), seed=st.integers(0, 2**31 - 1))
def test_rotary(eltwise_isa: str, b: int, h: int, s: int, half: int, cos_kind: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    d = 2 * half
    x = rng.standard_normal((b, h, s, d)).astype(np.float32)
    cshape = tuple({"B": b, "H": h, "S": s, "D": d, "1": 1}[k] for k in cos_kind.split(","))
    ang = rng.random(cshape) * 6.0
    cos, sin = np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)
    m = _model("RotaryEmbedding", [("x", x.shape), ("cos", cshape), ("sin", cshape)], [("y", x.shape)])
    got = _run(m, {"x": x, "cos": cos, "sin": sin})[0]
    np.testing.assert_allclose(got, reference("RotaryEmbedding", [x, cos, sin])[0], rtol=1e-5, atol=1e-5)
