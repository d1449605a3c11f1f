"""Native runtime front: typed wrappers around the C++ kernels in ``graphopt._C``."""

from __future__ import annotations

from . import kernels
from .compile import compile  # noqa: A001 - native runtime (issue 6)
from .session import InputError, Session, Summary

__all__ = ["kernels", "compile", "Session", "Summary", "InputError"]
