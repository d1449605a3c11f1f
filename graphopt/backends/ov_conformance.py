"""ONNX backend conformance cases run through graphopt -> OpenVINO (CPU, f32).

For every case onnxruntime can run (see :mod:`graphopt.conformance`),
the model is imported into graphopt, handed to OpenVINO with
:func:`~graphopt.backends.openvino.to_openvino`, compiled for CPU with
``INFERENCE_PRECISION_HINT=f32`` and run; the outputs are compared with the
case's expected outputs (or, where onnxruntime itself deviates from them, with
onnxruntime's). Cases OpenVINO refuses are counted separately with a grouped
reason, so "accepted" and "matching" are both visible.

>>> report = run_openvino_suite(kinds=("node",), limit=50)   # doctest: +SKIP
>>> print(report.summary())                                   # doctest: +SKIP
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import GraphoptError
from ..conformance import KINDS, Case, all_close, run_outputs, session, iter_cases

__all__ = ["OVCaseResult", "OVSuiteReport", "run_openvino_case", "run_openvino_suite"]

logger = logging.getLogger(__name__)

# status values
SKIP = "skip"            # onnxruntime cannot run the original: not counted
REJECTED = "rejected"    # OpenVINO's frontend or CPU plugin refuses the model
ERROR = "error"          # accepted, but inference raised
MISMATCH = "mismatch"    # accepted and ran, wrong numbers
MATCH = "match"


@dataclass
class OVCaseResult:
    name: str
    kind: str
    status: str
    reason: str = ""


@dataclass
class OVSuiteReport:
    results: list[OVCaseResult] = field(default_factory=list)

    def counts(self) -> Counter:
        return Counter(r.status for r in self.results)

    @property
    def counted(self) -> int:
        return sum(1 for r in self.results if r.status != SKIP)

    @property
    def accepted(self) -> int:
        return sum(1 for r in self.results if r.status in (MATCH, MISMATCH, ERROR))

    @property
    def matched(self) -> int:
        return sum(1 for r in self.results if r.status == MATCH)

    def reasons(self) -> Counter:
        return Counter((r.status, _category(r.reason)) for r in self.results if r.status in (REJECTED, ERROR, MISMATCH))

    def summary(self, top: int = 25) -> str:
        lines = [f"openvino conformance: {self.counted} cases run by onnxruntime, {self.accepted} accepted by "
                 f"OpenVINO, {self.matched} match, {self.counts()[MISMATCH]} mismatch, "
                 f"{self.counts()[ERROR]} fail at inference, {self.counts()[REJECTED]} rejected"]
        for (status, why), n in self.reasons().most_common(top):
            lines.append(f"  {status:8s} {n:4d}  {why}")
        mismatched = [r.name for r in self.results if r.status == MISMATCH]
        if mismatched:
            lines.append("  mismatched: " + " ".join(mismatched))
        return "\n".join(lines)


def _category(reason: str) -> str:
    """Collapse a failure message into a groupable reason."""
    ops = re.findall(r"[>'] \(([\w.:]+)\)", reason.split("\n")[0])
    if ops:
        return "frontend: no conversion for " + ", ".join(sorted(set(ops)))
    m = re.search(r"No conversion rule found for operations: ([^\n]+)", reason)
    if m:
        return f"frontend: no conversion rule for {m.group(1).strip()}"
    m = re.search(r"Failed operations detailed log:\s*\n-- ([\w.:-]+)", reason)
    if m:
        return f"frontend: translator failed on {m.group(1)}"
    for pat, label in [
        (r"[Ss]equence|[Oo]ptional", "sequence/optional values (not supported by OpenVINO)"),
        (r"element type|[Tt]ype .* is not supported|Unsupported type|unsupported.*precision|u4|i4|f8e|nf4|string",
         "element type not supported"),
        (r"CPU plugin cannot compile", "CPU plugin cannot compile"),
        (r"differ", "outputs differ"),
        (r"shape", "shape handling"),
    ]:
        if re.search(pat, reason):
            return label
    first = reason.strip().splitlines()[0] if reason.strip() else "unknown"
    return first[:120]


def _flatten_reason(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def run_openvino_case(case: Case) -> OVCaseResult:
    """Run one conformance case through graphopt -> OpenVINO."""
    from ..io import from_onnx
    from .openvino import compile_for_cpu, infer, to_openvino

    def res(status: str, reason: str = "") -> OVCaseResult:
        return OVCaseResult(case.name, case.kind, status, reason)

    try:
        mp = case.load_model()
        data = case.load_data(mp)
        sess = session(mp)
        originals = [run_outputs(sess, mp, xs) for xs, _ in data]
    except Exception as e:  # noqa: BLE001 - onnxruntime / test data limits: not counted
        return res(SKIP, _flatten_reason(e)[:300])
    try:
        ov_model = to_openvino(from_onnx(mp))
        compiled = compile_for_cpu(ov_model, "fp32", num_threads=1)
    except Exception as e:  # noqa: BLE001 - UnsupportedError and anything OpenVINO raises
        return res(REJECTED, _flatten_reason(e))
    inits = {i.name for i in mp.graph.initializer}
    names = [i.name for i in mp.graph.input if i.name not in inits]
    for (xs, want), orig in zip(data, originals):
        try:
            feeds = _feeds(compiled, names, xs)
            try:
                got = infer(compiled, feeds)
            except GraphoptError:
                if len(feeds) != len(compiled.inputs):
                    raise
                # an input passed straight to an output (Identity, inference Dropout) is
                # renamed to the output by the frontend; the order still matches ONNX's
                got = infer(compiled, list(feeds.values()))
        except Exception as e:  # noqa: BLE001
            return res(ERROR, _flatten_reason(e))
        if all_close(got, want, case.rtol, case.atol) or all_close(got, orig, case.rtol, case.atol):
            continue
        return res(MISMATCH, "outputs differ from the expected outputs and from onnxruntime")
    return res(MATCH)


def _feeds(compiled: Any, names: list[str], xs: list[Any]) -> dict[str, np.ndarray]:
    feeds = {}
    for n, x in zip(names, xs):
        if not isinstance(x, np.ndarray):
            raise TypeError(f"input {n!r} is a {type(x).__name__}, not a tensor")
        feeds[n] = x
    return feeds


def run_openvino_suite(kinds: Sequence[str] = KINDS, limit: int | None = None) -> OVSuiteReport:
    """Run the backend conformance cases through OpenVINO; see the module doc."""
    report = OVSuiteReport()
    for i, case in enumerate(iter_cases(kinds)):
        if limit is not None and i >= limit:
            break
        report.results.append(run_openvino_case(case))
        if (i + 1) % 200 == 0:
            logger.info("openvino conformance: %d cases done", i + 1)
    return report


def main(argv: list[str] | None = None) -> int:
    """``python -m graphopt.backends.ov_conformance [kinds...]``: print the summary."""
    import sys

    kinds = tuple(argv if argv is not None else sys.argv[1:]) or KINDS
    report = run_openvino_suite(kinds)
    sys.stdout.write(report.summary(top=60) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
