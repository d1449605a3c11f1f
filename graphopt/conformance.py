"""ONNX's own backend test data as a conformance suite for graphopt.

Each case is run in onnxruntime in its original form and after a transform
(by default: import -> verify -> export). A case *counts* when onnxruntime can
run the original; it *passes* when the transformed model gives the expected
outputs shipped with the test (or, where onnxruntime itself deviates from them,
exactly what onnxruntime gives on the original).

>>> report = run_suite(kinds=("node",), limit=20)    # doctest: +SKIP
>>> print(report.summary())                           # doctest: +SKIP
"""

from __future__ import annotations

import glob
import logging
import os
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from .ir import Model

__all__ = ["Case", "CaseResult", "SuiteReport", "KINDS", "iter_cases", "run_case", "run_suite", "roundtrip", "session",
           "run_outputs", "all_close", "data_root"]

logger = logging.getLogger(__name__)

KINDS = ("node", "pytorch-converted", "pytorch-operator", "simple", "light")

Transform = Callable[[onnx.ModelProto], onnx.ModelProto]


@dataclass
class Case:
    name: str
    kind: str
    load_model: Callable[[], onnx.ModelProto]
    load_data: Callable[[onnx.ModelProto], list[tuple[list[Any], list[Any]]]]
    rtol: float = 1e-3
    atol: float = 1e-7


@dataclass
class CaseResult:
    name: str
    kind: str
    status: str  # "pass", "fail", "skip"
    reason: str = ""


@dataclass
class SuiteReport:
    results: list[CaseResult] = field(default_factory=list)

    def counts(self) -> Counter:
        return Counter(r.status for r in self.results)

    def failures(self) -> list[CaseResult]:
        return [r for r in self.results if r.status == "fail"]

    def skip_reasons(self) -> Counter:
        return Counter(_skip_category(r.reason) for r in self.results if r.status == "skip")

    def summary(self) -> str:
        c = self.counts()
        total = len(self.results)
        by_kind = Counter((r.kind, r.status) for r in self.results)
        kinds = sorted({r.kind for r in self.results})
        lines = [f"conformance: {total} cases, {c['pass'] + c['fail']} run by onnxruntime, "
                 f"{c['pass']} passed, {c['fail']} failed, {c['skip']} skipped"]
        for k in kinds:
            lines.append(f"  {k:18s} pass={by_kind[(k, 'pass')]:4d} fail={by_kind[(k, 'fail')]:3d} "
                         f"skip={by_kind[(k, 'skip')]:3d}")
        for reason, n in self.skip_reasons().most_common():
            lines.append(f"  skipped ({n}): {reason}")
        for r in self.failures()[:20]:
            lines.append(f"  FAIL {r.kind}/{r.name}: {r.reason[:300]}")
        return "\n".join(lines)


def _skip_category(reason: str) -> str:
    if "NOT_IMPLEMENTED" in reason:
        return "onnxruntime has no kernel for an op/type in the original"
    if "Numpy_type" in reason or "No corresponding Numpy type" in reason:
        return "onnxruntime's Python API cannot feed or fetch the element type (fp8/int4/int2/bf16)"
    if "is not a registered function/op" in reason:
        return "op not registered in onnxruntime (training/preview domain)"
    if reason.startswith("test data unreadable"):
        return "test data unreadable"
    return "onnxruntime fails on the original (init or run error)"


def data_root() -> str:
    return os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")


def _read_pb(path: str, tp: onnx.TypeProto) -> Any:
    with open(path, "rb") as f:
        data = f.read()
    if tp.HasField("sequence_type"):
        s = onnx.SequenceProto()
        s.ParseFromString(data)
        return numpy_helper.to_list(s)
    if tp.HasField("optional_type"):
        o = onnx.OptionalProto()
        o.ParseFromString(data)
        return numpy_helper.to_optional(o)
    t = onnx.TensorProto()
    t.ParseFromString(data)
    return numpy_helper.to_array(t)


def _norm(x: Any) -> Any:
    if isinstance(x, onnx.TensorProto):
        return numpy_helper.to_array(x)
    if isinstance(x, np.generic):
        return np.asarray(x)
    if isinstance(x, list):
        return [_norm(e) for e in x]
    return x


def _dir_data(model_dir: str) -> Callable[[onnx.ModelProto], list]:
    def load(mp: onnx.ModelProto) -> list:
        inits = {i.name for i in mp.graph.initializer}
        ins = [i for i in mp.graph.input if i.name not in inits]
        sets = []
        for ds in sorted(glob.glob(os.path.join(model_dir, "test_data_set_*"))):
            n_in = len(glob.glob(os.path.join(ds, "input_*.pb")))
            n_out = len(glob.glob(os.path.join(ds, "output_*.pb")))
            xs = [_read_pb(os.path.join(ds, f"input_{i}.pb"), ins[i].type) for i in range(n_in)]
            ys = [_read_pb(os.path.join(ds, f"output_{i}.pb"), mp.graph.output[i].type) for i in range(n_out)]
            sets.append((xs, ys))
        return sets

    return load


def _light_data(path: str) -> Callable[[onnx.ModelProto], list]:
    # Same inputs as onnx's backend runner makes for these models: arange / n.
    def load(mp: onnx.ModelProto) -> list:
        inits = {i.name for i in mp.graph.initializer}
        xs = []
        for x in mp.graph.input:
            if x.name in inits:
                continue
            shape = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in x.type.tensor_type.shape.dim)
            n = int(np.prod(shape))
            xs.append((np.arange(n).reshape(shape) / n).astype(np.float32))
        prefix = os.path.splitext(path)[0]
        ys = [_read_pb(f"{prefix}_output_{i}.pb", o.type) for i, o in enumerate(mp.graph.output)]
        return [(xs, ys)]

    return load


def iter_cases(kinds: Sequence[str] = KINDS) -> Iterator[Case]:
    """All backend test cases of the given kinds (node tests are built in memory)."""
    from onnx.backend.test.loader import load_model_tests

    for kind in kinds:
        if kind == "node":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tests = load_model_tests(kind="node")
            for t in tests:
                yield Case(t.name, "node", (lambda t=t: t.model),
                           (lambda _mp, t=t: [([_norm(x) for x in a], [_norm(y) for y in b])
                                              for a, b in t.data_sets]), t.rtol, t.atol)
        elif kind == "light":
            for path in sorted(glob.glob(os.path.join(data_root(), "light", "*.onnx"))):
                name = "test_" + os.path.basename(path)[len("light_"):-len(".onnx")]
                yield Case(name, "light", (lambda p=path: onnx.load(p)), _light_data(path))
        else:
            for t in load_model_tests(kind=kind):
                d = t.model_dir
                yield Case(t.name, kind, (lambda d=d: onnx.load(os.path.join(d, "model.onnx"))), _dir_data(d),
                           t.rtol, t.atol)


def roundtrip(mp: onnx.ModelProto) -> onnx.ModelProto:
    """Import, verify, export: the lossless round trip."""
    from .io import from_onnx, to_onnx

    model: Model = from_onnx(mp)
    model.verify()
    return to_onnx(model)


def session(mp: onnx.ModelProto):
    """onnxruntime session for a case (rewrites off, one thread); onnxruntime's own exception on failure,
    whose message classifies the skip."""
    import onnxruntime as ort

    from ._ort import session_options

    so = session_options(threads=1)
    so.log_severity_level = 4
    return ort.InferenceSession(mp.SerializeToString(), so, providers=["CPUExecutionProvider"])


def run_outputs(sess, mp: onnx.ModelProto, xs: list[Any]) -> list[Any]:
    inits = {i.name for i in mp.graph.initializer}
    names = [i.name for i in sess.get_inputs() if i.name not in inits]
    return sess.run(None, dict(zip(names, xs)))


def _close(a: Any, b: Any, rtol: float, atol: float) -> bool:
    if isinstance(a, list) or isinstance(b, list):
        return isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and \
            all(_close(x, y, rtol, atol) for x, y in zip(a, b))
    if a is None or b is None:
        return a is None and b is None
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    if a.dtype == object or b.dtype == object or a.dtype.kind in "USb" or b.dtype.kind in "USb":
        return bool(np.array_equal(a, b))
    try:
        return bool(np.allclose(a.astype(np.float64), b.astype(np.float64), rtol=rtol, atol=atol, equal_nan=True))
    except (TypeError, ValueError):
        return bool(np.array_equal(a, b))


def all_close(got: list, want: list, rtol: float, atol: float) -> bool:
    return len(got) >= len(want) and all(_close(g, w, rtol, atol) for g, w in zip(got, want))


def run_case(case: Case, transform: Transform = roundtrip) -> CaseResult:
    def res(status: str, reason: str = "") -> CaseResult:
        return CaseResult(case.name, case.kind, status, reason)

    try:
        mp = case.load_model()
        data = case.load_data(mp)
    except Exception as e:  # noqa: BLE001 - the suite's own data may use types we cannot read
        return res("skip", f"test data unreadable: {type(e).__name__}: {e}")
    try:
        sess = session(mp)
        originals = [run_outputs(sess, mp, xs) for xs, _ in data]
    except Exception as e:  # noqa: BLE001
        return res("skip", f"onnxruntime cannot run the original: {str(e).splitlines()[0][:200]}")
    try:
        out = transform(mp)
    except Exception as e:  # noqa: BLE001
        return res("fail", f"transform raised {type(e).__name__}: {e}")
    try:
        sess2 = session(out)
        for (xs, want), orig in zip(data, originals):
            got = run_outputs(sess2, out, xs)
            if all_close(got, want, case.rtol, case.atol):
                continue
            if all_close(got, orig, 0.0, 0.0) or all_close(got, orig, case.rtol, case.atol):
                continue  # onnxruntime deviates from the reference; we reproduce onnxruntime
            return res("fail", "outputs differ from the expected outputs and from onnxruntime on the original")
    except Exception as e:  # noqa: BLE001
        return res("fail", f"onnxruntime cannot run the transformed model: {str(e).splitlines()[0][:300]}")
    return res("pass")


def run_suite(kinds: Sequence[str] = KINDS, transform: Transform = roundtrip, limit: int | None = None,
              progress: bool = False) -> SuiteReport:
    report = SuiteReport()
    for i, case in enumerate(iter_cases(kinds)):
        if limit is not None and i >= limit:
            break
        report.results.append(run_case(case, transform))
        if progress and (i + 1) % 200 == 0:
            logger.info("conformance: %d cases done", i + 1)
    return report
