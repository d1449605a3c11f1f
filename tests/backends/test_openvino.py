"""OpenVINO IR export: files, precision handling, fused ops, bad input."""

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper, parser

import openvino as ov

import graphopt  # noqa: E402
from graphopt.backends.openvino import (  # noqa: E402
    compile_for_cpu,
    export_openvino,
    infer,
    int8_layers,
    recorded_precision,
    runtime_precisions,
    to_openvino,
)
from graphopt.errors import GraphoptError, UnsupportedError  # noqa: E402


def _ort(mp: onnx.ModelProto, feeds):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(mp.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feeds)


def _mlp() -> onnx.ModelProto:
    """MatMul+Add -> Gelu(erf) -> LayerNorm -> MatMul: the transformer FFN shapes."""
    mp = parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N, 64] x) => (float[N, 32] y) {
        h = MatMul(x, w1)
        hb = Add(h, b1)
        s = Mul(hb, c_rsqrt2)
        e = Erf(s)
        e1 = Add(e, c_one)
        g1 = Mul(hb, e1)
        g2 = Mul(g1, c_half)
        n = LayerNormalization <axis = -1> (g2, gamma, beta)
        y = MatMul(n, w2)
    }""")
    rng = np.random.default_rng(0)
    for name, arr in [("w1", rng.standard_normal((64, 128)) * 0.1), ("b1", rng.standard_normal(128) * 0.1),
                      ("c_rsqrt2", np.array(0.70710678)), ("c_one", np.array(1.0)), ("c_half", np.array(0.5)),
                      ("gamma", 1 + 0.1 * rng.standard_normal(128)), ("beta", 0.1 * rng.standard_normal(128)),
                      ("w2", rng.standard_normal((128, 32)) * 0.1)]:
        mp.graph.initializer.append(numpy_helper.from_array(np.asarray(arr, np.float32), name))
    onnx.checker.check_model(mp)
    return mp


def _x(n=8):
    return np.random.default_rng(1).standard_normal((n, 64)).astype(np.float32)


def test_export_writes_xml_and_bin_that_openvino_loads(tmp_path):
    mp = _mlp()
    xml = export_openvino(graphopt.load(mp), tmp_path / "mlp.xml")
    assert xml.exists() and xml.with_suffix(".bin").exists()
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(xml)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got = infer(compiled, {"x": _x()})[0]
    want = _ort(mp, {"x": _x()})[0]
    assert got.shape == want.shape == (8, 32)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_dynamic_batch_survives_export(tmp_path):
    xml = export_openvino(_mlp(), tmp_path / "m.xml")  # a ModelProto is accepted too
    cm = compile_for_cpu(xml)
    for n in (1, 5):
        assert infer(cm, {"x": _x(n)})[0].shape == (n, 32)


def test_weights_stay_fp32_unless_compression_is_asked(tmp_path):
    mp = _mlp()
    weight_bytes = sum(numpy_helper.to_array(t).nbytes for t in mp.graph.initializer)
    plain = export_openvino(mp, tmp_path / "plain.xml").with_suffix(".bin").stat().st_size
    small = export_openvino(mp, tmp_path / "fp16.xml", compress_to_fp16=True).with_suffix(".bin").stat().st_size
    assert plain >= weight_bytes * 0.95  # fp32 weights are all there
    assert small < plain * 0.6
    assert 'element_type="f16"' not in (tmp_path / "plain.xml").read_text()


def test_precision_is_recorded_and_applied(tmp_path):
    xml = export_openvino(_mlp(), tmp_path / "bf16.xml", precision="bf16")
    assert recorded_precision(ov.Core().read_model(str(xml))) == "bf16"
    bf16 = compile_for_cpu(xml, precision=None)      # uses what the IR records
    fp32 = compile_for_cpu(xml, precision="fp32")    # explicit wins
    assert str(bf16.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'bfloat16'>"
    assert str(fp32.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'float32'>"
    fc32 = {p for _, kind, p in runtime_precisions(fp32) if kind == "FullyConnected"}
    assert fc32 == {"f32"}
    if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        assert set(int8_layers(bf16)) == {"bf16"}
        got = infer(bf16, {"x": _x()})[0]
        want = _ort(_mlp(), {"x": _x()})[0]
        # bf16 keeps 8 mantissa bits: ~1e-2 relative to the output scale
        assert np.abs(got - want).max() <= 3e-2 * np.abs(want).max()


def test_no_precision_records_nothing(tmp_path):
    xml = export_openvino(_mlp(), tmp_path / "m.xml")
    assert recorded_precision(ov.Core().read_model(str(xml))) is None


def test_graph_is_accepted():
    m = graphopt.load(_mlp())
    ov_model = to_openvino(m.graph)
    assert [p.get_any_name() for p in ov_model.inputs] == ["x"]


def test_unsupported_op_names_the_node_and_keeps_openvino_message():
    mp = helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"], name="relu0"),
         helper.make_node("Frobnicate", ["r"], ["y"], name="frob0", domain="acme")],
        "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])]),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("acme", 1)])
    with pytest.raises(UnsupportedError) as ei:
        to_openvino(graphopt.load(mp))
    msg = str(ei.value)
    assert "'frob0' (acme::Frobnicate)" in msg
    assert "OpenVINO says" in msg and "acme.Frobnicate" in msg
    assert ei.value.__cause__ is not None


def test_bad_precision_and_path():
    with pytest.raises(UnsupportedError, match="precision 'int4'"):
        to_openvino(_mlp(), precision="int4")
    with pytest.raises(GraphoptError, match=r"must end in \.xml"):
        export_openvino(_mlp(), "model.bin")


def test_fused_graphopt_ops_are_decomposed(tmp_path):
    import graphopt.ops as ops

    from graphopt.ir import Graph, Model, Node, TensorType, DType

    g = Graph("fused")
    x = g.add_input("x", TensorType(DType.FLOAT, ("N", 16)))
    b = g.add_initializer("b", np.linspace(-1, 1, 16).astype(np.float32))
    node = g.append(Node("BiasGelu", [x, b], {}, domain="graphopt"))
    node.output.name = "y"
    node.output.set_tensor_type(DType.FLOAT, ("N", 16))
    g.outputs.append(node.output)
    model = Model(g, opset_imports={"": 17, "graphopt": 1})
    xml = export_openvino(model, tmp_path / "fused.xml")
    assert [n.domain for n in model.graph] == ["graphopt"]  # the caller's model is untouched
    xs = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    got = infer(compile_for_cpu(xml), {"x": xs})[0]
    want = ops.reference("BiasGelu", [xs, np.linspace(-1, 1, 16).astype(np.float32)])[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def _unknown_fused():
    from graphopt.ir import Graph, Model, Node, TensorType, DType

    g = Graph("fused")
    x = g.add_input("x", TensorType(DType.FLOAT, (4,)))
    node = g.append(Node("NoSuchFusedOp", [x], {}, domain="graphopt"))
    g.outputs.append(node.output)
    return Model(g)


def test_fused_op_without_decomposition_is_unsupported(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "graphopt.ops", None)  # as if graphopt.ops were absent
    with pytest.raises(UnsupportedError, match="graphopt::NoSuchFusedOp"):
        to_openvino(_unknown_fused())


def test_unknown_fused_op_is_an_error():
    with pytest.raises(GraphoptError, match="NoSuchFusedOp"):
        to_openvino(_unknown_fused())


def test_compile_for_cpu_takes_onnx_paths_and_graphopt_models(tmp_path):
    mp = _mlp()
    onnx.save(mp, str(tmp_path / "mlp.onnx"))
    want = _ort(mp, {"x": _x()})[0]
    for src in (tmp_path / "mlp.onnx", graphopt.load(mp)):
        got = infer(compile_for_cpu(src), {"x": _x()})[0]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    with pytest.raises(GraphoptError, match="no feed for OpenVINO model input"):
        infer(compile_for_cpu(tmp_path / "mlp.onnx"), {"wrong": _x()})
