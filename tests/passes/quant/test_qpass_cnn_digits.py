"""A small CNN trained here in seconds on scikit-learn's digits, exported to ONNX, quantized
static int8 by graphopt: top-1 accuracy drops by at most 1 point (QDQ and QOperator forms)."""

import numpy as np
import pytest

import graphopt
from graphopt.quant import QuantConfig, quantize

import torch as torch
import sklearn.datasets as datasets


@pytest.fixture(scope="module")
def digits_cnn(tmp_path_factory):
    d = datasets.load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]  # [N, 1, 8, 8]
    y = d.target.astype(np.int64)
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(x))
    tr, te = idx[:1400], idx[1400:]
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is fastest and does not fight other work on the box
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(16 * 4 * 4, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x[tr]), torch.from_numpy(y[tr])
    for epoch in range(10):
        for b in torch.randperm(len(tr)).split(100):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xt[b]), yt[b]).backward()
            opt.step()
    torch.set_num_threads(threads)
    path = tmp_path_factory.mktemp("cnn") / "digits_cnn.onnx"
    import warnings

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(net.eval(), torch.from_numpy(x[:1]), str(path), input_names=["image"],
                          output_names=["logits"], dynamic_axes={"image": {0: "n"}, "logits": {0: "n"}},
                          opset_version=17, dynamo=False)
    return path, x[tr], x[te], y[te]


def _accuracy(model_path, x, y):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return float((sess.run(None, {"image": x})[0].argmax(1) == y).mean())


@pytest.mark.parametrize("fmt", ["qdq", "qoperator"])
def test_int8_accuracy_drop_at_most_one_point(digits_cnn, tmp_path, fmt):
    path, x_train, x_test, y_test = digits_cnn
    acc32 = _accuracy(path, x_test, y_test)
    assert acc32 > 0.95, "the float CNN did not train"
    calib = [{"image": x_train[i:i + 50]} for i in range(0, 200, 50)]
    m, rep = quantize(graphopt.load(path), QuantConfig.cnn(), calib, fmt=fmt, progress=False)
    counts = m.graph.op_counts()
    if fmt == "qdq":
        assert counts["QuantizeLinear"] >= 4 and "QLinearConv" not in counts
    else:
        assert counts.get("QLinearConv", 0) >= 1
    out = graphopt.save(m, tmp_path / f"digits_int8_{fmt}.onnx")
    acc8 = _accuracy(out, x_test, y_test)
    print(f"digits CNN top-1: fp32 {acc32:.4f}, int8 {fmt} {acc8:.4f} ({len(y_test)} test images)")
    assert acc32 - acc8 <= 0.01
    assert out.stat().st_size < 0.4 * path.stat().st_size


@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_native_runtime_runs_the_quantized_cnn(digits_cnn, precision):
    """The QDQ graph compiles natively: int8 Convs and GEMMs take the calibrated scales and int8
    weights as they are (no Q/DQ steps, no fallbacks). The file's decision beats the compile
    precision: at bf16 the quantized Convs stay int8 (node_precision can still ask for bf16)."""
    path, x_train, x_test, y_test = digits_cnn
    calib = [{"image": x_train[i:i + 50]} for i in range(0, 200, 50)]
    m, _ = quantize(graphopt.load(path), QuantConfig.cnn(), calib, progress=False)
    sess = graphopt.compile(m, precision=precision)
    assert sess.fallbacks == []
    convs = [st for st in sess._steps if st.kind == "Conv"]
    assert len(convs) == 2 and all("int8 static" in st.detail for st in convs)
    assert not any(st.kind in ("QuantizeLinear", "DequantizeLinear") for st in sess._steps)
    acc32 = _accuracy(path, x_test, y_test)
    acc = float((sess.run({"image": x_test})[0].argmax(1) == y_test).mean())
    assert acc32 - acc <= 0.01, (acc32, acc)
