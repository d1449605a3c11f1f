"""Native lowering of the decoder ops (graphopt::RMSNorm, SkipRMSNorm, Silu, SiluMul,
RotaryEmbedding) onto the kernels of csrc/kernels/decoder: one step per node. Entries of
:data:`graphopt.runtime.lowering_table.LOWERING`.

The packed gate|up projection in front of SiluMul is an ordinary MatMul, lowered (and given
its fp32 / bf16 / int8 GEMM) like every other linear.
"""

from __future__ import annotations

from ..ir import DType, Node
from .lower import _Lowerer

__all__ = ["rms", "skip_rms", "silu", "silu_mul", "rotary"]


def _gamma_ok(lw: _Lowerer, gamma) -> bool:
    g = lw.const(gamma) if gamma is not None else None
    return g is not None and g.ndim == 1 and lw.dt(gamma) == DType.FLOAT


def _used(v) -> bool:
    return v.num_uses() > 0 or v.is_graph_output()


def rms(lw: _Lowerer, n: Node) -> bool:
    x, gamma = n.inputs[0], n.inputs[1]
    if lw.dt(x) != DType.FLOAT or not _gamma_ok(lw, gamma):
        return False
    s = lw.emit("RMSNorm", n, [x, gamma, None], [n.outputs[0]], fattrs={"epsilon": float(n.attr("epsilon", 1e-6))})
    s.detail = "rmsnorm"
    return True


def skip_rms(lw: _Lowerer, n: Node) -> bool:
    ins = list(n.inputs) + [None] * (4 - len(n.inputs))
    x, skip, gamma, bias = ins[:4]
    if lw.dt(x) != DType.FLOAT or lw.dt(skip) != DType.FLOAT or not _gamma_ok(lw, gamma):
        return False
    if bias is not None:
        if lw.dt(bias) != DType.FLOAT:
            return False
        t = lw.tmp(n.outputs[0].name + "/biased")
        lw.emit("Add", (n.name or n.outputs[0].name) + "/bias", [x, bias], [t], origin=[n.label()])
        x = t
    outs = [n.outputs[0], n.outputs[1] if len(n.outputs) > 1 and _used(n.outputs[1]) else None]
    s = lw.emit("RMSNorm", n, [x, gamma, skip], outs, fattrs={"epsilon": float(n.attr("epsilon", 1e-6))})
    s.detail = "skip+rmsnorm" + (" (+sum)" if outs[1] is not None else "")
    return True


def silu(lw: _Lowerer, n: Node) -> bool:
    if lw.dt(n.inputs[0]) != DType.FLOAT:
        return False
    lw.emit("Silu", n, [n.inputs[0]], [n.outputs[0]])
    return True


def silu_mul(lw: _Lowerer, n: Node) -> bool:
    if lw.dt(n.inputs[0]) != DType.FLOAT:
        return False
    s = lw.emit("SiluMul", n, [n.inputs[0]], [n.outputs[0]])
    s.detail = "silu(gate) * up of the packed gate|up GEMM output"
    return True


def rotary(lw: _Lowerer, n: Node) -> bool:
    x, cos, sin = n.inputs[0], n.inputs[1], n.inputs[2]
    if any(lw.dt(v) != DType.FLOAT for v in (x, cos, sin)):
        return False
    s = lw.emit("Rotary", n, [x, cos, sin], [n.outputs[0]])
    s.detail = "rotate-half rotary embedding"
    return True
