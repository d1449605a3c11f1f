"""Benchmarks of graphopt's native kernels against the runtimes people use."""

from __future__ import annotations

from .kernels import BenchConfig, BenchReport, run_kernel_bench

__all__ = ["BenchConfig", "BenchReport", "run_kernel_bench"]
