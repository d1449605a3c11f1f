"""Named pipelines: O1 (cleanup), O2 (O1 + fusions). ``O0`` (no passes) is handled by the callers.

There is no O3: precision is not an optimization level in graphopt but a decision made in
one place each -- ``graphopt.quantize`` (int8) and ``graphopt.compile(precision=...)`` /
``assign-precision`` (bf16/fp16) -- so ``--level`` is O0, O1 or O2 everywhere.

To add a pass to a preset, append its registered name to ``O2_PASSES`` below, or give
the pass class ``preset = "O2"``; either is enough. Names in the
lists run first, in list order; class-tagged passes follow in name order.
Every preset ends with the cleanup fixpoint again, so what a fusion leaves
behind (dead shape chains, duplicate constants) is removed.
"""

from __future__ import annotations

from graphopt.pm import register_preset, registered_passes

__all__ = ["CLEANUP", "O1", "O2_PASSES", "o1", "o2"]

#: The cleanup fixpoint (what O1 repeats until nothing changes).
CLEANUP = ("fixpoint(remove-noops,merge-transposes,merge-reshapes,fold-constants,fold-shape-chains,"
           "cse,remove-unused,max=4)")

#: O1: shape inference, constant folding, then the cleanup fixpoint.
O1 = f"infer-shapes,fold-constants,{CLEANUP},infer-shapes"

#: O2 fusion passes, by registered name, in the order they run (fusion engineers append here):
#: LayerNorm and GELU first (later patterns are written over the fused forms; RMSNorm and the
#: SiLU-gated MLP beside them), embeddings and attention (rotary embeddings just before it)
#: before SkipLayerNorm/BiasGelu (which take the remaining bias Adds), plain MatMul+Add last
#: (fuse-linear-epilogue then moves a MatMul's bias / GELU out of those into its Linear), then the CNN folds.
O2_PASSES: list[str] = [
    # export-form idioms -> one form (passes/canonicalize), then
    "canonicalize-attention",
    # transformer and CNN fusions (passes/fusion; order explained in passes/fusion/__init__.py)
    "fuse-layernorm", "fuse-rmsnorm", "fuse-gelu", "fuse-silu-mlp", "fuse-embed-layernorm", "fuse-rotary",
    "fuse-attention", "fuse-attention-mask", "fuse-sdpa", "canonicalize-decoder-mask",
    "fuse-skip-layernorm", "fuse-bias-gelu", "fuse-matmul-add", "fuse-gemm-activation", "fuse-linear-epilogue",
    "fuse-conv-bn", "fuse-conv-activation",
]

def _tagged(level: str, listed: list[str]) -> list[str]:
    return [name for name, cls in registered_passes().items()
            if getattr(cls, "preset", None) == level and name not in listed]


def o1() -> str:
    return O1


def o2() -> str:
    extra = list(O2_PASSES) + _tagged("O2", O2_PASSES)
    return ",".join([O1, *extra, CLEANUP]) if extra else O1


register_preset("O1", o1)
register_preset("O2", o2)
