"""Weight sparsity on the BBC News MiniLM classifier: accuracy and int8 latency vs sparsity.

    python benchmarks/sparsity_minilm.py [--threads 1] [--out benchmarks/results/sparsity-minilm]

For each setting (dense; 4x1 blocks at 50 / 75 / 90 %; unstructured and 2:4 for accuracy only;
some with the least-squares refit on the task's 64 calibration articles) the classifier
(``graphopt.models.bbc``) is sparsified by ``graphopt.prune(sparsity=, pattern=)`` (magnitude,
per layer, no retraining), quantized
statically to int8 (graphopt, the task's calibration batches), and run by:

* graphopt native int8 with the marked layers on the sparse 4x1 kernel,
* graphopt native int8, same model, every layer on the dense int8 kernel,
* onnxruntime on the same int8 (QDQ) file: its dense int8 kernels.

Accuracy on the validation and test splits; latency at batch 1 and 8 x 128 tokens, the three
systems interleaved in rounds with a ~150 ms pause before each system's block; medians. Speed
is claimed only against graphopt's own dense int8 kernel on the same weights. Writes table.md
and results.json.
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
from graphopt.ir import NODE_PROPS  # noqa: E402
from graphopt.models.bbc import NAMES, accuracy, bbc_classifier, load_split  # noqa: E402

#: (pattern, ratio, least-squares refit on the calibration batches)
SETTINGS = [("dense", 0.0, False), ("4x1", 0.5, False), ("4x1", 0.75, False), ("4x1", 0.75, True),
            ("4x1", 0.9, False), ("4x1", 0.9, True), ("unstructured", 0.5, False), ("unstructured", 0.5, True),
            ("unstructured", 0.75, True), ("2:4", 0.5, False), ("2:4", 0.5, True)]


def unmarked(model):
    m = graphopt.load(graphopt.to_onnx(model).SerializeToString())
    for n in m.graph.walk():
        n.meta.pop(NODE_PROPS, None)
    return m


def ort_runner(path: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return lambda feeds: sess.run(None, feeds)


def block(run, feeds, n: int) -> float:
    time.sleep(0.15)
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        run(feeds)
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--only", default="", help="comma-separated pattern:ratio[:refit] settings (default: all)")
    ap.add_argument("--out", default="benchmarks/results/sparsity-minilm")
    ap.add_argument("--table-only", metavar="NOTE", help="re-render table.md from OUT/results.json (e.g. of a run "
                    "that was cut short), NOTE describing the run")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.table_only:
        rows = json.loads((out / "results.json").read_text())
        rows = rows["rows"] if isinstance(rows, dict) else rows
        write_table(out, rows, args.table_only, bbc_classifier().accuracy_fp32)
        return 0
    out.mkdir(parents=True, exist_ok=True)
    graphopt.set_num_threads(args.threads)
    task = bbc_classifier()
    val, test = load_split(task.val), load_split(task.test)
    lat_feeds = {b: {k: test[k][:b] for k in NAMES} for b in (1, 8)}
    settings = SETTINGS if not args.only else [
        (x.split(":")[0], float(x.split(":")[1]), x.endswith(":refit")) for x in args.only.split(",")]
    rows = []
    for pattern, ratio, refit in settings:
        t0 = time.perf_counter()
        m = graphopt.load(task.path)
        sp = None
        if pattern != "dense":
            m, rep = graphopt.prune(m, str(task.calib) if refit else None, sparsity=ratio, pattern=pattern,
                                    reconstruct=refit, progress=False)
            sp = rep.sparsity
        q = graphopt.quantize(m, str(task.calib), progress=False)
        qpath = graphopt.save(q, out / "model.int8.onnx")
        sparse_sess = graphopt.compile(q, num_threads=args.threads)
        dense_sess = graphopt.compile(unmarked(q), num_threads=args.threads)
        systems = {"graphopt int8, sparse kernel": sparse_sess.run, "graphopt int8, dense kernel": dense_sess.run,
                   "onnxruntime int8 (same QDQ file)": ort_runner(qpath, args.threads)}
        marked = str(sparse_sess.summary()).count("sparse_4x1@")
        feeds = lat_feeds[8]
        assert all(np.array_equal(a, b) for a, b in zip(sparse_sess.run(feeds), dense_sess.run(feeds)))
        row = {"pattern": pattern, "ratio": ratio, "refit": refit, "linear_sparsity": sp.sparsity if sp else 0.0,
               "sparse_steps": marked, "int8_mb": (sp.int8_bytes / 1e6) if sp else None, "systems": {}}
        names = list(systems)
        for name in names[1:] if marked == 0 else names:  # no marked layer: the sparse row is the dense one
            run = systems[name]
            row["systems"][name] = {"val": accuracy(run, val), "test": accuracy(run, test)}
        if pattern in ("dense", "4x1") and not refit:  # (a refit keeps the zero pattern: the same speed)
            for b, feeds in lat_feeds.items():
                for run in systems.values():  # warm-up
                    run(feeds)
                times: dict[str, list[float]] = {n: [] for n in row["systems"]}
                for _ in range(args.rounds):
                    for name in times:
                        times[name].append(block(systems[name], feeds, args.calls))
                for name, ts in times.items():
                    row["systems"][name][f"batch{b}_ms"] = float(np.median(ts)) * 1e3
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
        (out / "results.json").write_text(json.dumps(rows, indent=1))
    (out / "model.int8.onnx").unlink(missing_ok=True)
    machine = (f"{platform.machine()}, {args.threads} thread(s), ISA {graphopt.cpu_info()['isa_selected']}; shared "
               f"2-core machine (timings noisy); {args.rounds} rounds x {args.calls} calls, medians; seq 128")
    write_table(out, rows, machine, task.accuracy_fp32)
    return 0


def write_table(out: Path, rows: list, machine: str, fp32: dict) -> None:
    lines = [f"BBC News MiniLM classifier, magnitude sparsity per layer without retraining, static int8. {machine}. "
             f"fp32 accuracy: val {fp32['val']:.3f}, test {fp32['test']:.3f}.", "",
             "| pattern | linear weights zero | layers on sparse kernel | system | val acc | test acc | "
             "batch 1 (ms) | batch 8 (ms) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for name, s in r["systems"].items():
            b1, b8 = s.get("batch1_ms"), s.get("batch8_ms")
            what = f"{r['pattern']} {r['ratio']:.0%}" + (" + refit" if r["refit"] else "")
            lines.append(f"| {what} | {r['linear_sparsity']:.1%} | {r['sparse_steps']} | "
                         f"{name} | {s['val']:.3f} | {s['test']:.3f} | {'' if b1 is None else f'{b1:.2f}'} | "
                         f"{'' if b8 is None else f'{b8:.2f}'} |")
    table = "\n".join(lines) + "\n"
    print(table)
    (out / "table.md").write_text(table)
    (out / "results.json").write_text(json.dumps({"machine": machine, "fp32": fp32, "rows": rows}, indent=1))


if __name__ == "__main__":
    raise SystemExit(main())
