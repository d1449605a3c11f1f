"""Quantization passes: absorb-qdq, annotate, SmoothQuant, insert-qdq, fold-qdq, dynamic and weight-only."""

from . import absorb_qdq, annotate, dynamic, fold_qdq, insert_qdq, smoothquant, weight_only  # noqa: F401  (registers)
from .absorb_qdq import AbsorbQDQPass
from .annotate import AnnotateQuantPass
from .dynamic import DynamicQuantPass
from .fold_qdq import FoldQDQPass
from .insert_qdq import InsertQDQPass
from .smoothquant import SmoothQuantPass
from .weight_only import WeightOnlyQuantPass

__all__ = ["AbsorbQDQPass", "AnnotateQuantPass", "SmoothQuantPass", "InsertQDQPass", "FoldQDQPass", "DynamicQuantPass",
           "WeightOnlyQuantPass"]
