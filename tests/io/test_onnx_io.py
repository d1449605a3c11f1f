import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper, parser

import graphopt
from graphopt.errors import GraphoptError, ModelLoadError, UnsupportedError, VerificationError
from graphopt.ir import DType


def run(mp: onnx.ModelProto, feeds):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(mp.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feeds)


MLP = """
<ir_version: 8, opset_import: ["" : 17]>
mlp (float[N, 4] x) => (float[N, 2] y) {
    h = MatMul(x, w1)
    hb = Add(h, b1)
    r = Relu(hb)
    y = MatMul(r, w2)
}
"""


def mlp_model():
    mp = parser.parse_model(MLP)
    rng = np.random.default_rng(0)
    mp.graph.initializer.extend([
        numpy_helper.from_array(rng.standard_normal((4, 8)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b1"),
        numpy_helper.from_array(rng.standard_normal((8, 2)).astype(np.float32), "w2"),
    ])
    return mp


def test_roundtrip_preserves_outputs_and_interface(tmp_path):
    mp = mlp_model()
    m = graphopt.load(mp)
    m.verify()
    assert m.graph.op_counts() == {"MatMul": 2, "Add": 1, "Relu": 1}
    assert m.graph.inputs[0].shape == ("N", 4)
    path = graphopt.save(m, tmp_path / "mlp.onnx")
    back = onnx.load(str(path))
    onnx.checker.check_model(back)
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_array_equal(run(mp, {"x": x})[0], run(back, {"x": x})[0])
    assert [i.name for i in back.graph.input] == ["x"] and back.graph.output[0].name == "y"


def test_external_data_both_ways(tmp_path):
    m = graphopt.load(mlp_model())
    path = graphopt.save(m, tmp_path / "ext.onnx", external_data=True, size_threshold=0)
    assert (tmp_path / "ext.onnx.data").exists()
    m2 = graphopt.load(path)
    np.testing.assert_array_equal(m2.graph.initializers["w1"].const, m.graph.initializers["w1"].const)
    # onnx's own external-data files load too
    mp = mlp_model()
    onnx.save_model(mp, str(tmp_path / "theirs.onnx"), save_as_external_data=True, location="w.bin",
                    size_threshold=0)
    m3 = graphopt.load(tmp_path / "theirs.onnx")
    assert m3.graph.initializers["w2"].const.shape == (8, 2)


def test_sparse_initializer_and_value_info_roundtrip():
    mp = parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2, 3] x) => (float[2, 3] y) {
        t = Add(x, s)
        y = Relu(t)
    }""")
    values = numpy_helper.from_array(np.array([5.0, -1.0], np.float32), "s")
    idx = numpy_helper.from_array(np.array([1, 4], np.int64))
    mp.graph.sparse_initializer.append(helper.make_sparse_tensor(values, idx, [2, 3]))
    mp.graph.value_info.append(helper.make_tensor_value_info("t", onnx.TensorProto.FLOAT, [2, 3]))
    m = graphopt.load(mp)
    assert "s" in m.graph.sparse_initializers
    assert m.graph.value("t").shape == (2, 3)
    out = graphopt.to_onnx(m)
    assert len(out.graph.sparse_initializer) == 1 and not out.graph.initializer
    assert any(vi.name == "t" for vi in out.graph.value_info)
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(run(mp, {"x": x})[0], run(out, {"x": x})[0])


def test_local_functions_are_inlined():
    mp = parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17, "local" : 1]>
    g (float[2] x) => (float[2] y) {
        y = local.twice(x)
    }
    <domain: "local", opset_import: ["" : 17]>
    twice (a) => (b) {
        b = Add(a, a)
    }""")
    m = graphopt.load(mp)
    assert m.graph.op_counts() == {"Add": 1}
    x = np.array([1.0, 2.0], np.float32)
    np.testing.assert_array_equal(run(graphopt.to_onnx(m), {"x": x})[0], x * 2)


def test_subgraphs_roundtrip():
    mp = parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (bool c, float[2] x) => (float[2] y) {
        y = If(c) <
            then_branch = t () => (float[2] a) { a = Neg(x) },
            else_branch = e () => (float[2] b) { b = Abs(x) }
        >
    }""")
    m = graphopt.load(mp)
    m.verify()
    out = graphopt.to_onnx(m)
    x = np.array([-1.0, 2.0], np.float32)
    for c in (True, False):
        np.testing.assert_array_equal(run(out, {"c": np.array(c), "x": x})[0], run(mp, {"c": np.array(c), "x": x})[0])


def test_bf16_and_int4_initializers_survive():
    import ml_dtypes as ml_dtypes
    g = graphopt.Graph("g")
    b = g.add_initializer("b", np.array([1.5, -2.0], dtype=ml_dtypes.bfloat16))
    q = g.add_initializer("q", np.array([1, -3, 7], dtype=ml_dtypes.int4))
    g.outputs = [b, q]
    assert b.dtype is DType.BFLOAT16 and q.dtype is DType.INT4
    m2 = graphopt.load(graphopt.to_onnx(g))
    np.testing.assert_array_equal(m2.graph.initializers["b"].const.astype(np.float32), [1.5, -2.0])
    np.testing.assert_array_equal(m2.graph.initializers["q"].const.astype(np.int8), [1, -3, 7])


def test_shape_inference_fills_intermediate_types():
    m = graphopt.load(mlp_model())
    graphopt.infer_shapes(m)
    assert m.graph.value("r").type == graphopt.TensorType(DType.FLOAT, ("N", 8))


# --- bad input ---------------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        graphopt.load(tmp_path / "nope.onnx")


@pytest.mark.parametrize("content", [b"", b"hello, I am not a model", None])
def test_truncated_or_garbage_files(tmp_path, content):
    p = tmp_path / "bad.onnx"
    p.write_bytes(mlp_model().SerializeToString()[:40] if content is None else content)
    with pytest.raises(ModelLoadError, match="bad.onnx"):
        graphopt.load(p)


def test_undefined_input_names_node():
    mp = mlp_model()
    mp.graph.node[1].input[1] = "b_missing"
    with pytest.raises(ModelLoadError, match="Add .*'b_missing' is not defined"):
        graphopt.load(mp)


def test_unknown_domain_names_node():
    mp = mlp_model()
    mp.graph.node[2].domain = "com.example"
    with pytest.raises(UnsupportedError, match="Relu.*'com.example'"):
        graphopt.load(mp)


def test_cycle_in_onnx_model():
    # a node that consumes a later node's output: loads (ONNX lists are not checked
    # for order) but verify() names the cycle
    mp = parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] y) {
        a = Add(x, x)
        y = Neg(a)
    }""")
    mp.graph.node[0].input[1] = "y"
    with pytest.raises(ModelLoadError, match="'y' is not defined"):
        graphopt.load(mp)  # forward references are undefined values in ONNX order


def test_type_mismatch_is_a_verification_error():
    mp = parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x, int64[2] i) => (float[2] y) {
        y = Add(x, i)
    }""")
    m = graphopt.load(mp)
    with pytest.raises(VerificationError, match="Add.*type mismatch"):
        m.verify()


def test_errors_share_a_base_class():
    assert issubclass(ModelLoadError, GraphoptError) and issubclass(VerificationError, GraphoptError)
