"""Cost-table fidelity: the tuner's predicted latency against the measured one, on mixed recipes.

    python benchmarks/tune_cost_fidelity.py --configs 6 --rounds 7

On the BBC News classifier (batch 1, 128 tokens, native runtime, ``--threads``): the one-node cost table
(``graphopt.tune.tables.measure_costs``, cached per machine) predicts each recipe; three whole-model
anchors (all-fp32, all-bf16, all-int8) are timed in the same interleaved rounds as ``--configs`` random
mixed int8/bf16/fp32 recipes (seeded). Reported: the mean absolute error of the prediction on the mixed
recipes, for the table only re-scaled to the fp32 anchor (what the tuner did before) and for the table
fitted to the three anchors (``CostTable.fitted``, what it does now). Writes ``fidelity.json`` and
``fidelity.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import graphopt  # noqa: E402
import graphopt.quant  # noqa: E402
from graphopt.io import to_onnx  # noqa: E402
from graphopt.models.bbc import NAMES, bbc_classifier, load_split  # noqa: E402
from graphopt.tune.api import _producers  # noqa: E402
from graphopt.tune.executor import Worker  # noqa: E402
from graphopt.tune.space import Recipe, find_groups, make_runner  # noqa: E402
from graphopt.tune.tables import cpu_clock, measure_costs, time_round_robin  # noqa: E402

PRECISIONS = ("int8", "bf16", "fp32")


def _mixed(groups, n: int, seed: int) -> list[Recipe]:
    """``n`` recipes whose int8/bf16/fp32 shares sweep from mostly int8 to mostly float."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        w_int8 = 0.8 - 0.6 * i / max(n - 1, 1)
        probs = np.array([w_int8, (1 - w_int8) * 0.6, (1 - w_int8) * 0.4])
        out.append(Recipe.make({g.name: str(rng.choice(PRECISIONS, p=probs)) for g in groups}))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/tune-cost-fidelity")
    args = ap.parse_args()
    task = bbc_classifier()
    fp32 = graphopt.load(task.path)
    groups = find_groups(fp32)
    producers = _producers(fp32, groups)
    val = load_split(task.val)
    feeds = {k: val[k][:1] for k in NAMES}
    calib = graphopt.quant.prepare_batches(fp32, str(task.calib))
    worker = Worker(to_onnx(fp32).SerializeToString(), groups, calib, "native", None, args.threads)
    table = measure_costs(fp32, groups, feeds, "native", PRECISIONS, threads=args.threads, progress=True)
    anchors = {f"all-{p}": Recipe.make({g.name: p for g in groups}) for p in PRECISIONS}
    mixed = _mixed(groups, args.configs, args.seed)
    recipes = anchors | {f"mixed-{i}": r for i, r in enumerate(mixed)}
    runs = {k: make_runner(worker.build(r), "native", args.threads) for k, r in recipes.items()}
    # the clock the tuner's table is measured with (CPU time at one thread): predictions and measurements alike
    measured = time_round_robin(runs, feeds, args.rounds, cpu=cpu_clock(args.threads))

    rescaled = table.rescaled(measured["all-fp32"] / table.total_fp32)
    fitted = table.fitted([(r, measured[k]) for k, r in anchors.items()], producers)
    rows = []
    for k, r in recipes.items():
        rows.append({"recipe": k, "counts": r.counts(groups), "measured_ms": measured[k] * 1e3,
                     "rescaled_ms": rescaled.predict(r, producers) * 1e3,
                     "fitted_ms": fitted.predict(r, producers) * 1e3})

    def mae(col: str) -> float:
        errs = [abs(r[col] - r["measured_ms"]) / r["measured_ms"] for r in rows if r["recipe"].startswith("mixed")]
        return 100 * float(np.mean(errs))

    summary = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
               "threads": args.threads, "cpu_time": cpu_clock(args.threads), "rounds": args.rounds,
               "groups": len(groups), "load_average": os.getloadavg(),
               "mean_abs_error_pct_rescaled": round(mae("rescaled_ms"), 1),
               "mean_abs_error_pct_fitted": round(mae("fitted_ms"), 1), "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fidelity.json").write_text(json.dumps(summary, indent=1))
    lines = ["| recipe | int8/bf16/fp32 groups | measured ms | predicted (re-scaled) | predicted (fitted) |",
             "|---|---|---|---|---|"]
    for r in rows:
        c = r["counts"]
        lines.append(f"| {r['recipe']} | {c.get('int8', 0)}/{c.get('bf16', 0)}/{c.get('fp32', 0)} | "
                     f"{r['measured_ms']:.2f} | {r['rescaled_ms']:.2f} | {r['fitted_ms']:.2f} |")
    lines.append(f"\nMean abs error on the {args.configs} mixed recipes: re-scaled "
                 f"{summary['mean_abs_error_pct_rescaled']} %, fitted {summary['mean_abs_error_pct_fitted']} % "
                 f"(median of {args.rounds} interleaved rounds, {args.threads} thread(s), "
                 f"{'CPU' if cpu_clock(args.threads) else 'wall'} time).")
    (out / "fidelity.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
