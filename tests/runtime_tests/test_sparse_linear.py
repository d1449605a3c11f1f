"""int8 Linear on the 4x1-block sparse kernel: chosen from the node's mark (also after save/load),
bit-identical to the dense int8 plan, and close to onnxruntime on the real MiniLM."""

from __future__ import annotations

import numpy as np

import graphopt
from graphopt.ir import NODE_PROPS
from graphopt.quant.testing import mlp_model, random_batches


def _unmarked(model):
    m = graphopt.load(graphopt.to_onnx(model).SerializeToString())
    for n in m.graph.walk():
        n.meta.pop(NODE_PROPS, None)
    return m


def _sparse_steps(sess) -> int:
    return str(sess.summary()).count("sparse_4x1@")


def test_marked_linears_run_sparse_and_bit_identical_to_dense(tmp_path):
    m, rep = graphopt.prune(mlp_model(d=64, hidden=256), sparsity=0.8, pattern="4x1", progress=False)
    feeds = random_batches(1, d=64, seq=19, batch=3)[0]
    sparse = graphopt.compile(m, precision="int8")
    dense = graphopt.compile(_unmarked(m), precision="int8")
    assert _sparse_steps(sparse) == 3 and _sparse_steps(dense) == 0
    np.testing.assert_array_equal(sparse.run(feeds)[0], dense.run(feeds)[0])
    back = graphopt.compile(str(graphopt.save(m, tmp_path / "m.onnx")), precision="int8")
    assert _sparse_steps(back) == 3
    np.testing.assert_array_equal(back.run(feeds)[0], dense.run(feeds)[0])


def test_static_qdq_model_keeps_the_sparse_kernel():
    m, _ = graphopt.prune(mlp_model(d=64, hidden=256), sparsity=0.75, pattern="4x1", progress=False)
    calib = random_batches(4, d=64)
    q = graphopt.quantize(m, calib, progress=False)
    sess = graphopt.compile(q)
    assert _sparse_steps(sess) >= 2
    feeds = random_batches(1, d=64, seed=7)[0]
    np.testing.assert_array_equal(sess.run(feeds)[0], graphopt.compile(_unmarked(q)).run(feeds)[0])


def test_sparse_minilm_int8_vs_onnxruntime(minilm_spec, tmp_path):
    import onnxruntime as ort

    from graphopt.data import sentences
    from graphopt.models import sample_feeds

    m, rep = graphopt.prune(graphopt.load(minilm_spec.path), sparsity=0.75, pattern="4x1", progress=False)
    assert rep.sparsity is not None and all(x.mark == "4x1" for x in rep.sparsity.layers)
    feeds = sample_feeds(minilm_spec, sentences("eval")[:4], batch=4, seq=32)
    sess = graphopt.compile(m, precision="int8")
    assert _sparse_steps(sess) == 6 * 4  # QKV, output projection, FFN up and down in every layer
    got = sess.run(feeds)[0]
    np.testing.assert_array_equal(got, graphopt.compile(_unmarked(m), precision="int8").run(feeds)[0])
    path = graphopt.save(m, tmp_path / "sparse.onnx")  # fused ops as onnxruntime contrib ops
    ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    a, b = got.reshape(-1, got.shape[-1]), ref.reshape(-1, ref.shape[-1])
    cos = np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.98, cos.min()
