"""Native runtime front: typed wrappers around the C++ kernels in ``graphopt._C``."""

from __future__ import annotations

from . import kernels

__all__ = ["kernels"]
