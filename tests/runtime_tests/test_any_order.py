"""Any order and any file give one plan (issue 12, "decide once").

all-MiniLM-L6-v2 (graphopt's export): the float file compiled at a precision is the reference; the
same model reached another way must compile to the same steps -- O2 then quantize, quantize then O2,
a QDQ file from onnxruntime, an O2 file saved by graphopt for onnxruntime (com.microsoft contrib
ops: Attention, SkipLayerNormalization, BiasGelu, EmbedLayerNormalization) at every precision, and
that file quantized. Compared: steps per kind, Linear steps per mode, chained outputs; a tool's QDQ
file may add what it computes beyond the GEMMs (Q/DQ pairs it shares with a residual Add).
"""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

import graphopt

from .test_int8_routes import _EXTRA, _qdq_file, _spec
from .test_plan_steps import signature

pytest.importorskip("onnxruntime")
pytest.importorskip("torch")
pytest.importorskip("transformers")

FORM = "eager-torchscript"


@pytest.fixture(scope="module")
def ort_o2_file(tmp_path_factory) -> Path:
    """O2 of the float file, saved by graphopt.save: graphopt's fused ops as com.microsoft ops."""
    path = tmp_path_factory.mktemp("any-order") / "minilm.O2.ort.onnx"
    graphopt.save(graphopt.optimize(str(_spec(FORM).path), level="O2"), path)
    return path


def _reference(precision: str):
    return signature(graphopt.compile(_spec(FORM).path, precision, 1))


def test_saved_o2_file_has_contrib_ops(ort_o2_file):
    import onnx

    ops = collections.Counter((n.domain, n.op_type) for n in onnx.load(str(ort_o2_file), load_external_data=False).graph.node)
    assert ops[("com.microsoft", "Attention")] == 6 and ops[("com.microsoft", "SkipLayerNormalization")] == 12, ops
    assert ops[("com.microsoft", "BiasGelu")] == 6 and ops[("com.microsoft", "EmbedLayerNormalization")] == 1, ops
    assert ("", "Add") not in ops, ops  # each bias rides in its contrib op, as before fuse-linear-epilogue


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_saved_o2_file_compiles_to_the_plan_of_the_float_file(ort_o2_file, precision):
    sess = graphopt.compile(ort_o2_file, precision, 1)
    assert sess.fallbacks == []
    assert signature(sess) == _reference(precision)


@pytest.mark.parametrize("route", ["graphopt", "graphopt-o2", "onnxruntime", "o2-ort-file"])
def test_every_route_compiles_to_one_static_int8_plan(route, ort_o2_file, tmp_path):
    """quantize then O2 (graphopt), O2 then quantize (graphopt-o2, saved with contrib ops), a tool's
    QDQ file (onnxruntime), and the contrib-op O2 file quantized by graphopt: one static int8 plan."""
    if route == "o2-ort-file":
        from graphopt.quant import QuantConfig, quantize

        from .test_int8_routes import _calib

        m = graphopt.load(ort_o2_file)
        quantize(m, QuantConfig(quantize_act_matmul=False, embeddings=False), _calib(_spec(FORM)), progress=False)
        path = tmp_path / "o2-ort-qdq.onnx"
        graphopt.save(m, path)
    else:
        path = _qdq_file(route, FORM)
    sess = graphopt.compile(path, num_threads=1)
    assert sess.fallbacks == []
    want = signature(graphopt.compile(_qdq_file("graphopt", FORM), num_threads=1))
    got = signature(sess)
    if route == "onnxruntime":  # its Q/DQ pairs shared with a residual Add stay steps; the core is the same
        got = (got[0] - sum(v for k, v in got[1].items() if k in _EXTRA),
               {k: v for k, v in got[1].items() if k not in _EXTRA}, *got[2:4], 0)
        want = (want[0], want[1], *want[2:4], 0)
    assert got == want
