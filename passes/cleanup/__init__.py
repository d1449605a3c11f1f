"""Cleanup passes (O1): dead code, common subexpressions, no-ops, merging
consecutive Transposes/Reshapes, shape inference."""

from .cse import CSE
from .infer_shapes import InferShapes
from .merge_reshapes import MERGE_RESHAPES, MergeReshapes
from .merge_transposes import MERGE_TRANSPOSES, MergeTransposes
from .remove_noops import NOOP_RULES, RemoveNoOps
from .remove_unused import RemoveUnused

__all__ = ["CSE", "InferShapes", "MergeReshapes", "MergeTransposes", "RemoveNoOps", "RemoveUnused",
           "MERGE_RESHAPES", "MERGE_TRANSPOSES", "NOOP_RULES"]
