"""fuse-silu-mlp: SiLU (x * Sigmoid(x)) -> graphopt::Silu, and the gated MLP of LLaMA-style
decoders, ``down(silu(gate(x)) * up(x))``, -> one packed gate|up projection + graphopt::SiluMul.

The gate and up projections read the same input, so their weights are packed side by side,
``W = [W_gate | W_up]`` ([K, 2I]), and computed by one GEMM; graphopt::SiluMul then forms
``silu(gate) * up`` from its two halves. The packed projection is an ordinary ``MatMul`` with a
constant weight, so the quantization annotators, QDQ insertion and the native lowering treat it
as one more linear (per-output-channel int8 scales of the packed weight are those of the two
halves). The down projection is left as it is (it is a plain linear). Biases of the two
projections (``Add(MatMul, b)``) are packed too, and so are int8 weights already quantized
(``DequantizeLinear(q, scale, zp)`` per output channel, e.g. quantize before O2): q, scales and
zero points are concatenated, so the packed GEMM keeps the calibrated grid of each half.
"""

from __future__ import annotations

import numpy as np

from graphopt.ir import DType, TensorType
from graphopt.ir.mapped import is_mapped, mapped_empty, release_pages
from graphopt.pattern import A, AnyOf, Const, MatchResult, Optional, P, Rule, RuleSet, Var
from graphopt.pm import register_pass
from graphopt.quant.decision import WEIGHT_GRID, weight_grid

from ._common import GRAPHOPT, FusionPass

__all__ = ["FUSE_SILU_MLP", "FuseSiluMlpPass"]


def silu_pattern(x):
    return AnyOf(P.Mul(x, P.Sigmoid(x)), P.Silu(x, domain=GRAPHOPT))


def _proj(tag: str):
    x = Var("x")
    # the weight: a float constant, or int8/uint8 weights through DequantizeLinear (a QDQ model)
    w = AnyOf(Const(f"w_{tag}").rank(2),
              P.DequantizeLinear(Const(f"q_{tag}").rank(2), Const(f"s_{tag}"), Optional(Const(f"z_{tag}")),
                                 bind=f"dq_{tag}", attrs={"axis": A(f"ax_{tag}", default=1),
                                                          "block_size": A(eq=0, default=0)}))
    mm = P.MatMul(x, w, bind=f"mm_{tag}")
    return AnyOf(P.Add(mm.uses(1), Const(f"b_{tag}").rank(1), bind=f"add_{tag}"), mm)


def _int8_weight(m, tag: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | str:
    """(q [K, N], scale [N], zero point [N] or None) of a DequantizeLinear'd weight, or why not."""
    q, sc = m.const(f"q_{tag}"), m.const(f"s_{tag}")
    zp = m.const(f"z_{tag}") if m.get(f"z_{tag}") is not None else None
    n = q.shape[1]
    if q.dtype not in (np.int8, np.uint8) or sc.dtype != np.float32:
        return f"weights are {q.dtype} with {sc.dtype} scales (need int8/uint8 and float32)"
    if sc.size not in (1, n) or (sc.size == n and n > 1 and int(m.attr(f"ax_{tag}")) not in (1, -1)):
        return "scales are neither per tensor nor per output channel"
    if zp is not None and (zp.dtype != q.dtype or zp.size != sc.size):
        return "zero points do not match the weights"
    z = None if zp is None else np.broadcast_to(zp.reshape(-1), (n,))
    return q, np.broadcast_to(sc.reshape(-1), (n,)), z


_SLICE_BYTES = 64 * 2**20  # rows copied per slice when packing memory-mapped weights


def _pack_columns(wg: np.ndarray, wu: np.ndarray) -> np.ndarray:
    """``[wg | wu]``. From memory-mapped weights (a big model loaded with external data) the result
    is file-backed too and filled a slice of rows at a time, releasing the pages read and written,
    so O2 on a LLaMA holds about one slice of these weights, not a second copy of every MLP."""
    if not (is_mapped(wg) or is_mapped(wu)):
        return np.ascontiguousarray(np.concatenate([wg, wu], axis=1))
    k, n = wg.shape
    out = mapped_empty((k, 2 * n), wg.dtype)
    rows = max(1, _SLICE_BYTES // max(1, 2 * n * wg.itemsize))
    for i in range(0, k, rows):
        j = min(k, i + rows)
        out[i:j, :n] = wg[i:j]
        out[i:j, n:] = wu[i:j]
        for a in (wg[i:j], wu[i:j], out[i:j]):
            release_pages(a)
    out.flags.writeable = False  # like every mapped constant: a pass that changes it makes a new array
    return out


class FuseSilu(Rule):
    """x * Sigmoid(x) -> graphopt::Silu(x)."""

    name = "fuse-silu"
    benefit = 1
    commutative = True

    def pattern(self, p):
        x = Var("x")
        return P.Mul(x, P.Sigmoid(x))

    def check(self, m):
        if m["x"].dtype not in (DType.FLOAT, DType.FLOAT16, DType.BFLOAT16, None):
            return MatchResult.fail("SiLU of a non-float tensor", m["x"])
        return MatchResult.ok()

    def rewrite(self, b, m):
        return b.Silu(m["x"], _domain=GRAPHOPT)


class FuseGatedSiluMlp(Rule):
    """silu(x @ Wg [+ bg]) * (x @ Wu [+ bu]) -> graphopt::SiluMul(x @ [Wg | Wu] [+ [bg | bu]])."""

    name = "fuse-silu-gated-mlp"
    benefit = 3  # before the plain SiLU rule: the gate's Mul(x, Sigmoid(x)) is part of this pattern
    commutative = True

    def pattern(self, p):
        gate = _proj("g")
        return P.Mul(silu_pattern(gate), _proj("u"), bind="gated")

    def check(self, m):
        if ("dq_g" in m) != ("dq_u" in m):
            return MatchResult.fail("one projection has float weights, the other quantized ones", m["gated"])
        if "dq_g" in m:
            parts = [_int8_weight(m, t) for t in ("g", "u")]
            why = next((p for p in parts if isinstance(p, str)), None)
            if why is not None:
                return MatchResult.fail(why, m["dq_g"])
            (qg, _, zg), (qu, _, zu) = parts
            if qg.shape != qu.shape or qg.dtype != qu.dtype:
                return MatchResult.fail(f"gate and up weights differ: {qg.shape} {qg.dtype} vs {qu.shape} {qu.dtype}",
                                        m["dq_u"])
            wg = qg
        else:
            wg, wu = m.const("w_g"), m.const("w_u")
            if wg.shape != wu.shape or wg.dtype != wu.dtype or wg.dtype != np.float32:
                return MatchResult.fail(f"gate and up weights differ: {wg.shape} {wg.dtype} vs {wu.shape} {wu.dtype}",
                                        m["w_u"])
        if ("b_g" in m) != ("b_u" in m):
            return MatchResult.fail("only one of the gate and up projections has a bias", m["gated"])
        if "b_g" in m and (m.const("b_g").shape != (wg.shape[1],) or m.const("b_u").shape != (wg.shape[1],)):
            return MatchResult.fail("bias lengths differ from the projection width", m["b_g"])
        if m["x"].rank is None or m["x"].rank < 2:
            return MatchResult.fail("the MLP input's rank is unknown or < 2", m["x"])
        return MatchResult.ok()

    def rewrite(self, b, m):
        x = m["x"]
        if "dq_g" in m:  # pack the int8 weights, their per-channel scales and zero points
            (qg, sg, zg), (qu, su, zu) = _int8_weight(m, "g"), _int8_weight(m, "u")
            zero = np.zeros(qg.shape[1], qg.dtype)
            zp = None if zg is None and zu is None else np.concatenate([zero if zg is None else zg,
                                                                         zero if zu is None else zu])
            packed_q = np.ascontiguousarray(np.concatenate([qg, qu], axis=1))
            w = b.DequantizeLinear(b.initializer(packed_q), b.initializer(np.concatenate([sg, su])),
                                   None if zp is None else b.initializer(zp), axis=1)
            w.type = TensorType(DType.FLOAT, packed_q.shape)
            width = packed_q.shape[1]
        else:
            packed = _pack_columns(m.const("w_g"), m.const("w_u"))
            w, width = b.initializer(packed), packed.shape[1]
            grids = weight_grid(m["w_g"]), weight_grid(m["w_u"])
            if grids[0] is not None and grids[1] is not None:  # a file's int8 grids (absorb-qdq) stay with the halves
                w.meta[WEIGHT_GRID] = np.concatenate(grids)
        y = b.MatMul(x, w)
        if "b_g" in m:
            y = b.Add(y, b.initializer(np.concatenate([m.const("b_g"), m.const("b_u")])))
        if x.shape is not None:
            y.type = TensorType(DType.FLOAT, tuple(x.shape[:-1]) + (width,))
        out = b.SiluMul(y, _domain=GRAPHOPT)
        out.type = m["gated"].type
        return out


FUSE_SILU_MLP = RuleSet([FuseGatedSiluMlp(), FuseSilu()], name="fuse-silu-mlp")


@register_pass
class FuseSiluMlpPass(FusionPass):
    name = "fuse-silu-mlp"
    description = "SiLU -> graphopt::Silu; gated MLP silu(gate(x)) * up(x) -> packed gate|up MatMul + graphopt::SiluMul"
    rules = FUSE_SILU_MLP
    needs_shapes = True
