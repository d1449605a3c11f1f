"""ONNX backend conformance on the native runtime: every case onnxruntime runs must pass
(natively or through the per-node fallback)."""

from __future__ import annotations

import logging

import pytest

from graphopt.runtime.conformance import run_runtime_suite


@pytest.mark.slow
def test_node_conformance_on_native_runtime():
    logging.disable(logging.WARNING)
    try:
        rep = run_runtime_suite(("node",))
    finally:
        logging.disable(logging.NOTSET)
    c = rep.counts()
    failures = [(f.name, f.reason) for f in rep.failures()]
    assert failures == []
    assert c["native"] >= 631, rep.summary()  # 631 node cases run with no fallback at all (ONNX 1.23)
    assert c["native"] + c["fallback"] >= 1500, rep.summary()
