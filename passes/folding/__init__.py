"""Folding passes (O1): constant folding and static shape-chain folding."""

from .fold_constants import FoldConstants
from .fold_shape_chains import FoldShapeChains

__all__ = ["FoldConstants", "FoldShapeChains"]
