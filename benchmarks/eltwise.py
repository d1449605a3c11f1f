"""Element-wise kernels: per-call time of this build vs a baseline build of graphopt._C.

Each variant (this build, an optional baseline ``_C*.so``) runs in its own child
process that loads only the extension module, so two builds can be compared
on the same machine. Rounds alternate the variants (A B B A ...) to spread
the noise of a shared machine; each cell is the median over rounds of the
per-round median of ``--reps`` calls, at one thread unless ``--threads``.

Outputs are allocated by the bindings on every call. By default the children
run with glibc's mmap threshold raised, so a freed output's pages are reused
(as the runtime's arena does) and the time is the kernel's, not first-touch
page faults; ``--cold`` keeps the default allocator (fresh pages per call).

    python benchmarks/eltwise.py                               # this build + numpy peers
    python benchmarks/eltwise.py --baseline /tmp/old/_C.cpython-311-x86_64-linux-gnu.so
    python benchmarks/eltwise.py --sizes 49152 196608 --rounds 9 --json out.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROW = 384  # MiniLM hidden size: LayerNorm rows, per-channel quantization channels
SEQ = 128  # softmax rows of attention scores [heads, SEQ, SEQ]


def load_ext(path: str) -> Any:
    spec = importlib.util.spec_from_file_location("_C", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def cases(C: Any, n: int) -> dict[str, Callable[[], Any]]:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(n) * 3).astype(np.float32)
    x2 = x.reshape(-1, ROW)
    r2 = (rng.standard_normal(x2.shape)).astype(np.float32)
    g = rng.standard_normal(ROW).astype(np.float32)
    b = rng.standard_normal(ROW).astype(np.float32)
    s1, z1 = np.float32([0.05]), np.int32([128])
    sc = (rng.random(ROW) * 0.1 + 0.01).astype(np.float32)
    zc = rng.integers(0, 256, ROW).astype(np.int32)
    q = C.quantize(x, s1, z1, "u8", None)
    acc = rng.integers(-(2**20), 2**20, n).astype(np.int32)
    sm = (rng.standard_normal(n) * 4).astype(np.float32).reshape(-1, SEQ, SEQ)
    mask = np.where(rng.random(SEQ) < 0.1, -1e4, 0).astype(np.float32).reshape(1, 1, SEQ)
    h = C.to_bf16(x)
    out = {
        "quantize u8": lambda: C.quantize(x, s1, z1, "u8", None),
        "quantize s8 per-chan": lambda: C.quantize(x2, sc, zc - 128, "s8", -1),
        "dequantize u8": lambda: C.dequantize(q, s1, z1, None),
        "requantize s32->u8": lambda: C.requantize(acc, np.float32([1e-4]), z1, "u8", None),
        "gelu erf": lambda: C.gelu(x, "none"),
        "gelu tanh": lambda: C.gelu(x, "tanh"),
        "softmax +mask": lambda: C.softmax(sm, mask),
        "layernorm": lambda: C.layernorm(x2, g, b, 1e-5, None, False),
        "layernorm +res +sum": lambda: C.layernorm(x2, g, b, 1e-5, r2, True),
        "to_bf16": lambda: C.to_bf16(x),
        "from_bf16": lambda: C.from_bf16(h),
    }
    if hasattr(C, "layernorm_quantize"):
        out["layernorm +res ->f32+u8"] = lambda: C.layernorm_quantize(x2, g, b, 1e-5, r2, False, 0.05, 128)
        out["quantize dynamic u8"] = lambda: C.quantize_dynamic_u8(x)
    return out


def numpy_cases(n: int) -> dict[str, Callable[[], Any]]:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(n) * 3).astype(np.float32)
    return {
        "copy f32 (numpy)": lambda: x.copy(),
        "quantize u8 (numpy)": lambda: np.clip(np.round(x / np.float32(0.05)) + 128, 0, 255).astype(np.uint8),
    }


def time_calls(fns: dict[str, Callable[[], Any]], reps: int) -> dict[str, float]:
    res = {}
    for name, f in fns.items():
        for _ in range(3):
            f()
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter_ns()
            f()
            ts.append(time.perf_counter_ns() - t0)
        res[name] = statistics.median(ts) / 1e3
    return res


def child(so: str, sizes: list[int], reps: int, threads: int, isa: str | None) -> None:
    if so == "numpy":
        json.dump({str(n): time_calls(numpy_cases(n), reps) for n in sizes}, sys.stdout)
        return
    C = load_ext(so)
    C.set_num_threads(threads)
    if isa:
        C.set_max_isa(isa)
    json.dump({str(n): time_calls(cases(C, n), reps) for n in sizes}, sys.stdout)


def this_build() -> str:
    from graphopt import _C

    return _C.__file__


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", help="path of a baseline graphopt _C*.so to compare against")
    ap.add_argument("--sizes", type=int, nargs="+", default=[49152, 196608, 1572864])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--isa", help="cap the kernels at this ISA level (scalar|avx2|avx512), as set_max_isa")
    ap.add_argument("--cold", action="store_true", help="default allocator: fresh output pages on every call")
    ap.add_argument("--json", help="write the raw medians here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child, a.sizes, a.reps, a.threads, a.isa)
        return
    variants = {"new": this_build()}
    if a.baseline:
        variants["old"] = a.baseline
    variants["numpy"] = "numpy"
    env = dict(os.environ)
    if not a.cold:
        env.update(MALLOC_MMAP_THRESHOLD_=str(1 << 30), MALLOC_TRIM_THRESHOLD_=str(1 << 30))
    names = list(variants)
    runs: dict[str, list[dict]] = {v: [] for v in names}
    for r in range(a.rounds):
        order = names if r % 2 == 0 else names[::-1]
        for v in order:
            cmd = [sys.executable, __file__, "--child", variants[v], "--reps", str(a.reps), "--threads", str(a.threads),
                   *(["--isa", a.isa] if a.isa else []), "--sizes", *map(str, a.sizes)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
            runs[v].append(json.loads(out))
    med = {v: {n: {k: statistics.median(run[n][k] for run in runs[v]) for k in runs[v][0][n]} for n in runs[v][0]}
           for v in names}
    np_res = med.pop("numpy")
    print(f"# load: {os.getloadavg()}, threads={a.threads}, rounds={a.rounds}, reps={a.reps}, "
          f"{'cold' if a.cold else 'warm'} output pages, isa cap {a.isa or 'none'}")
    hdr = f"{'kernel':26s} {'n':>8s} " + ("  old us " if "old" in med else "") + "  new us  ns/elem" + (
        "  speedup" if "old" in med else "")
    print(hdr)
    for n in map(str, a.sizes):
        for k, t in med["new"][n].items():
            line = f"{k:26s} {n:>8s} "
            if "old" in med:
                o = med["old"][n].get(k)
                line += f"{o:8.1f} " if o is not None else f"{'-':>8s} "
            line += f"{t:8.1f} {t * 1e3 / int(n):8.3f}"
            if "old" in med and med["old"][n].get(k):
                line += f" {med['old'][n][k] / t:7.2f}x"
            print(line)
        for k, t in np_res[n].items():
            print(f"{k:26s} {n:>8s} " + (" " * 9 if "old" in med else "") + f"{t:8.1f} {t * 1e3 / int(n):8.3f}")
    if a.json:
        Path(a.json).write_text(json.dumps({"load": os.getloadavg(), "median_us": med, "numpy_us": np_res}, indent=1))


if __name__ == "__main__":
    main()
