"""Big synthetic models for the scale benchmark, written straight to ONNX with external data.

Weights are random (never downloaded) and generated one tensor at a time into the data
file, so building a 4 GB model needs one tensor's memory, not the model's.

- :func:`matmul_stack`: ``x @ W1 @ W2 ...`` with ``hidden x hidden`` fp32 weights.
- :func:`llama_decoder`: a LLaMA-architecture decoder (RMSNorm, rotary embeddings,
  grouped-query causal attention, SwiGLU MLP, untied LM head) from a config dict, in
  standard ONNX ops; one forward pass over a fixed-length prompt (no KV cache).

>>> matmul_stack("stack.onnx", layers=4, hidden=256)           # doctest: +SKIP
>>> llama_decoder("llama.onnx", LLAMA_1B, seq=16)              # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..io.external_data import TensorWriter

__all__ = ["LLAMA_1B", "LLAMA_TINY", "llama_decoder", "llama_params", "matmul_stack"]

#: TinyLlama-1.1B's shape (LLaMA architecture, grouped-query attention): 1.10e9 parameters.
LLAMA_1B = dict(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                num_attention_heads=32, num_key_value_heads=4, rms_norm_eps=1e-5, rope_theta=10000.0)
#: The same architecture at test size.
LLAMA_TINY = dict(vocab_size=256, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5, rope_theta=10000.0)

_OPSET = 17


class _Builder:
    """Nodes, and initializers whose data goes to the external file as they are made."""

    def __init__(self, f, location: str, seed: int) -> None:
        self.writer = TensorWriter(f, location, threshold=1024)
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.n = 0

    def init(self, name: str, arr: np.ndarray) -> str:
        t = self.writer(arr, name, None) or numpy_helper.from_array(arr, name)
        self.inits.append(t)
        return name

    def weight(self, name: str, shape: tuple[int, ...], std: float = 0.02) -> str:
        w = self.rng.standard_normal(shape, dtype=np.float32)
        w *= std
        return self.init(name, w)

    def op(self, op: str, inputs: list[str], n_out: int = 1, **attrs) -> str | list[str]:
        self.n += 1
        outs = [f"{op.lower()}_{self.n}" + (f"_{i}" if n_out > 1 else "") for i in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=f"{op}_{self.n}", **attrs))
        return outs[0] if n_out == 1 else outs


def _write(path: str | os.PathLike, build, seed: int = 0) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    location = path.name + ".data"
    with open(path.parent / location, "wb") as f:
        b = _Builder(f, location, seed)
        graph_inputs, graph_outputs = build(b)
    g = helper.make_graph(b.nodes, path.stem, graph_inputs, graph_outputs, b.inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", _OPSET)], producer_name="graphopt-scale")
    m.ir_version = 8
    path.write_bytes(m.SerializeToString())
    return path


def matmul_stack(path: str | os.PathLike, layers: int, hidden: int, batch: int = 8, seed: int = 0) -> Path:
    """``y = x @ W1 @ ... @ Wn`` (std 1/sqrt(hidden) keeps activations O(1)); ``layers*hidden^2*4`` bytes."""
    def build(b: _Builder):
        x = "x"
        for i in range(layers):
            x = b.op("MatMul", [x, b.weight(f"w{i}", (hidden, hidden), hidden ** -0.5)])
        b.nodes[-1].output[0] = "y"
        return ([helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, hidden])],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, hidden])])
    return _write(path, build, seed)


def llama_params(cfg: dict) -> int:
    h, f, v, n = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    kv = cfg["num_key_value_heads"] * h // cfg["num_attention_heads"]
    return 2 * v * h + h + n * (2 * h * h + 2 * h * kv + 3 * h * f + 2 * h)


def _rope(seq: int, d: int, theta: float) -> tuple[np.ndarray, np.ndarray]:
    inv = 1.0 / theta ** (np.arange(0, d, 2, dtype=np.float64) / d)
    ang = np.outer(np.arange(seq), inv)
    ang = np.concatenate([ang, ang], axis=1)  # HF's rotate_half layout
    return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)


def llama_decoder(path: str | os.PathLike, cfg: dict, seq: int = 16, seed: int = 0) -> Path:
    """Logits ``[1, seq, vocab]`` of ``input_ids [1, seq]`` (int64) for a LLaMA decoder with random weights."""
    h, f, vocab = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d, eps = h // nh, float(cfg["rms_norm_eps"])
    rep = nh // nkv

    def build(b: _Builder):
        i64 = lambda name, v: b.init(name, np.asarray(v, np.int64))  # noqa: E731
        cos, sin = _rope(seq, d, float(cfg["rope_theta"]))
        b.init("rope_cos", cos)
        b.init("rope_sin", sin)
        b.init("causal_mask", np.triu(np.full((seq, seq), -1e9, np.float32), 1))
        b.init("eps", np.asarray(eps, np.float32))
        b.init("two", np.asarray(2.0, np.float32))
        b.init("scale", np.asarray(1.0 / np.sqrt(d), np.float32))
        i64("shape_q", [1, seq, nh, d])
        i64("shape_kv", [1, seq, nkv, d])
        i64("shape_kv5", [1, nkv, 1, seq, d])
        i64("expand_kv", [1, nkv, rep, seq, d])
        i64("shape_heads", [1, nh, seq, d])
        i64("shape_out", [1, seq, h])
        i64("half_lo", [0]), i64("half_mid", [d // 2]), i64("half_hi", [d]), i64("axis3", [3])

        def rms(x: str, name: str) -> str:
            var = b.op("ReduceMean", [b.op("Pow", [x, "two"])], axes=[-1], keepdims=1)
            inv = b.op("Reciprocal", [b.op("Sqrt", [b.op("Add", [var, "eps"])])])
            return b.op("Mul", [b.op("Mul", [x, inv]), b.init(name, np.ones(h, np.float32))])

        def rotary(x: str) -> str:  # x [1, heads, seq, d]
            x1 = b.op("Slice", [x, "half_lo", "half_mid", "axis3"])
            x2 = b.op("Slice", [x, "half_mid", "half_hi", "axis3"])
            rot = b.op("Concat", [b.op("Neg", [x2]), x1], axis=-1)
            return b.op("Add", [b.op("Mul", [x, "rope_cos"]), b.op("Mul", [rot, "rope_sin"])])

        def heads(x: str, shape: str) -> str:
            return b.op("Transpose", [b.op("Reshape", [x, shape])], perm=[0, 2, 1, 3])

        def repeat_kv(x: str) -> str:  # [1, nkv, seq, d] -> [1, nh, seq, d]
            if rep == 1:
                return x
            return b.op("Reshape", [b.op("Expand", [b.op("Reshape", [x, "shape_kv5"]), "expand_kv"]), "shape_heads"])

        x = b.op("Gather", [b.weight("embed_tokens", (vocab, h)), "input_ids"])
        for i in range(cfg["num_hidden_layers"]):
            p = f"layers.{i}."
            a = rms(x, p + "input_layernorm")
            q = rotary(heads(b.op("MatMul", [a, b.weight(p + "q_proj", (h, h))]), "shape_q"))
            k = rotary(heads(b.op("MatMul", [a, b.weight(p + "k_proj", (h, nkv * d))]), "shape_kv"))
            v = heads(b.op("MatMul", [a, b.weight(p + "v_proj", (h, nkv * d))]), "shape_kv")
            k, v = repeat_kv(k), repeat_kv(v)
            s = b.op("Mul", [b.op("MatMul", [q, b.op("Transpose", [k], perm=[0, 1, 3, 2])]), "scale"])
            probs = b.op("Softmax", [b.op("Add", [s, "causal_mask"])], axis=-1)
            ctx = b.op("Reshape", [b.op("Transpose", [b.op("MatMul", [probs, v])], perm=[0, 2, 1, 3]), "shape_out"])
            x = b.op("Add", [x, b.op("MatMul", [ctx, b.weight(p + "o_proj", (h, h))])])
            m = rms(x, p + "post_attention_layernorm")
            gate = b.op("MatMul", [m, b.weight(p + "gate_proj", (h, f))])
            up = b.op("MatMul", [m, b.weight(p + "up_proj", (h, f))])
            act = b.op("Mul", [b.op("Mul", [gate, b.op("Sigmoid", [gate])]), up])
            x = b.op("Add", [x, b.op("MatMul", [act, b.weight(p + "down_proj", (f, h))])])
        logits = b.op("MatMul", [rms(x, "norm"), b.weight("lm_head", (h, vocab))])
        b.nodes[-1].output[0] = "logits"
        del logits
        return ([helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, seq])],
                [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, seq, vocab])])
    return _write(path, build, seed)
