"""ONNX backend conformance through graphopt -> OpenVINO (CPU, f32).

Measured on openvino 2026.4 / onnx 1.23 (``python -m graphopt.backends.ov_conformance``):
1724 cases run by onnxruntime, 1553 accepted by OpenVINO, 1481 match, 70 mismatch,
2 fail at inference, 171 rejected. Every one of the 70 mismatches and 171 rejections
also happens when OpenVINO converts the *original* ONNX file directly, i.e. none is
introduced by graphopt. The slow test guards the matching count against regressions.
"""

import numpy as np
import onnx
import pytest
from onnx import helper

import openvino  # noqa: F401 - installed with the suite's extras

from graphopt.backends.ov_conformance import MATCH, REJECTED, run_openvino_case, run_openvino_suite  # noqa: E402
from graphopt.testing.conformance import Case  # noqa: E402

MEASURED_MATCH = 1481
MARGIN = 15  # openvino/onnx patch releases move a handful of cases


def _case(name, node, inputs, outputs, feeds, want, opset=17):
    mp = helper.make_model(helper.make_graph([node], name, inputs, outputs),
                           opset_imports=[helper.make_opsetid("", opset)])
    return Case(name, "node", lambda: mp, lambda _mp: [(feeds, want)])


def _vi(name, shape):
    return helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, shape)


def test_supported_case_matches():
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    case = _case("relu", helper.make_node("Relu", ["x"], ["y"]), [_vi("x", [3, 4])], [_vi("y", [3, 4])],
                 [x], [np.maximum(x, 0)])
    assert run_openvino_case(case).status == MATCH


def test_unsupported_case_is_rejected_with_the_op_named():
    x = np.eye(3, dtype=np.float32)
    case = _case("det", helper.make_node("Det", ["x"], ["y"], name="det0"), [_vi("x", [3, 3])], [_vi("y", [])],
                 [x], [np.array(1.0, np.float32)], opset=22)
    r = run_openvino_case(case)
    assert r.status == REJECTED
    assert "'det0' (Det)" in r.reason and "OpenVINO says" in r.reason


@pytest.mark.slow
def test_conformance_matching_count_does_not_regress():
    report = run_openvino_suite()
    summary = report.summary()
    assert report.counted >= 1700, summary
    assert report.matched >= MEASURED_MATCH - MARGIN, summary


def test_summary_groups_reasons():
    from graphopt.backends.ov_conformance import MISMATCH, OVCaseResult, OVSuiteReport

    rep = OVSuiteReport([
        OVCaseResult("a", "node", MATCH),
        OVCaseResult("b", "node", REJECTED, "UnsupportedError: ... unsupported node(s) 'n1' (Det)\n--- x"),
        OVCaseResult("c", "node", REJECTED, "UnsupportedError: ... unsupported node(s) <unnamed, output 'y'> (Det)"),
        OVCaseResult("d", "node", MISMATCH, "outputs differ"),
        OVCaseResult("e", "node", "skip", "onnxruntime cannot run it"),
    ])
    assert (rep.counted, rep.accepted, rep.matched) == (4, 2, 1)
    assert rep.reasons()[(REJECTED, "frontend: no conversion for Det")] == 2
    assert "mismatched: d" in rep.summary()
