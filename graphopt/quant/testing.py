"""Small models and helpers for testing quantization (public, like graphopt.testing).

>>> m = mlp_model()
>>> sorted(m.graph.op_counts())
['Add', 'LayerNormalization', 'MatMul', 'Relu']
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..ir import Model

__all__ = ["mlp_model", "run_ort", "random_batches"]


def mlp_model(d: int = 16, hidden: int = 32, seed: int = 0, outlier: float = 20.0) -> Model:
    """``LayerNorm -> (MatMul+Add -> Relu -> MatMul+Add, and MatMul)`` on ``x[batch, seq, d]``.

    The LayerNorm output feeds two linear layers (a shared activation) and the
    residual, and channel 0 carries an outlier of size ``outlier`` (what
    SmoothQuant is for).
    """
    import onnx
    from onnx import helper, numpy_helper

    from ..io import from_onnx

    rng = np.random.default_rng(seed)
    gamma = np.ones(d, np.float32)
    gamma[0] = outlier
    inits = {
        "gamma": gamma, "beta": (rng.standard_normal(d) * 0.1).astype(np.float32),
        "w1": (rng.standard_normal((d, hidden)) / np.sqrt(d)).astype(np.float32),
        "b1": (rng.standard_normal(hidden) * 0.1).astype(np.float32),
        "w2": (rng.standard_normal((hidden, d)) / np.sqrt(hidden)).astype(np.float32),
        "b2": (rng.standard_normal(d) * 0.1).astype(np.float32),
        "w3": (rng.standard_normal((d, d)) / np.sqrt(d)).astype(np.float32),
    }
    nodes = [
        helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["ln"], name="ln", axis=-1),
        helper.make_node("MatMul", ["ln", "w1"], ["h1"], name="fc1"),
        helper.make_node("Add", ["h1", "b1"], ["h1b"], name="fc1_bias"),
        helper.make_node("Relu", ["h1b"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "w2"], ["h2"], name="fc2"),
        helper.make_node("Add", ["h2", "b2"], ["h2b"], name="fc2_bias"),
        helper.make_node("MatMul", ["ln", "w3"], ["h3"], name="side"),
        helper.make_node("Add", ["h2b", "h3"], ["s"], name="merge"),
        helper.make_node("Add", ["s", "ln"], ["y"], name="residual"),
    ]
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["b", "s", d])],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["b", "s", d])],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return from_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))


def random_batches(n: int, d: int = 16, seq: int = 8, batch: int = 4, seed: int = 1) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal((batch, seq, d)).astype(np.float32)} for _ in range(n)]


def run_ort(model: Model, feeds: dict[str, np.ndarray], outputs: Sequence[str] | None = None,
            optimize: bool = False) -> list[np.ndarray]:
    """Run ``model`` in onnxruntime (no graph rewrites unless ``optimize``)."""
    from .._ort import ort_session

    from ..io import to_onnx

    g = model.graph
    saved = list(g.outputs)
    extra = [g.value(n) for n in outputs or () if n not in {v.name for v in saved}]
    try:  # intermediate values are fetched by making them graph outputs for this run
        g.outputs = saved + extra
        proto = to_onnx(model)
    finally:
        g.outputs = saved
    sess = ort_session(proto, optimize=optimize)
    return sess.run(list(outputs) if outputs else [v.name for v in saved], feeds)
