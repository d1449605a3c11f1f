"""ResNet-50 (the architecture of ONNX's backend light model, given random weights and
constant BatchNormalization statistics) after O2: no BatchNormalization left, Conv+Relu
fused, logits equal onnxruntime's on the original."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import graphopt
from graphopt.ops import lower_to_onnxruntime
from graphopt.pm import PassManager
from graphopt.testing.asserts import run_onnxruntime
from graphopt.conformance import data_root

pytestmark = pytest.mark.slow


def resnet50_with_weights(seed: int = 0) -> onnx.ModelProto:
    """light_resnet50.onnx with its ConstantOfShape-filled weights replaced by He-initialized
    random tensors and its BatchNormalization parameters (graph inputs there) made initializers."""
    path = os.path.join(data_root(), "light", "light_resnet50.onnx")
    if not os.path.exists(path):
        pytest.skip("onnx backend light models are not installed")
    mp = onnx.load(path)
    g = mp.graph
    rng = np.random.default_rng(seed)
    shapes = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    role = {}  # BatchNormalization(X, scale, B, mean, var): parameter name -> input position
    for n in g.node:
        if n.op_type == "BatchNormalization":
            role.update({name: i for i, name in enumerate(n.input) if i})

    def tensor(name: str, shape: tuple[int, ...]) -> np.ndarray:
        if name in role:  # scale and variance positive, bias and mean small
            return rng.uniform(0.5, 1.5, shape) if role[name] in (1, 4) else rng.normal(0, 0.1, shape)
        if len(shape) > 1:  # He initialization of conv / dense weights
            return rng.standard_normal(shape) * np.sqrt(2.0 / int(np.prod(shape[1:])))
        return rng.normal(0, 0.1, shape)

    weights = []
    keep = []
    for n in g.node:
        if n.op_type == "ConstantOfShape" and n.input[0] in shapes:
            shape = tuple(int(d) for d in shapes[n.input[0]])
            weights.append(numpy_helper.from_array(tensor(n.output[0], shape).astype(np.float32), n.output[0]))
        else:
            keep.append(n)
    del g.node[:]
    g.node.extend(keep)
    data = g.input[0]
    for vi in list(g.input)[1:]:
        if vi.name not in role:
            continue  # an initializer listed as input (IR 3), or unused
        shape = tuple(d.dim_value for d in vi.type.tensor_type.shape.dim)
        weights.append(numpy_helper.from_array(tensor(vi.name, shape).astype(np.float32), vi.name))
    del g.input[:]
    g.input.append(data)
    used = {i for n in g.node for i in n.input}
    kept_inits = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(kept_inits + weights)
    mp.ir_version = 8  # IR 3 (the file's) wants every initializer listed as a graph input
    # compare logits, not the final Softmax (random weights saturate it to one-hot)
    soft = next(n for n in g.node if n.op_type == "Softmax")
    g.output[0].name = soft.input[0]
    g.node.remove(soft)
    return mp


def test_resnet50_o2_folds_every_batchnorm():
    mp = resnet50_with_weights()
    before = graphopt.from_onnx(mp)
    assert before.graph.op_counts()["BatchNormalization"] == 53
    m = graphopt.from_onnx(mp)
    res = PassManager.from_text("O2")(m)
    ops = m.graph.op_counts()
    assert "BatchNormalization" not in ops, ops
    assert ops.get("graphopt::FusedConv") == 33 and ops.get("Conv") == 20, ops  # 33 Conv+BN+Relu, 20 before a Sum
    assert "Softmax" not in ops
    assert res.nodes_after < res.nodes_before
    lower_to_onnxruntime(m)
    x = np.random.default_rng(1).standard_normal((1, 3, 224, 224)).astype(np.float32)
    want = run_onnxruntime(before, {"gpu_0/data_0": x})[0]
    got = run_onnxruntime(m, {"gpu_0/data_0": x})[0]
    assert want.shape == (1, 1000)
    scale = float(np.abs(want).max())
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * scale)
    assert np.argmax(got) == np.argmax(want)
