"""Is graphopt export-form blind? all-MiniLM-L6-v2 exported in all four forms ({eager, sdpa} x
{TorchScript, dynamo}), each compiled by graphopt at int8 static / int8 dynamic / bf16 / fp32, all
timed round-robin in one process (a pause before each block, medians), with OpenVINO+NNCF int8 of
the default form as an anchor. For each precision: every form's latency over the best form's.

    python benchmarks/export_forms.py --rounds 7 --out benchmarks/results/export-forms

Batch 1, 128 tokens of real sentences, ``--threads`` each (default 1).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from graphopt.bench.models import _Builder, _feeds, _spec  # noqa: E402
from graphopt.tune.tables import time_round_robin  # noqa: E402

FORMS = ("eager-torchscript", "sdpa-torchscript", "eager-dynamo", "sdpa-dynamo")
SYSTEMS = ("graphopt-int8s", "graphopt-int8", "graphopt-bf16", "graphopt-fp32")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="minilm", choices=("minilm", "distilbert"))
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/export-forms")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="graphopt-forms-"))
    runs = {}
    for form in FORMS:
        b = _Builder(_spec(args.model, form), work / form)
        (work / form).mkdir(parents=True, exist_ok=True)
        feeds = _feeds(b.spec, 1, 128)
        systems = SYSTEMS + (("ov-int8",) if form == "sdpa-dynamo" else ())
        for system in systems:
            run = b.build(system, args.threads)[0]
            runs[f"{system} {form}"] = lambda _f, run=run, feeds=feeds: run(feeds)
        print(f"built {form}", flush=True)
    ms = {k: v * 1e3 for k, v in time_round_robin(runs, {}, args.rounds).items()}
    lines = [f"{args.model}, batch 1, 128 tokens, {args.threads} thread(s), {args.rounds} interleaved rounds "
             f"(medians, ms; x = over the best form of that precision)", "",
             "| precision | " + " | ".join(FORMS) + " |", "|---|" + "---|" * len(FORMS)]
    for system in SYSTEMS:
        row = [ms[f"{system} {f}"] for f in FORMS]
        best = min(row)
        lines.append(f"| {system} | " + " | ".join(f"{v:.2f} ({v / best:.2f}x)" for v in row) + " |")
    lines.append(f"\nOpenVINO+NNCF int8 (sdpa-dynamo): {ms['ov-int8 sdpa-dynamo']:.2f} ms")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"model": args.model, "threads": args.threads,
                                                  "rounds": args.rounds, "median_ms": ms}, indent=1))
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
