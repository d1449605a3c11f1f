"""Re-time the models of ``benchmarks/tune_bbc.py`` interleaved (round-robin medians), so a shared
machine's load drifts over all of them alike. Batch 1, 128 tokens, ``--threads`` each.

    python benchmarks/tune_bbc_retime.py --dir benchmarks/results/tune-bbc --rounds 7
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import graphopt
from graphopt.models.bbc import NAMES, bbc_classifier, load_split
from graphopt.tune import make_runner
from graphopt.tune.tables import time_round_robin


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dir", default="benchmarks/results/tune-bbc",
                    help="tune_bbc.py's --out (tune-STRATEGY/, ort_static.onnx, nncf_ac.xml)")
    ap.add_argument("--out", default=None, help="default DIR/retime.json")
    args = ap.parse_args()
    task = bbc_classifier()
    val = load_split(task.val)
    feeds = {k: val[k][:1] for k in NAMES}
    res = Path(args.dir)
    runs = {"graphopt fp32": make_runner(graphopt.load(task.path), "native", args.threads)}
    s = graphopt.compile(task.path, "bf16", num_threads=args.threads)
    runs["graphopt bf16"] = lambda f, s=s: s.run(f)
    for strat in ("pareto", "basic", "greedy"):
        p = res / f"tune-{strat}" / "model.onnx"
        if p.exists():
            runs[f"graphopt tune {strat}"] = make_runner(graphopt.load(p), "native", args.threads)
        for sub in sorted((res / f"tune-{strat}").glob("prune-*/model.onnx")):  # each ratio's own pick
            runs[f"graphopt tune {strat} {sub.parent.name}"] = make_runner(graphopt.load(sub), "native", args.threads)
    p = res / "ort_static.onnx"
    if p.exists():
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        o = ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
        runs["onnxruntime quantize_static"] = lambda f, o=o: o.run(None, f)
    p = res / "nncf_ac.xml"
    if p.exists():
        import openvino as ov

        cm = ov.Core().compile_model(str(p), "CPU", {"INFERENCE_NUM_THREADS": args.threads})
        req, o0 = cm.create_infer_request(), cm.outputs[0]
        runs["NNCF accuracy control (OpenVINO)"] = lambda f, req=req, o0=o0: [req.infer(f)[o0]]
    out = {k: round(v * 1e3, 2) for k, v in time_round_robin(runs, feeds, args.rounds).items()}
    Path(args.out or res / "retime.json").write_text(json.dumps(out, indent=1))
    for k, v in out.items():
        print(f"{k:32s} {v:8.2f} ms  ({v / out['graphopt fp32']:.2f}x fp32)")


if __name__ == "__main__":
    main()
