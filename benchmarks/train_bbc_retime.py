"""Re-time the dense BBC classifier, the 50 %-pruned distilled model and the 3-layer student at int8
(graphopt's default PTQ), interleaved, batch 1 and 8, 1 thread: the compression goal's ratio on a
quiet machine. Models from ``benchmarks/train_bbc.py train`` (``--work``).

    python benchmarks/train_bbc_retime.py --rounds 7 --out benchmarks/results/train-bbc/retime-idle.json
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import graphopt  # noqa: E402
from graphopt.models.bbc import NAMES, bbc_classifier, load_split  # noqa: E402
from graphopt.tune.tables import time_round_robin  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=str(Path.home() / ".cache" / "graphopt" / "train-bbc-s128"))
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", default="benchmarks/results/train-bbc/retime-idle.json")
    args = ap.parse_args()
    task = bbc_classifier()
    val = load_split(task.val)
    work = Path(args.work)
    models = {"dense": task.path, "50% distilled": work / "pruned50.onnx", "3-layer student": work / "student3.onnx"}
    sessions = {k: graphopt.compile(graphopt.quantize(graphopt.load(p), str(task.calib), progress=False), num_threads=1)
                for k, p in models.items()}
    res = {}
    for b in (1, 8):
        feeds = {k: val[k][:b] for k in NAMES}
        t = time_round_robin({k: (lambda f, s=s: s.run(f)) for k, s in sessions.items()}, feeds, args.rounds)
        res[b] = {k: round(v * 1e3, 2) for k, v in t.items()}
        print(f"batch {b}: " + ", ".join(f"{k} {v:.2f} ms ({t['dense'] / t[k]:.2f}x)" for k, v in res[b].items()),
              f"load {os.getloadavg()[0]:.1f}")
    Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
