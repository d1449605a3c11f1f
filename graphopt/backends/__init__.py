"""Exporters to other runtimes. Each backend module imports its runtime lazily,
so ``import graphopt.backends`` never needs openvino installed.

>>> from graphopt.backends.openvino import export_openvino   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

__all__ = ["export_openvino"]


def export_openvino(*args: Any, **kwargs: Any) -> Any:
    """See :func:`graphopt.backends.openvino.export_openvino`."""
    from .openvino import export_openvino as _export

    return _export(*args, **kwargs)
