"""A digits CNN (scikit-learn's 8x8 digits, trained here in seconds) with its evaluation
functions written as a FILE.py:FUNC module, the form ``graphopt tune --eval`` and Ray workers use."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest


@pytest.fixture(scope="session")
def digits(tmp_path_factory):
    torch = pytest.importorskip("torch", reason="the CNN is trained with torch (graphopt[torch])")
    datasets = pytest.importorskip("sklearn.datasets", reason="the digits data set ships with scikit-learn")
    d = datasets.load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    y = d.target.astype(np.int64)
    idx = np.random.default_rng(0).permutation(len(x))
    tr, va, te = idx[:1200], idx[1200:1500], idx[1500:]
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(16 * 4 * 4, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x[tr]), torch.from_numpy(y[tr])
    for _ in range(8):
        for b in torch.randperm(len(tr)).split(100):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xt[b]), yt[b]).backward()
            opt.step()
    torch.set_num_threads(threads)
    root = tmp_path_factory.mktemp("digits")
    path = root / "digits_cnn.onnx"
    import warnings

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(net.eval(), torch.from_numpy(x[:1]), str(path), input_names=["image"],
                          output_names=["logits"], dynamic_axes={"image": {0: "n"}, "logits": {0: "n"}},
                          opset_version=17, dynamo=False)
    np.savez(root / "val.npz", image=x[va], labels=y[va])
    np.savez(root / "test.npz", image=x[te], labels=y[te])
    calib = root / "calib"
    calib.mkdir()
    for i in range(4):
        np.savez(calib / f"{i}.npz", image=x[tr][i * 50:(i + 1) * 50])
    ev = root / "digits_eval.py"
    ev.write_text(textwrap.dedent(f'''
        import numpy as np

        def _acc(run, f):
            z = np.load(f)
            return float((np.asarray(run({{"image": z["image"]}})[0]).argmax(1) == z["labels"]).mean())

        def validation(run):
            return _acc(run, {str(root / "val.npz")!r})

        def test(run):
            return _acc(run, {str(root / "test.npz")!r})

        REF = {{}}

        def exact(run):
            """0 for outputs equal to fp32's, negative otherwise (nothing quantized meets tolerance 0)."""
            z = np.load({str(root / "val.npz")!r})
            out = np.asarray(run({{"image": z["image"][:64]}})[0])
            if "ref" not in REF:
                REF["ref"] = out
            return -float(np.abs(out - REF["ref"]).max())

        def flips(run):
            """Per-sample scores: fp32's pattern for outputs equal to fp32's; otherwise 10 samples
            lost and 10 gained (the same mean, but no paired confidence in it)."""
            z = np.load({str(root / "val.npz")!r})
            out = np.asarray(run({{"image": z["image"][:64]}})[0])
            if "flips" not in REF:
                REF["flips"] = out
            pattern = np.tile([1.0, 0.0], 150)
            if np.array_equal(out, REF["flips"]):
                return pattern
            pattern[:20] = 1.0 - pattern[:20]
            return pattern
    '''))
    return {"path": path, "calib": calib, "eval": ev, "root": root}
