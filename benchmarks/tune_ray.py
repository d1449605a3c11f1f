"""Trial throughput on Ray: the same candidates scored by 1 and by 2 worker processes.

    python benchmarks/tune_ray.py --recipes 4 --repeats 1

On the BBC News classifier: ``--recipes`` candidates (all-int8 with different global knobs and
mixed precisions, seeded) are scored with the validation accuracy, once on a fresh local Ray
cluster with 1 scoring actor and once with 2 (each actor calibrates once per knob setting, as in
``graphopt tune``). Reports wall seconds, trials per hour, the ratio, and whether both runs gave the
same scores (so the tuner would choose the same recipe). Writes ``ray.json`` to ``--out``. Needs
``graphopt[distributed]``; run it on an otherwise idle machine (each actor takes one core).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import graphopt  # noqa: E402
import graphopt.quant  # noqa: E402
from graphopt.io import to_onnx  # noqa: E402
from graphopt.models.bbc import bbc_classifier  # noqa: E402
from graphopt.tune.executor import RayExecutor  # noqa: E402
from graphopt.tune.space import Recipe, find_groups  # noqa: E402


def _recipes(groups, n: int, seed: int) -> list[Recipe]:
    rng = np.random.default_rng(seed)
    out = [Recipe.make({})]
    while len(out) < n:
        prec = {g.name: str(rng.choice(("int8", "bf16", "fp32"), p=(0.7, 0.2, 0.1))) for g in groups}
        out.append(Recipe.make(prec))
    return out


def _run(args: tuple, recipes: list[Recipe], workers: int) -> tuple[float, list[float], set[int]]:
    ex = RayExecutor(args, workers)
    try:
        t = time.perf_counter()
        ex.prepare(recipes)  # one calibration per knob setting, sharded over the actors
        res = ex.accuracy(recipes)
        return time.perf_counter() - t, [r[0] for r in res], {r[2] for r in res}
    finally:
        ex.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipes", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/tune-ray")
    args = ap.parse_args()
    task = bbc_classifier()
    fp32 = graphopt.load(task.path)
    groups = find_groups(fp32)
    calib = graphopt.quant.prepare_batches(fp32, str(task.calib))
    ev = f"{Path(graphopt.__file__).parent / 'models' / 'bbc_eval.py'}:validation_accuracy"
    wargs = (to_onnx(fp32).SerializeToString(), groups, calib, "native", ev, 1)
    recipes = _recipes(groups, args.recipes, args.seed)
    rows = []
    for rep in range(args.repeats):
        for workers in (1, 2):
            wall, scores, pids = _run(wargs, recipes, workers)
            rows.append({"repeat": rep, "workers": workers, "wall_s": round(wall, 2),
                         "trials_per_hour": round(3600 * len(recipes) / wall, 1), "scores": scores,
                         "processes": len(pids)})
            print(f"{workers} worker(s): {wall:7.1f} s for {len(recipes)} trials "
                  f"({rows[-1]['trials_per_hour']:.0f}/h) on {len(pids)} process(es)")
    one = [r["wall_s"] for r in rows if r["workers"] == 1]
    two = [r["wall_s"] for r in rows if r["workers"] == 2]
    speedup = float(np.median(one) / np.median(two))
    same = all(r["scores"] == rows[0]["scores"] for r in rows)
    best = int(np.argmax(rows[0]["scores"]))
    summary = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
               "load_average": os.getloadavg(), "recipes": len(recipes), "speedup_2_vs_1": round(speedup, 2),
               "same_scores": same, "best_recipe_index": best, "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ray.json").write_text(json.dumps(summary, indent=1))
    print(f"2 vs 1 workers: {speedup:.2f}x trials per hour; same scores in every run: {same}")


if __name__ == "__main__":
    main()
