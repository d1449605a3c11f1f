"""assign-precision: AMP-style lists, casts only at boundaries, fp16 run by onnxruntime, bf16 kept
fp32 where onnxruntime's CPU provider has no kernel."""

import numpy as np
import pytest

import graphopt
from graphopt.ir import DType
from graphopt.passes.precision import AssignPrecisionPass, ort_cpu_supports
from graphopt.pm import PassContext, get_pass
from graphopt.quant import PRECISION
from graphopt.quant.testing import mlp_model, random_batches, run_ort

CTX = PassContext()


def _typed():
    m = mlp_model()
    graphopt.infer_shapes(m)
    return m


def _casts(m):
    return [n for n in m.graph if n.op_type == "Cast"]


def test_registered():
    assert get_pass("assign-precision") is AssignPrecisionPass


def test_bf16_native_assignment_and_casts_at_boundaries_only():
    m = _typed()
    res = AssignPrecisionPass("bf16", target="native").run(m, CTX)
    prec = {n.name: n.meta.get(PRECISION) for n in m.graph if n.name}
    assert prec["fc1"] == prec["fc2"] == prec["side"] == "bf16"  # allow list
    assert prec["fc1_bias"] == prec["relu"] == "bf16"             # inherit from bf16 producers
    assert prec["ln"] == "fp32"                                   # deny: LayerNorm statistics
    assert prec["residual"] == "fp32"                             # produces the graph output
    g = m.graph
    assert g.outputs[0].dtype is DType.FLOAT
    # boundaries: ln -> bf16 once (shared by fc1 and side), merge output -> fp32 once for the residual
    casts = _casts(m)
    assert res.stats["casts"] == len(casts) == 2
    assert {DType(c.attr("to")) for c in casts} == {DType.BFLOAT16, DType.FLOAT}
    assert g.node("fc1").inputs[1].const.dtype.name == "bfloat16"  # weights converted offline
    g.verify()
    assert not AssignPrecisionPass("bf16", target="native").run(m, CTX).modified  # idempotent


def test_fp16_runs_in_onnxruntime_close_to_fp32():
    feeds = random_batches(1)[0]
    ref = run_ort(mlp_model(), feeds)[0]
    m = _typed()
    AssignPrecisionPass("fp16").run(m, CTX)
    assert m.graph.node("fc1").meta[PRECISION] == "fp16"
    got = run_ort(m, feeds)[0]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=2e-2, atol=2e-2)


def test_bf16_for_onnxruntime_keeps_compute_fp32_and_says_so(caplog):
    feeds = random_batches(1)[0]
    ref = run_ort(mlp_model(), feeds)[0]
    m = _typed()
    res = AssignPrecisionPass("bf16", target="onnxruntime").run(m, CTX)
    assert res.stats["kept_fp32_no_ort_kernel:MatMul"] == 3
    assert "no bf16 kernel" in caplog.text
    np.testing.assert_allclose(run_ort(m, feeds)[0], ref, rtol=1e-5, atol=1e-5)


def test_ort_kernel_table_matches_onnxruntime():
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    def runs(op, dt):
        g = helper.make_graph(
            [helper.make_node("Cast", ["x"], ["c"], to=dt), helper.make_node(op, ["c", "c"], ["o"]),
             helper.make_node("Cast", ["o"], ["y"], to=TensorProto.FLOAT)], "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])])
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            ort.InferenceSession(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
                                 .SerializeToString(), so, providers=["CPUExecutionProvider"]) \
                .run(None, {"x": np.ones((2, 2), np.float32)})
            return True
        except Exception:  # noqa: BLE001
            return False

    assert onnx is not None
    for op in ("MatMul", "Add"):
        assert runs(op, TensorProto.BFLOAT16) == ort_cpu_supports(op, "bf16")
        assert runs(op, TensorProto.FLOAT16) == ort_cpu_supports(op, "fp16")


def test_cast_round_trips_are_folded():
    from graphopt.passes.precision.assign_precision import _fold_casts

    m = _typed()
    g = m.graph
    # x -> Cast(f32) -> Cast(bf16)... build f32 -> f64 -> f32 (exact round trip) in front of fc1
    from graphopt.ir import Node

    ln = g.value("ln")
    up = Node("Cast", [ln], {"to": DType.DOUBLE.value}, outputs=["ln64"])
    down = Node("Cast", [up.output], {"to": DType.FLOAT.value}, outputs=["ln32"])
    g.insert_before(g.node("fc1"), up)
    g.insert_before(g.node("fc1"), down)
    up.output.set_tensor_type(DType.DOUBLE, ln.shape)
    down.output.set_tensor_type(DType.FLOAT, ln.shape)
    g.node("fc1").set_input(0, down.output)
    assert _fold_casts(m) == 1
    assert not _casts(m) and g.node("fc1").inputs[0] is ln


def test_bad_arguments():
    with pytest.raises(graphopt.GraphoptError, match="bf16 or fp16"):
        AssignPrecisionPass("int8")
    with pytest.raises(graphopt.GraphoptError, match="typed values"):
        AssignPrecisionPass("fp16").run(mlp_model_untyped(), CTX)


def mlp_model_untyped():
    m = mlp_model()
    for n in m.graph:
        for o in n.outputs:
            o.type = None
    return m


def test_quant_config_can_put_named_nodes_in_fp16():
    from graphopt.quant import QuantConfig, quantize

    feeds = random_batches(1)[0]
    ref = run_ort(mlp_model(), feeds)[0]
    m, rep = quantize(mlp_model(), QuantConfig(nodes={"fc2": "fp16"}), random_batches(3), progress=False)
    assert m.graph.node("fc2").meta[PRECISION] == "fp16"
    assert rep.stats["assign-precision-fp16"]["casts"] >= 2
    assert m.graph.node("fc1").meta[PRECISION] == "int8"
    got = run_ort(m, feeds)[0]
    assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < 0.03
