"""Symbolic dims behind shape values (graphopt.io.symbolic_shapes): what onnx's inference leaves
unknown in TorchScript exports -- a -1 in a Reshape of symbolic dims, Range(0, S), Slice to S rows,
Expand to a target read from shapes behind TorchScript's Where(Equal(t, -1), 1, t) guard."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.parser
from onnx import numpy_helper

import graphopt
from graphopt.io.symbolic_shapes import _quotient

HEAD = '<ir_version: 8, opset_import: ["" : 17]>\n'


def _shapes(text: str, **inits: np.ndarray) -> dict[str, tuple | None]:
    mp = onnx.parser.parse_model(HEAD + text)
    for k, v in inits.items():
        mp.graph.initializer.append(numpy_helper.from_array(np.asarray(v), k))
    m = graphopt.from_onnx(mp)
    graphopt.infer_shapes(m)
    return {v.name: v.shape for n in m.graph for v in n.outputs}


def test_quotient_cancels_symbols_and_divides_numbers():
    assert _quotient(("batch", 4, "seq", 16), ("seq", 16)) == "4*batch"
    assert _quotient(("4*batch", "seq", "seq"), (4, "seq", "seq")) == "batch"
    assert _quotient((6, "s"), (4,)) is None  # 6 s / 4 is not a product of dims
    assert _quotient(("a",), ("b",)) is None


def test_reshape_merging_batch_and_heads_gets_a_product_dim():
    """TorchScript's [B, N, S, d] -> [-1, S, d] (S read from a shape) and back -> [-1, N, S, d]."""
    s = _shapes("g (float[batch, 4, seq, 16] x) => (float[a, b, c, e] y) {\n"
                " sh = Shape(x)\n s2 = Gather(sh, two)\n s2u = Unsqueeze(s2, zero)\n"
                " t = Concat<axis=0>(neg, s2u, d16)\n m = Reshape(x, t)\n"
                " t2 = Concat<axis=0>(neg, four, s2u, d16)\n y4 = Reshape(m, t2)\n y = Identity(y4)\n}",
                two=np.array(2), zero=np.array([0]), neg=np.array([-1]), d16=np.array([16]), four=np.array([4]))
    assert s["m"] == ("4*batch", "seq", 16)
    assert s["y4"] == ("batch", 4, "seq", 16)


def test_relative_positions_range_slice_expand():
    """DeBERTa's relative positions: Range(0, S) -> [S, S] differences -> first S rows -> expanded to
    [B N, S, S] by a target read from shapes behind the -1 guard."""
    s = _shapes("g (float[bn, seq, 16] q) => (int64[a, b, c] y) {\n"
                " sh = Shape(q)\n n = Gather(sh, one)\n r = Range(zero_s, n, one_s)\n"
                " rq = Unsqueeze(r, ax1)\n rk = Unsqueeze(r, ax0)\n rel = Sub(rq, rk)\n"
                " nu = Unsqueeze(n, ax0)\n rows = Slice(rel, ax0, nu, ax0)\n"
                " b = Gather(sh, zero_s)\n bu = Unsqueeze(b, ax0)\n t = Concat<axis=0>(bu, nu, nu)\n"
                " eq = Equal(t, negs)\n tt = Where(eq, ones, t)\n rows3 = Unsqueeze(rows, ax0)\n"
                " ye = Expand(rows3, tt)\n y = Identity(ye)\n}",
                one=np.array(1), zero_s=np.array(0), one_s=np.array(1), ax0=np.array([0]), ax1=np.array([1]),
                negs=np.array([-1, -1, -1]), ones=np.array([1, 1, 1]))
    assert s["r"] == ("seq",)
    assert s["rows"] == ("seq", "seq")
    assert s["ye"] == ("bn", "seq", "seq")


def test_unknown_dims_stay_unknown_without_a_proof():
    """A symbol may be 1 at run time: Expand of an unknown dim by a plain symbol proves nothing;
    a Slice whose end is not the axis' dim proves nothing."""
    s = _shapes("g (float[p, q] x, float[seq, 3] z) => (float[a, b] y, float[c, e] w) {\n"
                " sz = Shape(z)\n s0 = Slice(sz, st, en)\n"
                " xs = Slice(x, zero, s0, zero)\n t = Concat<axis=0>(s0, three)\n ye = Expand(xs, t)\n y = Identity(ye)\n"
                " ws = Slice(x, zero, s0, zero)\n w = Identity(ws)\n}",
                st=np.array([0]), en=np.array([1]), zero=np.array([0]), three=np.array([3]))
    assert s["ws"] == (None, "q")
    assert s["ye"][0] is None
