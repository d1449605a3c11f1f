"""Resident memory of one benchmark system, measured alone in a fresh Python process.

Measured in the benchmark's own process, a system's memory growth depends on what
the systems before it freed (the allocators reuse it), so ``graphopt bench --memory``
starts one child per system instead: the child imports what every system needs,
records its resident set (the baseline), builds the system, runs it once on the
benchmark's feeds, and reports how far its resident set grew (current, after the
run: what serving the model costs) and the peak growth (VmHWM, reset at the
baseline: transient buffers of building and running included).

>>> r = measure("graphopt-int8s", "minilm", batch=1, seq=128, threads=2)   # doctest: +SKIP
>>> r.resident_mb, r.peak_mb                                                # doctest: +SKIP
(31.2, 212.4)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MemoryResult", "measure"]


@dataclass
class MemoryResult:
    resident_mb: float | None = None  # resident-set growth over the baseline after build + one run
    peak_mb: float | None = None      # peak resident-set growth (building included)
    error: str = ""


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def _hwm_mb() -> float | None:
    """Peak resident set since the last :func:`_reset_hwm` (VmHWM), or None where unreadable."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1e3  # kB
    except OSError:
        pass
    return None


def _reset_hwm() -> bool:
    """Start the peak over from the current resident set (Linux: write 5 to clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def measure(system: str, model: str, *, batch: int, seq: int, threads: int, artifact: str | os.PathLike | None = None,
            timeout: float = 600.0) -> MemoryResult:
    """Build and run ``system`` once in a child process; its memory growth in MB.

    ``artifact`` is the prepared model file the system loads (the transformers optimizer's output for
    ``ort-fp32-opt``, the quantized file for ``ort-int8*``, the saved QDQ graph for ``graphopt-int8s``),
    so preparing it is not counted.
    """
    cmd = [sys.executable, "-m", "graphopt.bench.memory", "--system", system, "--model", str(model),
           "--batch", str(batch), "--seq", str(seq), "--threads", str(threads)]
    if artifact is not None:
        cmd += ["--artifact", str(artifact)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return MemoryResult(error=f"timed out after {timeout:.0f} s")
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode or not lines:
        tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
        return MemoryResult(error=f"exit {p.returncode}: {tail[:160]}")
    d = json.loads(lines[-1])
    return MemoryResult(d["resident_mb"], d["peak_mb"])


def _child(args: argparse.Namespace) -> None:
    from ..runtime.compile import _return_freed_memory
    from . import models as bm

    # Import every runtime a system may load, so the baseline holds the libraries for all alike.
    import onnxruntime  # noqa: F401

    for mod in ("openvino", "torch", "transformers"):
        try:
            __import__(mod)
        except ImportError:
            pass
    spec = bm._spec(args.model)
    feeds = bm._feeds(spec, args.batch, args.seq)
    with tempfile.TemporaryDirectory(prefix="graphopt-mem-") as tmp:
        builder = bm._Builder(spec, Path(tmp))
        art = Path(args.artifact) if args.artifact else None
        if art is not None and args.system == "ort-fp32-opt":
            builder._opt = art
        elif art is not None and args.system in ("ort-int8", "ort-int8-pc"):
            builder._int8[args.system.endswith("pc")] = art
        gc.collect()
        base, fresh = _rss_mb(), _reset_hwm()
        if art is not None and args.system == "graphopt-int8s":
            import graphopt

            builder._static = graphopt.load(art)  # loading the graph counts, as compile(path) does for the others
        fn, _, _ = builder.build(args.system, args.threads)
        builder._static = None
        fn(feeds)
        gc.collect()
        _return_freed_memory()  # for every system alike: count what it holds, not the allocator's cache
        hwm = _hwm_mb() if fresh else None
        print(json.dumps({"resident_mb": round(_rss_mb() - base, 1),
                          "peak_mb": None if hwm is None else round(hwm - base, 1)}))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--system", required=True)
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--artifact", default=None, help="prepared model file the system loads")
    _child(ap.parse_args(argv))


if __name__ == "__main__":
    main()
