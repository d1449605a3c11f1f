"""Cost of each pipeline step against model size, every step alone in a fresh child process.

A child imports what the step needs, records its resident set (the baseline), resets
the peak, runs the step on the model file and reports wall time and the peak growth
(VmHWM - baseline), so no step inherits another's heap. Steps:

- graphopt: ``load``, ``o2`` (load + O2), ``rtn`` / ``gptq`` (load + weight-only int4),
  ``save`` (load + save with external data), ``compile`` (native plan + one run);
- peers: ``ort`` (onnxruntime session creation + one run), ``ort-nbits`` (onnxruntime's
  ``MatMulNBitsQuantizer``, int4 RTN, saved), ``nncf`` (OpenVINO read + NNCF
  ``compress_weights`` int4 + save).

>>> r = run_step("load", "stack.onnx")      # doctest: +SKIP
>>> r["seconds"], r["peak_mb"]               # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["STEPS", "run_step", "peak_rss_mb", "reset_peak"]


def _status(key: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # kB -> MiB
    return float("nan")


def peak_rss_mb() -> float:
    return _status("VmHWM")


def reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def _feeds(path: str) -> dict[str, np.ndarray]:
    import onnx

    m = onnx.load(path, load_external_data=False)
    rng = np.random.default_rng(0)
    out = {}
    for vi in m.graph.input:
        t = vi.type.tensor_type
        shape = [d.dim_value or 1 for d in t.shape.dim]
        if t.elem_type == onnx.TensorProto.INT64:
            out[vi.name] = rng.integers(0, 100, shape).astype(np.int64)
        else:
            out[vi.name] = rng.standard_normal(shape).astype(np.float32)
    return out


_TMP: list[str] = []  # output directories of this child's step, removed when it ends


def _out(path: str) -> str:
    _TMP.append(tempfile.mkdtemp(prefix="scale-", dir=os.environ.get("GRAPHOPT_SCALE_TMP")))
    return str(Path(_TMP[-1]) / Path(path).name)


def _load(path: str) -> None:
    import graphopt

    m = graphopt.load(path)
    assert len(m.graph.initializers)


def _o2(path: str) -> None:
    import graphopt
    from graphopt.pm.manager import PassManager

    PassManager.from_text("O2")(graphopt.load(path))


def _weight_only(path: str, gptq: bool) -> None:
    import graphopt
    from graphopt.quant.api import quantize
    from graphopt.quant.config import QuantConfig

    m = graphopt.load(path)
    data = [_feeds(path) for _ in range(2)] if gptq else None
    quantize(m, QuantConfig(mode="weight-only", weight_bits=4, group_size=32, gptq=gptq), data, progress=False)


def _save(path: str) -> None:
    import graphopt

    graphopt.save(graphopt.load(path), _out(path), external_data=True)


def _compile(path: str) -> None:
    import graphopt

    sess = graphopt.compile(path)
    sess.run(_feeds(path))


def _ort(path: str) -> None:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    sess.run(None, _feeds(path))


def _ort_nbits(path: str) -> None:
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    q = MatMulNBitsQuantizer(onnx.load(path), block_size=32, is_symmetric=True)
    q.process()
    q.model.save_model_to_file(_out(path), use_external_data_format=True)


def _nncf(path: str) -> None:
    import nncf
    import openvino as ov

    m = ov.Core().read_model(path)
    c = nncf.compress_weights(m, mode=nncf.CompressWeightsMode.INT4_SYM, group_size=32, ratio=1.0)
    ov.save_model(c, str(Path(_out(path)).with_suffix(".xml")))


STEPS: dict[str, Callable[[str], None]] = {
    "load": _load, "o2": _o2, "rtn": lambda p: _weight_only(p, False), "gptq": lambda p: _weight_only(p, True),
    "save": _save, "compile": _compile, "ort": _ort, "ort-nbits": _ort_nbits, "nncf": _nncf,
}
_IMPORTS = {"nncf": "import nncf, openvino", "ort-nbits": "import onnxruntime.quantization", "ort": "import onnxruntime"}


# Code is imported before the baseline, for every system alike (``import onnxruntime`` is not in the
# ``ort`` step either): graphopt's passes register on first use, so they are loaded here too.
_GRAPHOPT_IMPORTS = ("import graphopt, graphopt.runtime.compile, graphopt.quant.api, onnxruntime\n"
                     "from graphopt.pm.registry import load_providers\nload_providers()")


def _child(step: str, path: str) -> dict[str, Any]:
    exec(_IMPORTS.get(step, _GRAPHOPT_IMPORTS))
    base = _status("VmRSS")
    reset_peak()
    t0 = time.perf_counter()
    try:
        STEPS[step](path)
        seconds = time.perf_counter() - t0
    finally:
        for d in _TMP:
            shutil.rmtree(d, ignore_errors=True)
    return {"step": step, "seconds": seconds, "peak_mb": peak_rss_mb() - base, "base_mb": base}


def run_step(step: str, path: str | os.PathLike, timeout: float = 3600) -> dict[str, Any]:
    """Run ``step`` on ``path`` in a child process; returns seconds, peak_mb (growth) or error."""
    cmd = [sys.executable, "-m", "graphopt.bench.scale", step, str(path)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"step": step, "error": f"timeout after {timeout:.0f} s"}
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode or not lines:
        return {"step": step, "error": (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1][:200]}
    return json.loads(lines[-1])


if __name__ == "__main__":
    print(json.dumps(_child(sys.argv[1], sys.argv[2])), flush=True)
