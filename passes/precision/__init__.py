"""Precision passes: bf16/fp16 mixed precision assignment with casts at the boundaries."""

from . import assign_precision  # noqa: F401  (registers)
from .assign_precision import AssignPrecisionPass, ort_cpu_supports

__all__ = ["AssignPrecisionPass", "ort_cpu_supports"]
