"""ONNX backend conformance for the native runtime.

Every backend test case that onnxruntime can run is compiled with
``graphopt.compile(model, level="O0")`` and run on the plan; outputs must
match the expected outputs (the case's rtol/atol) or onnxruntime's outputs on
the original. Each counted case is classified:

- ``native``: passes and every node ran on a native kernel;
- ``fallback``: passes with at least one node run through the Python fallback;
- ``fail``: compile or run raised, or the outputs differ;
- ``skip``: onnxruntime cannot run the original, or inputs/outputs are not tensors.

>>> report = run_runtime_suite(kinds=("node",), limit=50)   # doctest: +SKIP
>>> report.counts()                                          # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx

from ..conformance import Case, all_close, run_outputs, session, iter_cases

__all__ = ["RuntimeCaseResult", "RuntimeReport", "run_runtime_case", "run_runtime_suite"]

logger = logging.getLogger(__name__)


@dataclass
class RuntimeCaseResult:
    name: str
    status: str  # native | fallback | fail | skip
    reason: str = ""
    fallbacks: tuple[str, ...] = ()


@dataclass
class RuntimeReport:
    results: list[RuntimeCaseResult] = field(default_factory=list)

    def counts(self) -> Counter:
        return Counter(r.status for r in self.results)

    def failures(self) -> list[RuntimeCaseResult]:
        return [r for r in self.results if r.status == "fail"]

    def fallback_ops(self) -> Counter:
        c: Counter = Counter()
        for r in self.results:
            for f in r.fallbacks:
                c[f] += 1
        return c

    def summary(self) -> str:
        c = self.counts()
        counted = c["native"] + c["fallback"] + c["fail"]
        return (f"runtime conformance: {counted} cases counted: {c['native']} native, {c['fallback']} via fallback, "
                f"{c['fail']} failing; {c['skip']} skipped")


def _is_tensor(vi: onnx.ValueInfoProto) -> bool:
    return vi.type.HasField("tensor_type")


def run_runtime_case(case: Case) -> RuntimeCaseResult:
    """Compile and run one backend case on the native runtime (see module docstring)."""
    from .compile import compile as _compile

    def res(status: str, reason: str = "", fb: tuple[str, ...] = ()) -> RuntimeCaseResult:
        return RuntimeCaseResult(case.name, status, reason, fb)

    try:
        mp = case.load_model()
        data = case.load_data(mp)
    except Exception as e:  # noqa: BLE001
        return res("skip", f"test data unreadable: {e}")
    try:
        sess = session(mp)
        originals = [run_outputs(sess, mp, xs) for xs, _ in data]
    except Exception as e:  # noqa: BLE001
        return res("skip", f"onnxruntime cannot run the original: {str(e).splitlines()[0][:160]}")
    try:
        rt = _compile(mp, optimize=None)
    except Exception as e:  # noqa: BLE001
        return res("fail", f"compile raised {type(e).__name__}: {str(e)[:300]}")
    fb = tuple(sorted({f.split("(")[0].split(" ")[0] for f in _fallback_ops(rt)}))
    inits = {i.name for i in mp.graph.initializer}
    names = [i.name for i in mp.graph.input if i.name not in inits]
    try:
        for (xs, want), orig in zip(data, originals):
            feeds = {n: (np.asarray(x) if isinstance(x, np.ndarray) or np.isscalar(x) else x) for n, x in zip(names, xs)}
            got = rt.run(feeds)
            if all_close(got, want, case.rtol, case.atol) or all_close(got, orig, case.rtol, case.atol):
                continue
            return res("fail", "outputs differ from the expected outputs and from onnxruntime", fb)
    except Exception as e:  # noqa: BLE001
        return res("fail", f"run raised {type(e).__name__}: {str(e)[:300]}", fb)
    return res("fallback" if fb else "native", "", fb)


def _fallback_ops(sess) -> list[str]:
    return [s.detail.replace("fallback ", "") for s in sess._steps if not s.native]


def run_runtime_suite(kinds: Sequence[str] = ("node",), limit: int | None = None,
                      names: Sequence[str] | None = None) -> RuntimeReport:
    """Run the backend cases of ``kinds`` (optionally only ``names``) on the native runtime."""
    rep = RuntimeReport()
    want = set(names) if names is not None else None
    for i, case in enumerate(iter_cases(kinds)):
        if limit is not None and i >= limit:
            break
        if want is not None and case.name not in want:
            continue
        rep.results.append(run_runtime_case(case))
    return rep
