"""Exporters to other runtimes. Each backend imports its runtime lazily (inside
the functions), so ``import graphopt.backends`` never needs openvino installed.

>>> from graphopt.backends import export_openvino
>>> export_openvino(model, "out/model.xml")    # doctest: +SKIP
"""

from __future__ import annotations

from .openvino import compile_for_cpu, export_openvino, to_openvino

__all__ = ["export_openvino", "to_openvino", "compile_for_cpu"]
