"""The plans of the reference models, step for step: regressions in fusion or lowering show here.

all-MiniLM-L6-v2 (graphopt's eager/TorchScript export and transformers' default sdpa/dynamo form)
and DistilBERT (random weights) at fp32, bf16, int8 (dynamic activations) and int8 static
(graphopt's QDQ file of the float model). Each plan is compared by its step count, its kernel mix
(steps per kind), the Linear steps per mode (0 fp32, 1 bf16, 2 int8) and the chained producer ->
consumer pairs (bf16 / u8 outputs, a LayerNorm's u8 copy): the same or fewer steps is the rule.

``PLANS`` holds the figures measured when the lowering became the one-to-one table
(graphopt.runtime.lowering_table) -- identical before and after that change. No timings here.
"""

from __future__ import annotations

import collections
from typing import Any

import pytest

import graphopt

from .test_int8_routes import _calib, _qdq_file, _workdir

pytest.importorskip("onnxruntime")
pytest.importorskip("torch")
pytest.importorskip("transformers")

_MINILM = {"Add": 1, "Attention": 6, "Gather": 3, "LayerNorm": 13, "Linear": 24, "PaddingMask": 6, "PositionIds": 1}
_DISTILBERT = dict(_MINILM, Gather=2)


def _rows(model: str, steps: int, kinds: dict[str, int]) -> dict[tuple[str, str], Any]:
    return {(model, "fp32"): (steps, kinds, {0: 24}, 0, 0),
            # QKV -> attention (bf16 products), attention and FFN1 -> the next bf16 GEMM: bf16 outputs
            (model, "bf16"): (steps, kinds, {1: 24}, 18, 0),
            # QKV GEMMs write bf16 for the attention kernel, FFN1 the u8 rows (each on its own grid) of
            # FFN2; the 12 LayerNorms write the u8 rows of the next GEMM
            (model, "int8"): (steps, kinds, {2: 24}, 12, 12),
            # FFN1 requantizes to FFN2's u8 grid; the 12 LayerNorms write the u8 input of the next GEMM
            (model, "int8-static"): (steps, kinds, {2: 24}, 6, 12)}


#: (model, precision) -> (steps, kinds, Linear steps per mode, chained outputs, LayerNorms with a u8 copy)
PLANS: dict[tuple[str, str], tuple[int, dict[str, int], dict[int, int], int, int]] = {
    **_rows("minilm", 54, _MINILM), **_rows("minilm-sdpa-dynamo", 54, _MINILM), **_rows("distilbert", 53, _DISTILBERT),
}


def _plan(model: str, precision: str) -> Any:
    from graphopt.models import distilbert_onnx, minilm_onnx
    from graphopt.testing.int8_routes import route_file

    if model == "distilbert":
        spec = distilbert_onnx()
        src = route_file("graphopt", spec.path, _workdir() / "distilbert", _calib(spec)) \
            if precision == "int8-static" else spec.path
    else:
        form = "eager-torchscript" if model == "minilm" else "sdpa-dynamo"
        src = _qdq_file("graphopt", form) if precision == "int8-static" else minilm_onnx(
            attn=form.split("-")[0], exporter=form.split("-")[1]).path
    return graphopt.compile(src, precision.split("-")[0], 1)


def signature(sess: Any) -> tuple[int, dict[str, int], dict[int, int], int, int]:
    steps = sess._steps
    kinds = collections.Counter(st.kind for st in steps)
    modes = collections.Counter(int(st.iattrs.get("mode", 0)) for st in steps if st.kind == "Linear")
    chained = sum(1 for st in steps if st.iattrs.get("out", 0))
    ln_u8 = sum(1 for st in steps if st.kind == "LayerNorm" and "+ u8" in st.detail)
    return len(steps), dict(sorted(kinds.items())), dict(sorted(modes.items())), chained, ln_u8


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8", "int8-static"])
@pytest.mark.parametrize("model", ["minilm", "minilm-sdpa-dynamo", "distilbert"])
def test_plan_is_unchanged(model, precision):
    sess = _plan(model, precision)
    assert not sess.fallbacks, sess.fallbacks
    got = signature(sess)
    want = PLANS[(model, precision)]
    assert got[0] <= want[0], f"{model} {precision}: {got[0]} steps, was {want[0]}"
    assert got == want, f"{model} {precision}: plan {got}, was {want}"
