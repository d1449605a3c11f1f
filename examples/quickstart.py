"""Optimize, quantize with your own data, compile natively, save -- the flow API end to end.

    python examples/quickstart.py [OUT_DIR]

Builds a small two-layer MLP as ONNX (in real use: ``graphopt.load("model.onnx")``).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import graphopt


def mlp_onnx(d: int = 32, hidden: int = 64) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32) * 0.2, n)
             for n, s in (("w1", (d, hidden)), ("b1", (hidden,)), ("w2", (hidden, d)), ("b2", (d,)))]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Add", ["h", "b1"], ["hb"]),
             helper.make_node("Relu", ["hb"], ["r"]), helper.make_node("MatMul", ["r", "w2"], ["o"]),
             helper.make_node("Add", ["o", "b2"], ["y"])]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", d])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", d])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def main(out: Path) -> None:
    model = graphopt.load(mlp_onnx())
    optimized = graphopt.optimize(model, level="O2")

    # calibration data: any list/iterable of feed dicts (or a folder of .npz files, or a callable)
    rng = np.random.default_rng(1)
    calib = [{"x": rng.standard_normal((8, 32)).astype(np.float32)} for _ in range(4)]
    quantized = graphopt.quantize(model, calib, mode="static")

    x = {"x": rng.standard_normal((2, 32)).astype(np.float32)}
    fp32 = graphopt.compile(optimized).run(x)[0]
    sess = graphopt.compile(quantized)           # a QDQ model compiles to int8 kernels by itself
    int8 = sess.run(x)[0]
    print(f"native {sess.precision}: max |int8 - fp32| = {np.abs(int8 - fp32).max():.4f}")

    path = graphopt.save(quantized, out / "mlp.int8.onnx")   # loads in onnxruntime and back in graphopt
    print(f"wrote {path}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()))
