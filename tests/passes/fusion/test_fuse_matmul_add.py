from fusion_testlib import assert_not_fused, f32, fuse
from graphopt.passes.fusion.fuse_matmul_add import FuseMatMulAdd
from graphopt.testing.asserts import assert_op_counts

TEXT = ('<ir_version: 8, opset_import: ["" : 17]>\n'
        "g (float[2, 3, 8] x) => (float[2, 3, 4] y) {\n m = MatMul(x, w)\n y = Add(b, m)\n}")


def test_fused():
    after, stats = fuse(TEXT, "fuse-matmul-add", {"x": f32(2, 3, 8)}, {"w": f32(8, 4), "b": f32(4)})
    assert stats == {"fuse-matmul-add": 1}
    assert_op_counts(after, graphopt__Linear=1, MatMul=0, Add=0)


def test_row_bias_is_flattened():
    after, _ = fuse(TEXT, "fuse-matmul-add", {"x": f32(2, 3, 8)}, {"w": f32(8, 4), "b": f32(1, 4)})
    assert_op_counts(after, graphopt__Linear=1)


def test_broadcast_bias_is_rejected():
    assert_not_fused(TEXT.replace("float[2, 3, 4] y", "float[2, 3, 4] y"), "fuse-matmul-add", FuseMatMulAdd(),
                     "bias length 1 != output width 4", {"w": f32(8, 4), "b": f32(1)})


def test_bias_that_broadcasts_rows_is_rejected():
    assert_not_fused(TEXT, "fuse-matmul-add", FuseMatMulAdd(), "is not a vector over the last axis",
                     {"w": f32(8, 4), "b": f32(3, 4)})
