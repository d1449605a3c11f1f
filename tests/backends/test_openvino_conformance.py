"""ONNX backend conformance through graphopt -> OpenVINO (CPU, f32).

Measured on openvino 2026.4 / onnx 1.23 (``python -m graphopt.backends.ov_conformance``):
1724 cases run by onnxruntime, 1553 accepted by OpenVINO, 1481 match, 70 mismatch, 2 fail at inference,
171 rejected. The test guards the matching count against regressions.
"""

import pytest

pytest.importorskip("openvino")

from graphopt.backends.ov_conformance import MATCH, REJECTED, run_openvino_case, run_openvino_suite  # noqa: E402
from graphopt.testing.conformance import iter_cases  # noqa: E402

MEASURED_MATCH = 1481
MARGIN = 15  # openvino/onnx patch releases move a handful of cases


def _case(name):
    return next(c for c in iter_cases(("node",)) if c.name == name)


def test_supported_case_matches():
    assert run_openvino_case(_case("test_gemm_default_matrix_bias")).status == MATCH


def test_unsupported_case_is_rejected_with_the_op_named():
    r = run_openvino_case(_case("test_det_2d"))
    assert r.status == REJECTED
    assert "(Det)" in r.reason and "OpenVINO says" in r.reason


@pytest.mark.slow
def test_conformance_matching_count_does_not_regress():
    report = run_openvino_suite()
    summary = report.summary()
    assert report.counted >= 1700, summary
    assert report.matched >= MEASURED_MATCH - MARGIN, summary
