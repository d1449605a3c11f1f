"""Shared fixtures for the kernel tests: ISA pinning and Hypothesis profiles."""

from __future__ import annotations

import os

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from graphopt import _C

# Bounded so the whole kernel suite stays well under two minutes on 2 cores; on CI (CI set)
# more examples, derandomized, as the suite-wide "ci" profile does.
_CI = bool(os.environ.get("CI"))
settings.register_profile(
    "kernels", max_examples=150 if _CI else 40, deadline=None, derandomize=_CI,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

LEVELS = ["scalar", "avx2", "avx512", "avx512_vnni", "avx512_bf16", "amx"]


def supported(levels: list[str]) -> list[str]:
    """The subset of ``levels`` this CPU can run."""
    top = LEVELS.index(_C.isa_available())
    return [lv for lv in levels if LEVELS.index(lv) <= top]


def pinned(level: str) -> Iterator[str]:
    """Cap the kernels at ``level`` for the duration of a test, then restore the cap."""
    before = _C.isa_selected()
    _C.set_max_isa(level)
    try:
        yield level
    finally:
        _C.set_max_isa(before)


def dense_and_sparse_at_1_and_2_threads(a, b, **kw) -> list:
    """``gemm_int8`` of ``a`` with ``b`` packed dense and sparse (scale 0.003), at 1 and 2 threads:
    the four outputs a bit-exactness test compares."""
    from graphopt.runtime import kernels as gk

    dense, sparse = gk.pack_int8(b, 0.003, 0), gk.pack_int8_sparse(b, 0.003, 0)
    n = _C.get_num_threads()
    try:
        outs = []
        for t in (1, 2):
            _C.set_num_threads(t)
            outs += [gk.gemm_int8(a, dense, **kw), gk.gemm_int8(a, sparse, **kw)]
    finally:
        _C.set_num_threads(n)
    return outs


# One level per distinct code path of each kernel family.
INT8_LEVELS = supported(["scalar", "avx2", "avx512_vnni"])
BF16_LEVELS = supported(["scalar", "avx2", "avx512", "avx512_bf16"])
F32_LEVELS = supported(["scalar", "avx2", "avx512"])
ELTWISE_LEVELS = supported(["scalar", "avx2", "avx512"])


@pytest.fixture(params=INT8_LEVELS)
def int8_isa(request: pytest.FixtureRequest) -> Iterator[str]:
    yield from pinned(request.param)


@pytest.fixture(params=BF16_LEVELS)
def bf16_isa(request: pytest.FixtureRequest) -> Iterator[str]:
    yield from pinned(request.param)


@pytest.fixture(params=F32_LEVELS)
def f32_isa(request: pytest.FixtureRequest) -> Iterator[str]:
    yield from pinned(request.param)


@pytest.fixture(params=ELTWISE_LEVELS)
def eltwise_isa(request: pytest.FixtureRequest) -> Iterator[str]:
    yield from pinned(request.param)
