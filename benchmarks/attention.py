"""Attention benchmark: the fused kernel against the previous implementation, per shape and precision.

    python benchmarks/attention.py --baseline /tmp/attn-baseline/_C.cpython-311-x86_64-linux-gnu.so
    python benchmarks/attention.py --shapes minilm:1 bert:8 --threads 1 --rounds 9

Systems (each in its own worker process, so two builds of graphopt._C never share one and
torch's OpenMP threads never spin next to ours):
  step-old / step-new    the runtime's Attention step (a one-step Plan on the packed [B, S, 3*H*D]
                         QKV layout, fp32 I/O; "bf16" = bf16 products), baseline build vs this one
  kernel-old / kernel-new graphopt.runtime.kernels.attention on dense [B, H, S, D] inputs of the
                         precision (fp32, bf16 bits, int8), baseline build vs this one
  torch-sdpa             torch.nn.functional.scaled_dot_product_attention, fp32 / bf16 (if importable)
The *-old systems need --baseline (a copy of graphopt/_C*.so built from the old sources).

Timing: for each (shape, precision, threads) case, `--rounds` rounds visit every system in a
rotating order; each visit pauses 150 ms (lets other jobs' bursts and our own spinning workers
settle), then times `reps` back-to-back calls. Reported: the median over all calls, and ratios
old/new (> 1 = the new one is faster). The machine and its load (os.getloadavg) are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np

SHAPES = {  # name: (heads, head dim, sequence)
    "minilm": (12, 32, 128),
    "bert": (12, 64, 128),  # also DistilBERT
}
PRECISIONS = ("fp32", "bf16", "int8")


# ----------------------------------------------------------------------------------- workers
class _Worker:
    """One benchmark process; builds each case once and times it on request."""

    def __init__(self, kind: str, baseline: str | None) -> None:
        self.kind, self.baseline = kind, baseline
        self.cases: dict[str, Any] = {}
        if kind == "torch":
            import torch
            self.torch = torch
        else:
            if kind == "old":
                import importlib.util
                spec = importlib.util.spec_from_file_location("graphopt._C", baseline)
                mod = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(mod)  # type: ignore[union-attr]
                sys.modules["graphopt._C"] = mod
            from graphopt import _C
            from graphopt.runtime import kernels as gk
            self.C, self.gk = _C, gk

    def build(self, system: str, B: int, H: int, D: int, S: int, prec: str):
        rng = np.random.default_rng(0)
        scale = 1.0 / np.sqrt(D)
        mask = np.zeros((B, 1, 1, S), np.float32)
        if system.startswith("step"):
            C = self.C
            p = C.Plan()
            x, m, o = p.add_slot(1, "qkv"), p.add_slot(1, "mask"), p.add_slot(1, "out")
            p.add_step("Attention", "attn", [x, m], [o],
                       {"heads": H, "packed": 1, "in_bsh": 1, "out_bsh": 1, "bf16": int(prec != "fp32")},
                       {"scale": float(scale)}, [])
            p.set_io([x, m], [o])
            qkv = rng.standard_normal((B, S, 3 * H * D)).astype(np.float32)
            return lambda t: p.run([qkv, mask], t)
        q, k, v = (rng.standard_normal((B, H, S, D)).astype(np.float32) for _ in range(3))
        if system == "torch-sdpa":
            torch = self.torch
            dt = torch.float32 if prec == "fp32" else torch.bfloat16
            tq, tk, tv = (torch.from_numpy(a).to(dt) for a in (q, k, v))
            tm = torch.from_numpy(mask).to(dt)

            def call(t: int) -> None:
                torch.set_num_threads(t)
                with torch.inference_mode():
                    torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, attn_mask=tm)
            return call
        gk, C = self.gk, self.C
        qs = ks = vs = 1.0
        if prec == "bf16":
            q, k, v = gk.to_bf16(q), gk.to_bf16(k), gk.to_bf16(v)
        elif prec == "int8":
            s = 3.0 / 127
            q, k, v = (np.clip(np.round(a / s), -127, 127).astype(np.int8) for a in (q, k, v))
            qs = ks = vs = s

        def run(t: int) -> None:  # the positional form both builds' bindings accept
            C.set_num_threads(t)
            C.attention(q, k, v, mask, scale, qs, ks, vs, "f32")
        return run

    def serve(self) -> None:
        for line in sys.stdin:
            req = json.loads(line)
            key = json.dumps(req["case"], sort_keys=True)
            if key not in self.cases:
                c = req["case"]
                self.cases[key] = self.build(c["system"], c["B"], c["H"], c["D"], c["S"], c["prec"])
            fn, t = self.cases[key], req["case"]["threads"]
            fn(t)  # warm (page faults, packing, thread start)
            out = []
            for _ in range(req["reps"]):
                t0 = time.perf_counter_ns()
                fn(t)
                out.append((time.perf_counter_ns() - t0) * 1e-3)
            print(json.dumps(out), flush=True)


# ----------------------------------------------------------------------------------- driver
class _Proc:
    def __init__(self, kind: str, baseline: str | None) -> None:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind]
        if baseline:
            cmd += ["--baseline", baseline]
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def time(self, case: dict[str, Any], reps: int) -> list[float]:
        assert self.p.stdin and self.p.stdout
        self.p.stdin.write(json.dumps({"case": case, "reps": reps}) + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError(f"benchmark worker for {case['system']} died")
        return json.loads(line)

    def close(self) -> None:
        if self.p.stdin:
            self.p.stdin.close()
        self.p.wait()


def _machine() -> str:
    model = ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "")
    except OSError:
        pass
    from graphopt import cpu_info
    info = cpu_info()
    return f"{model} | {os.cpu_count()} logical CPUs | kernels at {info['isa_selected']}"


def _systems(prec: str, have_old: bool, have_torch: bool) -> list[str]:
    out = []
    if prec != "int8":
        out += (["step-old"] if have_old else []) + ["step-new"]
    out += (["kernel-old"] if have_old else []) + ["kernel-new"]
    if have_torch and prec != "int8":
        out.append("torch-sdpa")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", help="path of a baseline graphopt _C*.so (enables the *-old systems)")
    ap.add_argument("--shapes", nargs="+", default=["minilm:1", "minilm:8", "bert:1", "bert:8"],
                    help="name:batch with name in " + ", ".join(SHAPES))
    ap.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--block-ms", type=float, default=60.0, help="target length of one timed block")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--worker", choices=["old", "new", "torch"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        _Worker(args.worker, args.baseline).serve()
        return 0

    have_torch = False
    if not args.no_torch:
        try:
            import torch  # noqa: F401
            have_torch = True
        except ImportError:
            pass
    procs = {"new": _Proc("new", None)}
    if args.baseline:
        procs["old"] = _Proc("old", args.baseline)
    if have_torch:
        procs["torch"] = _Proc("torch", None)
    owner = {"step-old": "old", "kernel-old": "old", "step-new": "new", "kernel-new": "new", "torch-sdpa": "torch"}

    print(f"machine: {_machine()}")
    load0 = os.getloadavg()
    rows = []
    try:
        for spec in args.shapes:
            name, batch = spec.split(":")
            H, D, S = SHAPES[name]
            B = int(batch)
            for prec in args.precisions:
                for t in args.threads:
                    systems = _systems(prec, "old" in procs, have_torch)
                    base = {"B": B, "H": H, "D": D, "S": S, "prec": prec, "threads": t}
                    # calibrate reps per system to ~block-ms
                    reps = {}
                    for s in systems:
                        one = min(procs[owner[s]].time({**base, "system": s}, 3))
                        reps[s] = max(3, min(200, int(args.block_ms * 1e3 / max(one, 1.0))))
                    times: dict[str, list[float]] = {s: [] for s in systems}
                    for r in range(args.rounds):
                        order = systems[r % len(systems):] + systems[:r % len(systems)]
                        for s in order:
                            time.sleep(0.15)
                            times[s] += procs[owner[s]].time({**base, "system": s}, reps[s])
                    med = {s: float(np.median(v)) for s, v in times.items()}
                    row = {"shape": f"{name} B={B} H={H} D={D} S={S}", "prec": prec, "threads": t, "us": med,
                           "gflops": {s: 4.0 * B * H * S * S * D / (m * 1e3) for s, m in med.items()}}
                    rows.append(row)
                    _print_row(row)
    finally:
        for p in procs.values():
            p.close()
    load1 = os.getloadavg()
    print(f"load average (1/5/15 min): before {load0[0]:.2f}/{load0[1]:.2f}/{load0[2]:.2f}, "
          f"after {load1[0]:.2f}/{load1[1]:.2f}/{load1[2]:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": _machine(), "load_before": load0, "load_after": load1, "rows": rows}, f, indent=1)
    return 0


_HEADER = False


def _print_row(row: dict[str, Any]) -> None:
    global _HEADER
    cols = ["step-old", "step-new", "kernel-old", "kernel-new", "torch-sdpa"]
    if not _HEADER:
        print(f"{'shape':<28}{'prec':<6}{'thr':>4}" + "".join(f"{c + ' us':>15}" for c in cols)
              + f"{'step o/n':>10}{'kern o/n':>10}{'torch/new':>10}{'GFLOPS new':>11}")
        _HEADER = True
    us = row["us"]
    cells = "".join(f"{us[c]:>15.1f}" if c in us else f"{'-':>15}" for c in cols)

    def ratio(a: str, b: str) -> str:
        return f"{us[a] / us[b]:>10.2f}" if a in us and b in us else f"{'-':>10}"
    print(f"{row['shape']:<28}{row['prec']:<6}{row['threads']:>4}{cells}{ratio('step-old', 'step-new')}"
          f"{ratio('kernel-old', 'kernel-new')}{ratio('torch-sdpa', 'kernel-new')}"
          f"{row['gflops']['kernel-new']:>11.1f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
