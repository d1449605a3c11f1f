"""graphopt.from_torch: torch.nn.Module -> ONNX (dynamo exporter, TorchScript fallback) -> IR."""

import logging
import subprocess
import sys

import numpy as np
import pytest

import graphopt
from graphopt.errors import GraphoptError

import torch as torch


def _ort(model, feeds):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(graphopt.to_onnx(model).SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _close(got, want, tol=1e-4):
    want = want.detach().numpy() if hasattr(want, "detach") else want
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= tol * max(1.0, float(np.abs(want).max()))


def _cnn():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                              torch.nn.MaxPool2d(2), torch.nn.Conv2d(8, 16, 3), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10))
    with torch.no_grad():  # non-trivial BN statistics
        net[1].running_mean.uniform_(-0.5, 0.5)
        net[1].running_var.uniform_(0.5, 2.0)
    return net.eval()


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_cnn_matches_torch_with_dynamic_batch(exporter):
    net = _cnn()
    model = graphopt.from_torch(net, (torch.randn(2, 3, 32, 32),), input_names=["image"], output_names=["logits"],
                                dynamic_shapes={"image": {0: "batch"}}, exporter=exporter)
    model.verify()
    (inp,) = [v for v in model.graph.inputs if not v.is_initializer]
    assert inp.name == "image" and inp.shape[0] == "batch"
    assert [v.name for v in model.graph.outputs] == ["logits"]
    x = torch.randn(5, 3, 32, 32)
    _close(_ort(model, {"image": x.numpy()})[0], net(x))


def test_torch_export_dim_spec():
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()).eval()
    batch = torch.export.Dim("batch")
    model = graphopt.from_torch(net, (torch.randn(2, 4),), input_names=["x"], dynamic_shapes=({0: batch},),
                                exporter="dynamo")
    assert model.graph.inputs[0].shape[0] == "batch"
    x = torch.randn(7, 4)
    _close(_ort(model, {"x": x.numpy()})[0], net(x))


def test_export_leaves_the_module_mode_alone():
    net = _cnn().train()
    graphopt.from_torch(net, torch.randn(2, 3, 16, 16), exporter="torchscript")
    assert net.training and net[1].training
    net.eval()
    graphopt.from_torch(net, torch.randn(2, 3, 16, 16), exporter="torchscript")
    assert not net.training and not net[1].training


class _Keyword(torch.nn.Module):
    def forward(self, *, a, b):
        return {"total": a + 2 * b, "diff": a - b}


def test_dict_inputs_call_by_keyword_and_can_be_renamed():
    a, b = torch.randn(2, 3), torch.randn(2, 3)
    model = graphopt.from_torch(_Keyword(), {"a": a, "b": b}, input_names=["x", "y"])
    assert [v.name for v in model.graph.inputs] == ["x", "y"]
    assert [v.name for v in model.graph.outputs] == ["total", "diff"]
    total, diff = _ort(model, {"x": a.numpy(), "y": b.numpy()})
    _close(total, a + 2 * b)
    _close(diff, a - b)


def test_single_tensor_and_default_names():
    model = graphopt.from_torch(torch.nn.Linear(4, 3).eval(), torch.randn(2, 4))
    assert [v.name for v in model.graph.inputs if not v.is_initializer] == ["input"]
    assert [v.name for v in model.graph.outputs] == ["output"]


def _bert(kind, **cfg):
    import transformers as transformers
    torch.manual_seed(0)
    if kind == "bert":
        config = transformers.BertConfig(attn_implementation="eager", **cfg)
        return transformers.BertModel(config).eval()
    config = transformers.DistilBertConfig(attn_implementation="eager", **cfg)
    return transformers.DistilBertModel(config).eval()


def _token_feeds(batch, seq, names, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(100, 1000, (batch, seq), generator=g)
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[0, seq // 2:] = 0  # padding in the first row
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros(batch, seq, dtype=torch.long)}
    return {n: feeds[n] for n in names}


AXES = {"batch": 0, "seq": 1}


@pytest.mark.parametrize("kind,names,cfg", [
    ("bert", ("input_ids", "attention_mask", "token_type_ids"),
     dict(num_hidden_layers=2, hidden_size=128, num_attention_heads=4, intermediate_size=256)),
    ("distilbert", ("input_ids", "attention_mask"), dict(n_layers=2, dim=128, n_heads=4, hidden_dim=256)),
])
def test_transformers_match_torch_at_other_shapes(kind, names, cfg):
    module = _bert(kind, **cfg)
    model = graphopt.from_torch(module, _token_feeds(2, 16, names),
                                dynamic_shapes={n: {0: "batch", 1: "seq"} for n in names})
    assert [v.name for v in model.graph.inputs if not v.is_initializer] == list(names)
    assert model.graph.outputs[0].name == "last_hidden_state"
    assert model.graph.outputs[0].shape[:2] == ("batch", "seq")
    feeds = _token_feeds(3, 24, names, seed=1)  # a batch and length the export never saw
    want = module(**feeds)
    got = _ort(model, {k: v.numpy() for k, v in feeds.items()})
    _close(got[0], want.last_hidden_state)


@pytest.mark.slow
def test_minilm_real_weights_match_torch():
    import transformers  # noqa: F401 - installed with the suite's extras
    from transformers import AutoModel

    from graphopt.models import minilm_path, minilm_tokenizer

    module = AutoModel.from_pretrained(str(minilm_path()), attn_implementation="eager").eval()
    tok = minilm_tokenizer()
    enc = tok(["The quick brown fox jumps over the lazy dog.", "Graph compilers fuse operators."],
              padding=True, return_tensors="pt")
    names = ("input_ids", "attention_mask", "token_type_ids")
    model = graphopt.from_torch(module, {n: enc[n] for n in names},
                                dynamic_shapes={n: {0: "batch", 1: "seq"} for n in names})
    enc2 = tok(["She planted tomatoes in the garden after the last frost of spring.",
                "Quantization trades a little accuracy for a large gain in speed.", "Short one."],
               padding=True, return_tensors="pt")
    want = module(**{n: enc2[n] for n in names})
    got = _ort(model, {n: enc2[n].numpy() for n in names})
    _close(got[0], want.last_hidden_state)
    _close(got[1], want.pooler_output)
    # why "auto" prefers TorchScript: O2 fuses every attention block of its graph
    from graphopt.pm import PassManager

    PassManager.from_text("O2")(model)
    assert model.graph.op_counts().get("graphopt::MultiHeadAttention") == 6


class _RMSNorm(torch.nn.Module):
    def forward(self, x):
        return torch.nn.functional.rms_norm(x, (x.shape[-1],))  # no TorchScript symbolic at opset 17


def test_auto_falls_back_to_dynamo_with_a_logged_reason(caplog):
    x = torch.randn(2, 3, 8)
    with caplog.at_level(logging.WARNING, logger="graphopt.io.torch_import"):
        model = graphopt.from_torch(_RMSNorm(), (x,), input_names=["x"])
    assert "the torchscript exporter failed on _RMSNorm" in caplog.text
    assert "falling back to the dynamo exporter" in caplog.text
    _close(_ort(model, {"x": x.numpy()})[0], _RMSNorm()(x))


class _DataDependent(torch.nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # Python control flow on a value: TorchScript freezes it, torch.export refuses
            return x * 2
        return x - 1


def test_traced_value_branch_is_logged_and_dynamo_refuses_it(caplog):
    x = torch.ones(2, 3)
    with caplog.at_level(logging.WARNING, logger="graphopt.io.torch_import"):
        model = graphopt.from_torch(_DataDependent(), (x,), input_names=["x"])
    assert "tracer warning" in caplog.text and "_DataDependent" in caplog.text
    _close(_ort(model, {"x": x.numpy()})[0], x * 2)
    with pytest.raises(GraphoptError, match="cannot export _DataDependent"):
        graphopt.from_torch(_DataDependent(), (x,), exporter="dynamo")


class _Unexportable(torch.nn.Module):
    def forward(self, x):
        return torch.linalg.eigvals(x).real  # complex intermediate, no ONNX symbolic


def test_unexportable_module_names_module_and_op():
    with pytest.raises(GraphoptError) as ei:
        graphopt.from_torch(_Unexportable(), (torch.randn(3, 3),))
    msg = str(ei.value)
    assert "_Unexportable" in msg
    assert "dynamo exporter" in msg and "torchscript exporter" in msg
    assert "eig" in msg
    assert ei.value.__cause__ is not None


def test_bad_arguments():
    with pytest.raises(GraphoptError, match="exporter must be one of"):
        graphopt.from_torch(torch.nn.ReLU(), torch.randn(2), exporter="onnx")
    with pytest.raises(GraphoptError, match="torch.nn.Module"):
        graphopt.from_torch(lambda x: x, torch.randn(2))
    with pytest.raises(GraphoptError, match="1 input_names for 2"):
        graphopt.from_torch(torch.nn.Bilinear(2, 2, 1), (torch.randn(1, 2), torch.randn(1, 2)), input_names=["a"])
    with pytest.raises(GraphoptError, match="unknown input"):
        graphopt.from_torch(torch.nn.ReLU(), torch.randn(2, 2), input_names=["x"], dynamic_shapes={"y": {0: "b"}},
                            exporter="dynamo")


_NO_TORCH = """
import sys
sys.modules['torch'] = None  # any 'import torch' now raises ImportError
import graphopt
assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]
try:
    graphopt.from_torch(object(), ())
except graphopt.GraphoptError as e:
    print('ERR', e)
"""


def test_graphopt_imports_without_torch_and_says_how_to_install():
    out = subprocess.run([sys.executable, "-c", _NO_TORCH], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "pip install 'graphopt[torch]'" in out.stdout
    assert "torch==2.13.0" in out.stdout
