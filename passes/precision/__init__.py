"""Precision passes: bf16/fp16 mixed precision assignment with casts at the boundaries, and the
per-node precision decision of the native runtime (decide-precision)."""

from . import assign_precision, decide_precision  # noqa: F401  (registers)
from .assign_precision import AssignPrecisionPass, ort_cpu_supports
from .decide_precision import DecidePrecisionPass

__all__ = ["AssignPrecisionPass", "DecidePrecisionPass", "ort_cpu_supports"]
