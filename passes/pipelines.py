"""Named pipelines: O1 (cleanup), O2 (O1 + fusions), O3 (O2 + precision).

To add a pass to a preset, append its registered name to the list below
(``O2_PASSES`` for fusions, ``O3_PASSES`` for layout/precision), or give the
pass class ``preset = "O2"`` (or ``"O3"``); either is enough. Names in the
lists run first, in list order; class-tagged passes follow in name order.
Every preset ends with the cleanup fixpoint again, so what a fusion leaves
behind (dead shape chains, duplicate constants) is removed.
"""

from __future__ import annotations

from graphopt.pm import register_preset, registered_passes

__all__ = ["CLEANUP", "O1", "O2_PASSES", "O3_PASSES", "o1", "o2", "o3"]

#: The cleanup fixpoint (what O1 repeats until nothing changes).
CLEANUP = ("fixpoint(remove-noops,merge-transposes,merge-reshapes,fold-constants,fold-shape-chains,"
           "cse,remove-unused,max=4)")

#: O1: shape inference, constant folding, then the cleanup fixpoint.
O1 = f"infer-shapes,fold-constants,{CLEANUP},infer-shapes"

#: O2 fusion passes, by registered name, in the order they run (fusion engineers append here).
O2_PASSES: list[str] = [
    # export-form idioms -> one form (passes/canonicalize), then
    "canonicalize-attention",
    # transformer and CNN fusions (passes/fusion; order explained in passes/fusion/__init__.py)
    "fuse-layernorm", "fuse-rmsnorm", "fuse-gelu", "fuse-silu-mlp", "fuse-embed-layernorm", "fuse-rotary",
    "fuse-attention", "fuse-attention-mask",
    "fuse-skip-layernorm", "fuse-bias-gelu", "fuse-matmul-add", "fuse-gemm-activation", "fuse-conv-bn", "fuse-conv-activation",
]

#: O3 layout/precision passes, by registered name, in the order they run.
O3_PASSES: list[str] = []


def _tagged(level: str, listed: list[str]) -> list[str]:
    return [name for name, cls in registered_passes().items()
            if getattr(cls, "preset", None) == level and name not in listed]


def o1() -> str:
    return O1


def o2() -> str:
    extra = list(O2_PASSES) + _tagged("O2", O2_PASSES)
    return ",".join([O1, *extra, CLEANUP]) if extra else O1


def o3() -> str:
    extra = list(O3_PASSES) + _tagged("O3", O3_PASSES)
    return ",".join([o2(), *extra, CLEANUP]) if extra else o2()


register_preset("O1", o1)
register_preset("O2", o2)
register_preset("O3", o3)
