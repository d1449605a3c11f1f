"""The zoo: every architecture of graphopt.testing.zoo in every export form through O2 and
the native runtime, against onnxruntime on the original graph.

Per (model, form): attention blocks fused / total, no Python fallbacks, native parity at
fp32 (max abs error 1e-4, on two different inputs whose reference outputs must differ by
>= 1 %), bf16 (cosine >= 0.999) and int8 (cosine >= 0.98), bit-identical outputs run to run at 1
and at 2 threads. Known gaps are strict xfails naming
the reason (GPT-2's and ViT's wrong native results, a SkipLayerNorm sum output never written
when the skip broadcasts, are fixed: their parity cases must pass). The coverage table is
printed after the run (tests/zoo/conftest.py).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import onnxruntime as ort  # noqa: E402

import graphopt  # noqa: E402
from graphopt.pm import PassManager  # noqa: E402
from graphopt.testing.zoo import COVERAGE, ZOO, CoverageRow, export, forms_of  # noqa: E402

pytestmark = [pytest.mark.e2e]

PRECISIONS = ("fp32", "bf16", "int8")
_ATTENTION_OPS = ("graphopt::MultiHeadAttention", "graphopt::Attention")
FP32_ATOL, BF16_COS, INT8_COS = 1e-4, 0.999, 0.98
SENSITIVITY = 1e-2

# (model, form, check) -> (reason, strict); form "*" = every form
KNOWN: dict[tuple[str, str, str], tuple[str, bool]] = {}


def _known(model: str, form: str, check: str) -> tuple[str, bool] | None:
    return KNOWN.get((model, form, check)) or KNOWN.get((model, "*", check))


def _cases(check: str) -> list[Any]:
    out = []
    for name, entry in ZOO.items():
        for attn, exporter in forms_of(entry):
            form = f"{attn}+{exporter}" if attn != "-" else exporter
            k = _known(name, form, check)
            marks = [pytest.mark.xfail(reason=k[0], strict=k[1])] if k else []
            out.append(pytest.param(name, attn, exporter, id=f"{name}-{form}", marks=marks))
    return out


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    n = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / n) if n else float("nan")


@dataclass
class _State:
    row: CoverageRow
    error: str | None = None
    mha: int = 0
    total: int = 0
    fallbacks: tuple[str, ...] = ()
    results: dict[str, tuple[float, float]] | None = None  # precision -> (max abs err, cosine)
    sensitivity: float = 0.0  # max |ref(x0) - ref(x1)| / max |ref(x0)| on two different inputs
    err2: float = float("inf")  # native fp32 max abs error on the second input
    kinds: Counter | None = None  # step kinds of the fp32 plan
    unstable: tuple[str, ...] = ()  # "precision@threads" whose two runs differed in a bit


_STATES: dict[tuple[str, str, str], _State] = {}


def _state(name: str, attn: str, exporter: str) -> _State:
    key = (name, attn, exporter)
    if key in _STATES:
        return _STATES[key]
    e = export(name, attn, exporter)
    row = COVERAGE.setdefault(e.id, CoverageRow(name, e.form))
    st = _State(row, total=e.entry.attention_blocks)
    _STATES[key] = st
    if e.error:
        st.error = e.error
        row.attention = "—"
        row.notes.append(e.error)
        return st
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(e.path), so, providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}  # TorchScript drops unused inputs (DeBERTa's token types)
    feeds = {k: v for k, v in e.feeds().items() if k in names}
    ref = sess.run(None, feeds)[0]
    feeds2 = {k: v for k, v in e.feeds(seed=1).items() if k in names}
    ref2 = sess.run(None, feeds2)[0]
    st.sensitivity = float(np.abs(ref - ref2).max() / max(float(np.abs(ref).max()), 1e-30))
    m = graphopt.load(e.path)
    PassManager.from_text("O2")(m)
    ops = m.graph.op_counts()
    st.mha = ops.get("graphopt::MultiHeadAttention", 0) + ops.get("graphopt::Attention", 0)
    row.attention = f"{st.mha}/{st.total}" if st.total else "n/a"
    row.fusions = ", ".join(f"{k.split('::')[1]}×{v}" for k, v in sorted(ops.items())
                            if k.startswith("graphopt::") and k not in _ATTENTION_OPS) or "—"
    st.results = {}
    for prec in PRECISIONS:
        s = graphopt.compile(m, precision=prec, level="O0", num_threads=2)
        if prec == "fp32":
            st.fallbacks = tuple(s.fallbacks)
            kinds = Counter(re.split(r"[ ']", f, maxsplit=1)[0] for f in st.fallbacks)
            row.fallbacks = ", ".join(f"{k}×{v}" for k, v in sorted(kinds.items())) or "0"
        y = _first(s.run(feeds))
        if prec == "fp32":
            st.kinds = Counter(step.kind for step in s._steps)
        # run to run at 2 threads (the session above) and at 1: bit-identical outputs
        s1 = graphopt.compile(m, precision=prec, level="O0", num_threads=1)
        for threads, sess_t, first in ((2, s, y), (1, s1, _first(s1.run(feeds)))):
            if not np.array_equal(first, _first(sess_t.run(feeds)), equal_nan=True):
                st.unstable += (f"{prec}@{threads}",)
        if prec == "fp32":
            y2 = _first(s.run(feeds2))
            st.err2 = float(np.abs(y2.astype(np.float64) - ref2).max()) if y2.shape == ref2.shape else float("inf")
        err = float(np.abs(y.astype(np.float64) - ref).max()) if y.shape == ref.shape else float("inf")
        st.results[prec] = (err, _cos(y, ref) if y.shape == ref.shape else float("nan"))
    row.fp32 = f"{st.results['fp32'][0]:.1e}"
    row.bf16 = f"{st.results['bf16'][1]:.4f}"
    row.int8 = f"{st.results['int8'][1]:.4f}"
    for check in ("attention", "fallbacks", *PRECISIONS):
        k = _known(name, e.form, check)
        if k:
            row.notes.append(f"{check}: {k[0]}")
    return st


def _first(y: Any) -> np.ndarray:
    y = y[0] if isinstance(y, (list, tuple)) else (next(iter(y.values())) if isinstance(y, dict) else y)
    return np.asarray(y)


def _exported(name: str, attn: str, exporter: str) -> _State:
    st = _state(name, attn, exporter)
    if st.error:
        pytest.skip(st.error)
    return st


@pytest.mark.parametrize("name,attn,exporter", _cases("export"))
def test_export(name, attn, exporter):
    st = _state(name, attn, exporter)
    if st.error and st.error.startswith("no such form"):
        pytest.skip(st.error)
    assert st.error is None, st.error


@pytest.mark.parametrize("name,attn,exporter", _cases("attention"))
def test_attention_fused(name, attn, exporter):
    st = _exported(name, attn, exporter)
    assert st.mha == st.total, f"{st.mha} of {st.total} attention blocks fused"


@pytest.mark.parametrize("name,attn,exporter", _cases("fallbacks"))
def test_no_python_fallbacks(name, attn, exporter):
    st = _exported(name, attn, exporter)
    assert not st.fallbacks, st.fallbacks


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("name,attn,exporter", [
    pytest.param(*c.values, id=c.id, marks=c.marks) for c in _cases("fp32")])
def test_native_parity(name, attn, exporter, precision, request):
    k = _known(name, f"{attn}+{exporter}" if attn != "-" else exporter, precision)
    if k:
        request.applymarker(pytest.mark.xfail(reason=k[0], strict=k[1]))
    st = _exported(name, attn, exporter)
    err, cos = st.results[precision]
    if precision == "fp32":
        assert err <= FP32_ATOL, f"max abs error {err:.3g} > {FP32_ATOL}"
    elif precision == "bf16":
        assert cos >= BF16_COS, f"cosine {cos:.5f} < {BF16_COS}"
    else:
        assert cos >= INT8_COS, f"cosine {cos:.5f} < {INT8_COS}"


@pytest.mark.parametrize("name,attn,exporter", _cases("sensitivity"))
def test_output_depends_on_input(name, attn, exporter):
    """Parity means something only if the output follows the input: two different inputs must
    give outputs at least 1 % (of the largest) apart, and the native fp32 plan must match the
    reference on the second input too."""
    st = _exported(name, attn, exporter)
    assert st.sensitivity >= SENSITIVITY, f"outputs on two different inputs differ by only {st.sensitivity:.2g}"
    assert st.err2 <= FP32_ATOL, f"max abs error {st.err2:.3g} > {FP32_ATOL} on the second input"


@pytest.mark.parametrize("name,attn,exporter", _cases("deterministic"))
def test_bit_identical_run_to_run(name, attn, exporter):
    """Two runs of one plan give the same bits, at 1 and at 2 threads, at every precision."""
    st = _exported(name, attn, exporter)
    assert not st.unstable, f"outputs changed between two runs: {st.unstable}"


DECODER_NAMES = [name for name, entry in ZOO.items() if entry.kind == "decoder"]


def _decoder_cases() -> list[Any]:
    return [pytest.param(name, attn, exporter, id=f"{name}-{attn}+{exporter}")
            for name in DECODER_NAMES for attn, exporter in forms_of(ZOO[name])]


@pytest.mark.parametrize("name,attn,exporter", _decoder_cases())
def test_decoder_mask_is_causal(name, attn, exporter):
    """The decoders' [B, 1, S, S] mask bias is proved and becomes causal=1 (+ Mistral's window) with the
    attention_mask as the key-padding input: no bias is left on any Attention."""
    e = export(name, attn, exporter)
    if e.error:
        pytest.skip(e.error)
    m = graphopt.load(e.path)
    PassManager.from_text("O2")(m)
    att = [n for n in m.graph if n.op == "graphopt::Attention"]
    assert len(att) == e.entry.attention_blocks
    _assert_causal_padded(att, name)
    # graphopt's own ONNX decomposition (what an O2-then-quantize file carries) fuses back to the same
    from graphopt.ops import lower_to_onnxruntime

    lower_to_onnxruntime(m)
    again = graphopt.load(graphopt.to_onnx(m))
    PassManager.from_text("O2")(again)
    _assert_causal_padded([n for n in again.graph if n.op == "graphopt::Attention"], name)


def _assert_causal_padded(att: list, name: str) -> None:
    assert att
    for n in att:
        assert int(n.attr("causal", 0)) == 1, n
        assert len(n.inputs) < 5 or n.inputs[4] is None, "a [B, 1, S, S] bias is left"
        kpm = n.inputs[3]  # the attention_mask, or GPT-2 dynamo's view(batch, -1) of it
        assert kpm is not None and (kpm.name == "attention_mask" or kpm.producer().inputs[0].name == "attention_mask")
        assert int(n.attr("window", 0)) == (4096 if name == "mistral" else 0)


@pytest.mark.parametrize("name,attn,exporter", [pytest.param(*c.values, id=c.id) for c in _decoder_cases()])
def test_decoder_left_padding_parity(name, attn, exporter):
    """Left- and right-padded rows of different lengths (left-padded queries see no key at all): native
    fp32 within 1e-4 of onnxruntime, bf16 cosine >= 0.999, int8 >= 0.98, at 2 threads."""
    e = export(name, attn, exporter)
    if e.error:
        pytest.skip(e.error)
    feeds = e.feeds(batch=3)
    am = feeds["attention_mask"]
    am[:] = 1
    am[1, -5:] = 0   # right padding
    am[2, :6] = 0    # left padding
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    ref = ort.InferenceSession(str(e.path), so, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    m = graphopt.load(e.path)
    PassManager.from_text("O2")(m)
    for prec in PRECISIONS:
        y = _first(graphopt.compile(m, precision=prec, level="O0", num_threads=2).run(feeds))
        assert y.shape == ref.shape
        if prec == "fp32":
            err = float(np.abs(y.astype(np.float64) - ref).max())
            assert err <= FP32_ATOL, f"fp32 max abs error {err:.3g}"
        else:
            cos = _cos(y, ref)
            assert cos >= (BF16_COS if prec == "bf16" else INT8_COS), f"{prec} cosine {cos:.5f}"


@pytest.mark.parametrize("attn,exporter", [(a, e) for a, e in forms_of(ZOO["gpt2"])])
def test_gpt2_gelu_is_the_gemm_epilogue(attn, exporter):
    """GPT-2's MLP (2-D Gemm, Reshape, tanh-GELU in every form): fuse-linear-epilogue moves the GELU
    into the Linear, so the plan has no GELU step of its own."""
    st = _exported("gpt2", attn, exporter)
    assert st.kinds is not None and st.kinds["Gelu"] == 0, st.kinds
