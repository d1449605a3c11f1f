"""Accuracy-driven tuning on the BBC News MiniLM classifier, side by side with its peers.

    python benchmarks/tune_bbc.py --tolerance 0.01 --out benchmarks/results/tune-bbc
    python benchmarks/tune_bbc.py --only pareto,basic      # a subset of the rows

Rows (each: latency at batch 1 / 128 tokens on its own runtime, validation and held-out test
accuracy, user evaluations, wall time): fp32, all-bf16 and all-int8 on graphopt's native runtime;
onnxruntime ``quantize_static`` (QDQ, MinMax) in onnxruntime; NNCF
``quantize_with_accuracy_control`` on OpenVINO (needs ``pip install nncf``); graphopt ``tune`` with
the ``pareto``, ``basic`` and ``greedy`` strategies. Writes ``results.json`` and ``table.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


os.environ.setdefault("HF_HUB_OFFLINE", "1")

import graphopt  # noqa: E402
import graphopt.quant  # noqa: E402
from graphopt.models.bbc import NAMES, accuracy, bbc_classifier, load_split  # noqa: E402
from graphopt.tune.tables import time_run  # noqa: E402


def _lat_feeds(split):
    return {k: split[k][:1] for k in NAMES}


def _row(name, run, val, test, feeds, evals, wall, note=""):
    return {"system": name, "latency_ms": time_run(run, feeds, min_time=2.0, max_runs=200) * 1e3,
            "val": accuracy(run, val), "test": accuracy(run, test), "evaluations": evals,
            "wall_s": round(wall, 1), "note": note}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tolerance", type=float, default=0.01)
    ap.add_argument("--out", default="benchmarks/results/tune-bbc")
    ap.add_argument("--only", default="fp32,bf16,int8,ort,nncf,pareto,basic,greedy")
    ap.add_argument("--max-trials", type=int, default=40)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="threads per session, every system")
    ap.add_argument("--prune", default="", help="prune ratios for the pareto strategy, e.g. 0,0.25,0.5")
    ap.add_argument("--confidence", default="0.9",
                    help="graphopt tune's paired acceptance bound on per-article scores; 'none': means only")
    args = ap.parse_args()
    confidence = None if args.confidence == "none" else float(args.confidence)
    prune = tuple(float(r) for r in args.prune.split(",") if r)
    only = set(args.only.split(","))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    task = bbc_classifier()
    val, test = load_split(task.val), load_split(task.test)
    feeds = _lat_feeds(val)
    calib = graphopt.quant.prepare_batches(graphopt.load(task.path), str(task.calib))
    here = Path(graphopt.__file__).parent / "models" / "bbc_eval.py"
    rows_path = out / "results.json"
    rows = json.loads(rows_path.read_text()) if rows_path.exists() else []
    rows = [r for r in rows if r["system"].split()[0] not in only and r["key"] not in only]

    def add(key, row):
        row["key"] = key
        rows.append(row)
        rows_path.write_text(json.dumps(rows, indent=1))
        print(json.dumps(row), flush=True)

    from graphopt.tune import Recipe, build, find_groups, make_runner

    fp32 = graphopt.load(task.path)
    groups = find_groups(fp32)
    for key, prec in (("fp32", "fp32"), ("bf16", "bf16"), ("int8", "int8")):
        if key not in only:
            continue
        t = time.perf_counter()
        m = build(fp32, Recipe.make({g.name: prec for g in groups}), groups, calib)
        add(key, _row(f"graphopt {key} (native)", make_runner(m, "native", args.threads), val, test, feeds, 0,
                      time.perf_counter() - t))
    if "ort" in only:
        import onnxruntime as ort
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.it = iter(calib)

            def get_next(self):
                return next(self.it, None)

        t = time.perf_counter()
        dst = out / "ort_static.onnx"
        quantize_static(str(task.path), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True)
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        s = ort.InferenceSession(str(dst), so, providers=["CPUExecutionProvider"])
        add("ort", _row("onnxruntime quantize_static (QDQ, per-channel, MinMax)", lambda f: s.run(None, f), val, test,
                        feeds, 0, time.perf_counter() - t))
    if "nncf" in only:
        import nncf
        import openvino as ov

        core = ov.Core()
        t = time.perf_counter()
        model = core.read_model(str(task.path))
        n_eval = {"n": 0}
        vbatches = [{k: val[k][i:i + 32] for k in (*NAMES, "labels")} for i in range(0, len(val["labels"]), 32)]

        def validate(compiled, data) -> float:
            n_eval["n"] += 1
            right = total = 0
            for b in data:
                logits = compiled({k: b[k] for k in NAMES})[compiled.outputs[0]]
                right += int((logits.argmax(-1) == b["labels"]).sum())
                total += len(b["labels"])
            return right / max(total, 1)

        q = nncf.quantize_with_accuracy_control(
            model, nncf.Dataset(calib), nncf.Dataset(vbatches), validate, max_drop=args.tolerance,
            drop_type=nncf.DropType.RELATIVE, model_type=nncf.ModelType.TRANSFORMER)
        ov.save_model(q, str(out / "nncf_ac.xml"))  # re-timed with the others by tune_bbc_retime.py
        cm = core.compile_model(q, "CPU", {"INFERENCE_NUM_THREADS": args.threads})
        req = cm.create_infer_request()
        o = cm.outputs[0]
        add("nncf", _row("NNCF quantize_with_accuracy_control (OpenVINO)", lambda f: [req.infer(f)[o]], val, test,
                         feeds, n_eval["n"], time.perf_counter() - t))
    for strategy in ("pareto", "basic", "greedy"):
        if strategy not in only:
            continue
        t = time.perf_counter()
        res = graphopt.tune(task.path, f"{here}:validation_correct", str(task.calib), tolerance=args.tolerance,
                            strategy=strategy, max_trials=args.max_trials, workers=args.workers, threads=args.threads,
                            outdir=out / f"tune-{strategy}", test_evaluate=f"{here}:test_correct", progress=False,
                            prune=prune if strategy == "pareto" else (), confidence=confidence)
        c = res.recipe.counts(groups)  # pruning keeps the node names
        add(strategy, _row(f"graphopt tune {strategy} (native)", make_runner(res.model, "native", args.threads), val, test, feeds,
                           res.evaluations, time.perf_counter() - t,
                           f"{c['int8']} int8 / {c['bf16']} bf16 / {c['fp32']} fp32; prune {res.recipe.prune or 0}; "
                           f"met={res.met}"))
    lines = ["| system | latency ms (b1, 128 tok) | val acc | test acc | evaluations | wall s | note |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['system']} | {r['latency_ms']:.2f} | {r['val']:.4f} | {r['test']:.4f} | "
                     f"{r['evaluations']} | {r['wall_s']} | {r['note']} |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
