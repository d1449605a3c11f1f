"""Native lowering of weight-only int4 (onnxruntime's ``com.microsoft::MatMulNBits``, bits=4)
onto the Int4Linear step (csrc/runtime/ops/int4.cpp, kernels in csrc/kernels/int4).

The packed weight, scales and zero points are plan constants in MatMulNBits' own layout: the
fp32 paths dequantize on the fly, so a plan over a saved int4 file holds the weights once
(about an eighth of the fp32 model). By default (on AVX-512 VNNI) the kernel quantizes the
activations to int8 (a scale per row and K-block) and runs VNNI dot products on a repacked copy of the weights built
on the first run (a second copy of about the same size); a node's ``accuracy_level`` 1-3 (float
compute) keeps the fp32 paths. Declines (and the node runs in
onnxruntime) for what the kernel does not read: other bit widths, ``g_idx``, float zero
points, non-float32 activations or scales, non-constant weights.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..ir import DType, Node
from .lower import _Lowerer

__all__ = ["MICROSOFT_OPS"]


def _matmul_nbits(lw: _Lowerer, n: Node) -> bool:
    ins = list(n.inputs) + [None] * (6 - len(n.inputs))
    x, q, scales, zp, g_idx, bias = ins[:6]
    bits, block = int(n.attr("bits", 4)), int(n.attr("block_size", 0))
    k, cols = int(n.attr("K", 0)), int(n.attr("N", 0))
    if bits != 4 or block < 16 or block & (block - 1) or k < 1 or cols < 1 or g_idx is not None:
        return False
    if lw.dt(x) != DType.FLOAT:
        return False
    qa, sa = lw.const(q), lw.const(scales)
    nb = -(-k // block)
    if qa is None or sa is None or qa.dtype != np.uint8 or qa.size != cols * nb * (block // 2) \
            or sa.dtype != np.float32 or sa.size != cols * nb:
        return False
    if zp is not None:
        za = lw.const(zp)
        if za is None or za.dtype != np.uint8 or za.size != cols * ((nb + 1) // 2):
            return False
    if bias is not None:
        ba = lw.const(bias)
        if ba is None or ba.dtype != np.float32 or ba.size != cols:
            return False
    # accuracy_level 1-3 (fp32/fp16/bf16 compute) keeps float activations; unset, 0 and 4 (int8)
    # let the kernel quantize them to int8 per row and K-block (where the CPU has VNNI: 2-7x faster).
    q8 = int(n.attr("accuracy_level", 0)) not in (1, 2, 3)
    s = lw.emit("Int4Linear", n, [x, q, scales, zp, bias], [n.outputs[0]],
                iattrs={"K": k, "N": cols, "block": block, "q8": int(q8)})
    s.detail = f"int4 MatMulNBits (block {block}{', zero points' if zp is not None else ''}" \
               f"{', int8 activations' if q8 else ''})"
    return True


MICROSOFT_OPS: dict[str, Callable[[_Lowerer, Node], bool]] = {"MatMulNBits": _matmul_nbits}
