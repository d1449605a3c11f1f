"""Is graphopt export-form blind? all-MiniLM-L6-v2 exported in all four forms ({eager, sdpa} x
{TorchScript, dynamo}), each compiled by graphopt at int8 static / int8 dynamic / bf16 / fp32, all
timed round-robin in one process (a pause before each block, medians), with OpenVINO+NNCF int8 of
the default form as an anchor. For each precision: every form's latency over the best form's.

    python benchmarks/export_forms.py --rounds 7 --out benchmarks/results/export-forms

``--batch`` rows (default 1) of 128 tokens of real sentences, ``--threads`` each (default 1). Besides wall time, the
process CPU time of each block is kept: at 1 thread it is the run's own work and moves far less
than wall time when other processes share the cores. Each precision's four plans are also compared
step by step (kernel kind and kernel detail): identical plans mean any latency spread between the
forms is measurement noise, not a fusion the compiler missed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from graphopt.bench.models import _Builder, _feeds, _spec  # noqa: E402

FORMS = ("eager-torchscript", "sdpa-torchscript", "eager-dynamo", "sdpa-dynamo")
SYSTEMS = ("graphopt-int8s", "graphopt-int8", "graphopt-bf16", "graphopt-fp32")


def plan_signature(b: _Builder, system: str, threads: int) -> list[tuple[str, str]]:
    """(kind, kernel detail) per step of the plan ``b.build(system)`` runs."""
    import graphopt

    if system == "graphopt-int8s":
        sess = graphopt.compile(b.static_int8(), precision="int8", num_threads=threads, level="O0")
    else:
        sess = graphopt.compile(b.spec, precision=system.split("-")[1], num_threads=threads)
    return [(r[0], r[2]) for r in sess.summary().rows]


def round_robin(runs: dict[str, Callable[[], object]], rounds: int, block: int = 5,
                pause: float = 0.15) -> tuple[dict[str, float], dict[str, float]]:
    """Median wall and process-CPU seconds per system over ``rounds`` round-robin blocks (each the
    median of ``block`` runs after a warm-up run, a pause before each block)."""
    wall: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(rounds):
        for k, run in runs.items():
            time.sleep(pause)
            run()
            ws, cs = [], []
            for _ in range(block):
                c, t = time.process_time(), time.perf_counter()
                run()
                ws.append(time.perf_counter() - t)
                cs.append(time.process_time() - c)
            wall[k].append(statistics.median(ws))
            cpu[k].append(statistics.median(cs))
    return ({k: statistics.median(v) for k, v in wall.items()}, {k: statistics.median(v) for k, v in cpu.items()})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="minilm", choices=("minilm", "distilbert"))
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/export-forms")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="graphopt-forms-"))
    runs = {}
    plans: dict[str, dict[str, list[tuple[str, str]]]] = {s: {} for s in SYSTEMS}
    for form in FORMS:
        b = _Builder(_spec(args.model, form), work / form)
        (work / form).mkdir(parents=True, exist_ok=True)
        feeds = _feeds(b.spec, args.batch, 128)
        systems = SYSTEMS + (("ov-int8",) if form == "sdpa-dynamo" else ())
        for system in systems:
            run = b.build(system, args.threads)[0]
            runs[f"{system} {form}"] = lambda run=run, feeds=feeds: run(feeds)
            if system in plans:
                plans[system][form] = plan_signature(b, system, args.threads)
        print(f"built {form}", flush=True)
    load0 = os.getloadavg()[0]
    wall, cpu = round_robin(runs, args.rounds)
    ms = {k: v * 1e3 for k, v in wall.items()}
    cpu_ms = {k: v * 1e3 for k, v in cpu.items()}
    load = f"load average {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, {os.cpu_count()} logical CPUs"
    same = {s: all(p == plans[s][FORMS[0]] for p in plans[s].values()) for s in SYSTEMS}
    lines = [f"{args.model}, batch {args.batch}, 128 tokens, {args.threads} thread(s), {args.rounds} interleaved rounds "
             f"(medians, ms; x = over the best form of that precision); {load}", "",
             "| precision | " + " | ".join(FORMS) + " | plans |", "|---|" + "---|" * (len(FORMS) + 1)]
    for system in SYSTEMS:
        row = [ms[f"{system} {f}"] for f in FORMS]
        best = min(row)
        plan = "identical" if same[system] else "differ"
        lines.append(f"| {system} | " + " | ".join(f"{v:.2f} ({v / best:.2f}x)" for v in row) + f" | {plan} |")
    lines += ["", "Process CPU time, same runs (ms; x = over the best form):", "",
              "| precision | " + " | ".join(FORMS) + " |", "|---|" + "---|" * len(FORMS)]
    for system in SYSTEMS:
        row = [cpu_ms[f"{system} {f}"] for f in FORMS]
        best = min(row)
        lines.append(f"| {system} | " + " | ".join(f"{v:.2f} ({v / best:.2f}x)" for v in row) + " |")
    lines.append(f"\nOpenVINO+NNCF int8 (sdpa-dynamo): {ms['ov-int8 sdpa-dynamo']:.2f} ms "
                 f"(CPU {cpu_ms['ov-int8 sdpa-dynamo']:.2f} ms)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"model": args.model, "threads": args.threads, "batch": args.batch,
                                                  "rounds": args.rounds, "load": load, "median_ms": ms,
                                                  "cpu_ms": cpu_ms, "plans_identical": same}, indent=1))
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
