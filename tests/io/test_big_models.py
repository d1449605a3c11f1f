"""Big models (issue 16): constants mapped not copied, save streams tensors to the data file,
memory bounded per step (in child processes), calibration bounded whatever the batch count."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

import graphopt
from graphopt.bench.scale import run_step
from graphopt.bench.scale_models import LLAMA_TINY, llama_decoder, matmul_stack
from graphopt.io import external_data, onnx_export
from graphopt.io.atomic import atomic_output
from graphopt.ir.mapped import is_mapped


def _ort(path: Path, feeds: dict) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


@pytest.fixture
def stack(tmp_path: Path) -> Path:
    return matmul_stack(tmp_path / "stack.onnx", layers=3, hidden=128, batch=2)


def test_load_maps_external_data_without_copying(stack: Path) -> None:
    m = graphopt.load(stack)
    ws = [v.const for v in m.graph.initializers.values()]
    assert len(ws) == 3 and all(is_mapped(w) for w in ws)
    assert not any(w.flags.writeable for w in ws)  # copy on write: a pass must build a new array
    with pytest.raises(ValueError):
        ws[0][0, 0] = 1.0
    ref = onnx.load(str(stack))
    for t, w in zip(ref.graph.initializer, ws):
        np.testing.assert_array_equal(numpy_helper.to_array(t), w)


def test_modified_constant_is_a_new_array_and_the_file_is_untouched(stack: Path, tmp_path: Path) -> None:
    before = (stack.parent / (stack.name + ".data")).read_bytes()
    m = graphopt.load(stack)
    v = next(iter(m.graph.initializers.values()))
    v.const = v.const * 2.0  # what a folding/quantizing pass does
    assert not is_mapped(v.const)
    graphopt.save(m, tmp_path / "out.onnx")
    assert (stack.parent / (stack.name + ".data")).read_bytes() == before
    x = np.ones((2, 128), np.float32)
    np.testing.assert_allclose(_ort(tmp_path / "out.onnx", {"x": x}), 2 * _ort(stack, {"x": x}), rtol=1e-5)


def test_save_streams_weights_and_never_puts_them_in_the_proto(stack: Path, tmp_path: Path, monkeypatch) -> None:
    m = graphopt.load(stack)
    protos = []
    real_to_onnx = onnx_export.to_onnx

    def spy(*a, **k):
        protos.append(real_to_onnx(*a, **k))
        return protos[-1]

    def no_big_tensor(arr, *a, **k):
        assert np.asarray(arr).nbytes < 1024, "a weight went through a TensorProto"
        return real_array_to_tensor(arr, *a, **k)

    real_array_to_tensor = onnx_export.array_to_tensor
    monkeypatch.setattr(onnx_export, "to_onnx", spy)
    monkeypatch.setattr(onnx_export, "array_to_tensor", no_big_tensor)
    monkeypatch.setattr(external_data, "_WRITE_CHUNK", 4096)  # many write() calls per tensor, as for > 2 GB
    out = graphopt.save(m, tmp_path / "out.onnx")
    (mp,) = protos
    assert all(t.data_location == onnx.TensorProto.EXTERNAL and not t.raw_data for t in mp.graph.initializer)
    assert out.stat().st_size < 4096 and (tmp_path / "out.onnx.data").stat().st_size >= 3 * 128 * 128 * 4
    assert not list(tmp_path.glob(".*tmp"))  # atomic: no temporaries left
    onnx.checker.check_model(str(out))
    x = np.random.default_rng(0).standard_normal((2, 128)).astype(np.float32)
    np.testing.assert_allclose(_ort(out, {"x": x}), _ort(stack, {"x": x}), rtol=1e-5)
    back = graphopt.load(out)
    assert all(is_mapped(v.const) for v in back.graph.initializers.values())


def test_default_save_goes_external_above_the_inline_limit(tmp_path: Path, monkeypatch) -> None:
    # the mechanism that lets a single > 2 GB tensor be saved, with the limit scaled down
    w = np.random.default_rng(1).standard_normal((512, 1024)).astype(np.float32)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", 1, [1, 512])],
                          [helper.make_tensor_value_info("y", 1, [1, 1024])], [numpy_helper.from_array(w, "w")])
    m = graphopt.from_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    monkeypatch.setattr(onnx_export, "_INLINE_LIMIT", 1 << 20)
    out = graphopt.save(m, tmp_path / "big.onnx")
    assert (tmp_path / "big.onnx.data").stat().st_size == w.nbytes
    x = np.ones((1, 512), np.float32)
    np.testing.assert_allclose(_ort(out, {"x": x}), x @ w, rtol=1e-4, atol=1e-3)
    sess = graphopt.compile(str(out))
    np.testing.assert_allclose(sess.run({"x": x})[0], x @ w, rtol=1e-4, atol=1e-3)


def test_atomic_write_keeps_the_old_file_on_error(tmp_path: Path) -> None:
    p = tmp_path / "m.onnx"
    p.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_output(p) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")
    assert p.read_bytes() == b"old" and list(tmp_path.iterdir()) == [p]


def test_truncated_external_data_is_a_clear_error(stack: Path) -> None:
    data = stack.parent / (stack.name + ".data")
    data.write_bytes(data.read_bytes()[:1000])
    with pytest.raises(graphopt.ModelLoadError, match="truncated"):
        graphopt.load(stack)


def test_weight_only_int4_on_mapped_weights_matches_onnxruntime(stack: Path, tmp_path: Path) -> None:
    from graphopt.quant.api import quantize
    from graphopt.quant.config import QuantConfig

    m = graphopt.load(stack)
    quantize(m, QuantConfig(mode="weight-only", weight_bits=4, group_size=32), progress=False)
    assert [n.op_type for n in m.graph] == ["MatMulNBits"] * 3 and not m.graph.initializers.get("w0")
    out = graphopt.save(m, tmp_path / "q.onnx")
    x = np.random.default_rng(0).standard_normal((2, 128)).astype(np.float32)
    want = _ort(out, {"x": x})
    _close_int8(graphopt.compile(str(out)).run({"x": x})[0], want)


def _close_int8(got: np.ndarray, want: np.ndarray) -> None:
    """int8 activations (the int4 kernel's default where the CPU has VNNI) vs onnxruntime's fp32 compute."""
    cos = float((got * want).sum() / np.linalg.norm(got) / np.linalg.norm(want))
    assert cos > 0.999 and np.abs(got - want).max() < 0.03 * np.abs(want).max(), cos


def test_compiled_int4_plan_reads_the_mapped_weights_in_place(tmp_path: Path) -> None:
    from graphopt.quant.api import quantize
    from graphopt.quant.config import QuantConfig

    m = graphopt.load(matmul_stack(tmp_path / "s.onnx", layers=2, hidden=512, batch=2))
    quantize(m, QuantConfig(mode="weight-only", weight_bits=4, group_size=32), progress=False)
    out = graphopt.save(m, tmp_path / "q.onnx", external_data=True)
    data = (tmp_path / "q.onnx.data").stat().st_size
    sess = graphopt.compile(str(out))
    assert sess.summary().const_bytes < data / 4  # the packed weights and scales are not copied
    x = np.random.default_rng(0).standard_normal((2, 512)).astype(np.float32)
    want = _ort(out, {"x": x})
    first = sess.run({"x": x})[0]
    _close_int8(first, want)
    np.testing.assert_array_equal(sess.run({"x": x})[0], first)
    del m
    import gc

    gc.collect()
    np.testing.assert_array_equal(sess.run({"x": x})[0], first)  # the plan keeps the mapping


_MB = 200  # model size for the peak-memory checks (each step alone in a child process)


@pytest.fixture(scope="module")
def model_200mb(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("scale")
    return matmul_stack(d / "s.onnx", layers=_MB // 4, hidden=1024, batch=4)


@pytest.mark.parametrize("step,bound", [("load", 1.2), ("save", 1.2), ("o2", 1.5), ("rtn", 1.5), ("compile", 1.5)])
def test_peak_memory_in_proportion_to_the_model(model_200mb: Path, step: str, bound: float) -> None:
    nbytes = sum(p.stat().st_size for p in model_200mb.parent.glob("s.onnx*"))
    r = run_step(step, model_200mb, timeout=300)
    assert "error" not in r, r
    assert r["peak_mb"] * 2**20 <= bound * nbytes, f"{step}: peak {r['peak_mb']:.0f} MB for a {nbytes / 2**20:.0f} MB model"


_CALIB = r"""
import json, sys, numpy as np
from onnx import helper, numpy_helper
import graphopt
from graphopt.bench.scale import _status, peak_rss_mb, reset_peak
from graphopt.quant.calibrate import calibrate
w = np.random.default_rng(0).standard_normal((256, 256)).astype(np.float32) / 16
nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "w"], ["y"])]
g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", 1, [2048, 256])],
                      [helper.make_tensor_value_info("y", 1, [2048, 256])], [numpy_helper.from_array(w, "w")])
m = graphopt.from_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
batches = int(sys.argv[1])
def data():  # a generator: the batches are never all in memory either
    rng = np.random.default_rng(1)
    for _ in range(batches):
        yield {"x": rng.standard_normal((2048, 256)).astype(np.float32)}
base = _status("VmRSS"); reset_peak()
res = calibrate(m, data(), ["x", "h", "r", "y"], progress=False)
print(json.dumps({"batches": res.batches, "peak_mb": peak_rss_mb() - base}))
"""


def test_calibration_memory_is_bounded_whatever_the_number_of_batches() -> None:
    # 4 observed values x 2 MB per batch: 40 batches would keep ~340 MB of activations
    p = subprocess.run([sys.executable, "-c", _CALIB, "40"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["batches"] == 40 and r["peak_mb"] < 120, r


@pytest.mark.slow
def test_llama_builder_matches_transformers(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    path = llama_decoder(tmp_path / "llama.onnx", LLAMA_TINY, seq=8)
    W = {t.name: numpy_helper.to_array(t, str(tmp_path)) for t in onnx.load(str(path)).graph.initializer}
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**LLAMA_TINY, tie_word_embeddings=False)).eval()
    sd = {"model.embed_tokens.weight": W["embed_tokens"], "lm_head.weight": W["lm_head"].T,
          "model.norm.weight": W["norm"]}
    for i in range(LLAMA_TINY["num_hidden_layers"]):
        p = f"layers.{i}."
        sd.update({f"model.{p}self_attn.{n}.weight": W[p + n].T for n in ("q_proj", "k_proj", "v_proj", "o_proj")})
        sd.update({f"model.{p}mlp.{n}.weight": W[p + n].T for n in ("gate_proj", "up_proj", "down_proj")})
        sd.update({f"model.{p}{n}.weight": W[p + n] for n in ("input_layernorm", "post_attention_layernorm")})
    hf.load_state_dict({k: torch.tensor(np.ascontiguousarray(v)) for k, v in sd.items()}, strict=False)
    ids = np.random.default_rng(0).integers(0, LLAMA_TINY["vocab_size"], (1, 8))
    with torch.no_grad():
        want = hf(torch.tensor(ids)).logits.numpy()
    np.testing.assert_allclose(_ort(path, {"input_ids": ids}), want, atol=1e-5)


def test_streamed_quantizers_match_the_whole_tensor_versions() -> None:
    from graphopt.passes.quant.insert_qdq import _quantize_rows
    from graphopt.quant.specs import QType, QuantSpec
    from graphopt.quant.weights import quantize_int4_blocks, quantize_weight

    rng = np.random.default_rng(0)
    w = rng.standard_normal((100, 70)).astype(np.float32)
    whole = quantize_int4_blocks(w, 32, chunk_bytes=1 << 30)
    chunked = quantize_int4_blocks(w, 32, chunk_bytes=4 * 128 * 3)  # 3 output channels per chunk
    for a, b in zip(whole, chunked):
        np.testing.assert_array_equal(a, b)
    spec = QuantSpec(QType.S8, symmetric=True, per_channel=True, axis=0)
    q1, p1 = quantize_weight(w, spec)
    q2, p2 = _quantize_rows(w, spec, chunk_bytes=70 * 4 * 7)
    np.testing.assert_array_equal(q1, q2)
    np.testing.assert_array_equal(p1.scale, p2.scale)


_LLAMA_MID = dict(vocab_size=4000, hidden_size=1024, intermediate_size=2816, num_hidden_layers=4,
                  num_attention_heads=8, num_key_value_heads=2, rms_norm_eps=1e-5, rope_theta=10000.0)


def test_o2_on_a_mapped_llama_packs_gate_up_without_a_second_copy(tmp_path: Path) -> None:
    # fuse-silu-gated-mlp packs [gate | up] of every layer: from mapped weights the packed tensor is
    # file-backed and filled a slice at a time (it was 0.93x the model in resident memory)
    path = llama_decoder(tmp_path / "llama.onnx", _LLAMA_MID, seq=8)
    nbytes = sum(p.stat().st_size for p in tmp_path.glob("llama.onnx*"))
    r = run_step("o2", path, timeout=300)
    assert "error" not in r, r
    assert r["peak_mb"] * 2**20 <= 0.5 * nbytes, r


def test_o2_mapped_llama_runs_like_onnxruntime(tmp_path: Path) -> None:
    from graphopt.pm.manager import PassManager

    path = llama_decoder(tmp_path / "llama.onnx", LLAMA_TINY, seq=8)
    m = graphopt.load(path)
    PassManager.from_text("O2")(m)
    silu = [n for n in m.graph if n.op_type == "SiluMul"]
    packed = [n.inputs[0].producer().inputs[1].const for n in silu]
    assert len(packed) == LLAMA_TINY["num_hidden_layers"] and all(is_mapped(w) for w in packed)
    ids = np.random.default_rng(0).integers(0, LLAMA_TINY["vocab_size"], (1, 8)).astype(np.int64)
    want = _ort(path, {"input_ids": ids})
    np.testing.assert_allclose(graphopt.compile(m).run({"input_ids": ids})[0], want, rtol=1e-4, atol=1e-4)
    out = graphopt.save(m, tmp_path / "o2.onnx")
    np.testing.assert_allclose(_ort(out, {"input_ids": ids}), want, rtol=1e-4, atol=1e-4)


def test_saved_int4_llama_compiles_without_fallbacks(tmp_path: Path) -> None:
    """O2 + int4 LLaMA saved and compiled from the file (what benchmarks/llama_1b.py times): the
    SiLU that SiluMul exports as com.microsoft QuickGelu(alpha=1) reads back as graphopt::Silu,
    so nothing runs through onnxruntime inside the plan."""
    from graphopt.pm.manager import PassManager
    from graphopt.quant.api import quantize
    from graphopt.quant.config import QuantConfig

    m = graphopt.load(llama_decoder(tmp_path / "l.onnx", LLAMA_TINY, seq=8))
    PassManager.from_text("O2")(m)
    quantize(m, QuantConfig(mode="weight-only", weight_bits=4, group_size=32), progress=False)
    out = graphopt.save(m, tmp_path / "q.onnx", external_data=True)
    back = graphopt.load(out)
    ops = back.graph.op_counts()
    assert "com.microsoft::QuickGelu" not in ops and ops.get("graphopt::Silu", 0) == LLAMA_TINY["num_hidden_layers"]
    sess = graphopt.compile(str(out))
    assert sess.summary().fallbacks == []
    ids = np.random.default_rng(0).integers(0, LLAMA_TINY["vocab_size"], (1, 8)).astype(np.int64)
    _close_int8(sess.run({"input_ids": ids})[0], _ort(out, {"input_ids": ids}))


@pytest.mark.parametrize("mode", ["f32", "bf16"])
@pytest.mark.parametrize("k,n", [(67, 300), (2, 17), (64, 48), (1, 5)])
def test_packing_reads_strided_rows_on_threads(mode: str, k: int, n: int) -> None:
    """A column slice of a larger weight packs in place (no contiguous copy) on several threads and
    gives the same bits as the contiguous copy packed on one; odd K and ragged N included."""
    from graphopt import _C

    rng = np.random.default_rng(k * 1000 + n)
    big = rng.standard_normal((k, n + 37)).astype(np.float32)
    x = rng.standard_normal((3, k)).astype(np.float32)
    outs = []
    for w, threads in ((big[:, 5:5 + n], 3), (np.ascontiguousarray(big[:, 5:5 + n]), 1)):
        plan = _C.Plan()
        xs, ys = plan.add_slot(1, "x"), plan.add_slot(1, "y")
        si = plan.add_step("Linear", "lin", [xs], [ys], {"act": 0, "mode": 0 if mode == "f32" else 1}, {}, [])
        plan.pack_weight(si, w, mode, False, None, threads)
        plan.set_io([xs], [ys])
        outs.append(plan.run([x], 1)[0])
    np.testing.assert_array_equal(outs[0], outs[1])
    tol = 1e-5 if mode == "f32" else 3e-2
    np.testing.assert_allclose(outs[0], x @ big[:, 5:5 + n], rtol=tol, atol=tol * np.sqrt(k))
    if k > 1:
        with pytest.raises(ValueError, match="contiguous"):
            plan.pack_weight(si, big.T, mode)  # columns are not rows: refused, never misread


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_mapped_weights_pack_from_column_slices_like_onnxruntime(tmp_path: Path, precision: str) -> None:
    """Two threads split each weight into two column parts, both strided views of the mapping."""
    path = matmul_stack(tmp_path / "s.onnx", layers=3, hidden=200, batch=4)
    m = graphopt.load(path)
    assert is_mapped(m.graph.initializers["w0"].const)
    x = np.random.default_rng(0).standard_normal((4, 200)).astype(np.float32)
    got = graphopt.compile(m, precision=precision, num_threads=2).run({"x": x})[0]
    tol = 1e-4 if precision == "fp32" else 5e-2
    np.testing.assert_allclose(got, _ort(path, {"x": x}), rtol=tol, atol=tol)


def _mapped_rss_kb(data_file: Path) -> int:
    """Resident kB of this process's mappings of ``data_file`` (/proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5 and ":" in head[3]:  # a mapping's header line
            inside = line.endswith(str(data_file))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs /proc/self/smaps")
def test_int4_first_run_drops_the_mapped_weights_it_repacked(tmp_path: Path) -> None:
    """The int8 path reads only its packed copy after the first run: the mapped MatMulNBits
    tensors leave the resident set, and stay readable (the fp32 path, after the ISA cap drops,
    faults them back and gives the fp32 result)."""
    from graphopt import _C
    from graphopt.quant.api import quantize
    from graphopt.quant.config import QuantConfig

    if _C.isa_available() not in ("avx512_vnni", "avx512_bf16", "amx"):
        pytest.skip("the int8-activation int4 path packs only on AVX-512 VNNI")
    m = graphopt.load(matmul_stack(tmp_path / "s.onnx", layers=2, hidden=1024, batch=2))
    quantize(m, QuantConfig(mode="weight-only", weight_bits=4, group_size=32), progress=False)
    out = graphopt.save(m, tmp_path / "q.onnx", external_data=True)
    data = (tmp_path / "q.onnx.data").resolve()
    x = np.random.default_rng(0).standard_normal((2, 1024)).astype(np.float32)
    sess = graphopt.compile(str(out))
    first = sess.run({"x": x})[0]
    assert sess.summary().packed_bytes > 0
    assert _mapped_rss_kb(data) * 1024 < data.stat().st_size / 4  # 1.3 MB mapped, ~0.1 MB resident (was all)
    np.testing.assert_array_equal(sess.run({"x": x})[0], first)
    before = _C.isa_selected()
    _C.set_max_isa("avx512")  # no int8 path: the fp32 path reads the dropped pages again
    try:
        fp32 = sess.run({"x": x})[0]
    finally:
        _C.set_max_isa(before)
    _close_int8(first, fp32)
    np.testing.assert_allclose(fp32, _ort(out, {"x": x}), rtol=1e-4, atol=1e-4)
