"""``graphopt tune MODEL --eval FILE.py:FUNC --calib DATA -o OUTDIR``: the fastest model within a tolerance.

``FUNC(run) -> float`` (higher is better) scores a candidate; ``run(feeds)``
returns its outputs on the target. A FUNC returning one score per sample (an
array) lets the tuner accept candidates on a paired confidence bound
(``--confidence``) instead of the mean alone. MODEL may be ``bbc`` for the BBC News
classifier (built and cached on first use; ``--eval``/``--test-eval``/``--calib``
then default to its per-article validation and test correctness and its calibration folder).

    graphopt tune bbc --tolerance 0.01 -o tuned-bbc
    graphopt tune model.onnx --eval my_eval.py:accuracy --calib batches/ --workers 2 -o tuned
"""

from __future__ import annotations

from ._common import add_output

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tune", help="accuracy-driven, latency-aware mixed-precision tuning")
    p.add_argument("model", help="an .onnx file, or 'bbc' for the BBC News MiniLM classifier")
    p.add_argument("--eval", dest="evaluate", help="FILE.py:FUNC scoring run(feeds) -> outputs (higher is better)")
    p.add_argument("--calib", help="calibration data: folder of .npz batches or an .npz file")
    p.add_argument("--tolerance", type=float, default=0.01, help="allowed loss (relative to fp32 unless --absolute)")
    p.add_argument("--absolute", action="store_true", help="the tolerance is an absolute score difference")
    p.add_argument("--target", choices=("native", "onnxruntime", "openvino"), default="native",
                   help="where candidates run and are timed (default native)")
    p.add_argument("--test-eval", help="FILE.py:FUNC: held-out score reported (never used to choose)")
    p.add_argument("--strategy", choices=("pareto", "basic", "greedy"), default="pareto",
                   help="pareto: cost/error tables + verified front; basic: INC order; greedy: NNCF order")
    p.add_argument("--max-trials", type=int, default=50, help="user evaluations at most (fp32 included)")
    p.add_argument("--timeout", type=float, help="seconds at most")
    p.add_argument("--workers", type=int, default=1, help="scoring processes on a local Ray cluster (> 1: Ray)")
    p.add_argument("--address", help="an existing Ray cluster's address")
    p.add_argument("--confidence", type=_confidence, default=0.9,
                   help="with per-sample scores: the one-sided confidence of the paired bound a candidate "
                        "must keep within the tolerance; 'none' compares means (default 0.9)")
    p.add_argument("--knob-trials", type=int, default=3,
                   help="knob settings Optuna ranks by the all-int8 model's probe error, no user evaluation "
                        "(pareto; only the best is scored, and only if the defaults miss)")
    p.add_argument("--threads", type=int, help="threads per candidate session")
    p.add_argument("--prune", type=_ratios, default=(),
                   help="prune ratios to search, e.g. 0,0.25,0.5: heads and FFN neurons removed before quantizing")
    add_output(p, "output folder (model.onnx, recipe.json, trials.jsonl, pareto.png, report.html)", dest="out")
    p.set_defaults(func=run)


def _ratios(text: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--prune takes ratios like 0,0.25,0.5, got {text!r}") from None
    if any(not 0 <= v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"--prune ratios must be in [0, 1), got {text!r}")
    return vals


def _confidence(text: str) -> float | None:
    if text.strip().lower() in ("none", "off", "0"):
        return None
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--confidence takes a number in [0.5, 1) or 'none', got {text!r}") from None
    if not 0.5 <= v < 1:
        raise argparse.ArgumentTypeError(f"--confidence must be in [0.5, 1), got {text!r}")
    return v


def run(args: argparse.Namespace) -> int:
    from ..errors import GraphoptError
    from ..tune import tune

    model, evaluate, test_eval, calib = args.model, args.evaluate, args.test_eval, args.calib
    if args.model == "bbc":
        from ..models.bbc import bbc_classifier

        task = bbc_classifier()
        here = Path(__file__).resolve().parents[1] / "models" / "bbc_eval.py"
        model = task.path
        evaluate = evaluate or f"{here}:validation_correct"
        test_eval = test_eval or f"{here}:test_correct"
        calib = calib or str(task.calib)
    if not evaluate or not calib:
        raise GraphoptError("--eval FILE.py:FUNC and --calib DATA are required (except for the 'bbc' model)")
    res = tune(model, evaluate, calib, tolerance=args.tolerance, relative=not args.absolute, target=args.target,
               strategy=args.strategy, max_trials=args.max_trials, timeout=args.timeout, workers=args.workers,
               address=args.address, outdir=args.out, test_evaluate=test_eval, knob_trials=args.knob_trials,
               threads=args.threads, progress=sys.stderr.isatty(), prune=args.prune,
               confidence=args.confidence)
    print(res.message)
    print(f"strategy {res.strategy} on {res.target}: {res.evaluations} evaluations, {res.wall_seconds:.0f} s")
    print(f"  fp32    score {res.baseline:.4f}" + (f"  test {res.baseline_test_accuracy:.4f}"
                                                     if res.baseline_test_accuracy is not None else "")
          + f"  {res.baseline_latency_ms:.2f} ms")
    print(f"  chosen  score {res.accuracy:.4f}" + (f"  test {res.test_accuracy:.4f}"
                                                     if res.test_accuracy is not None else "")
          + f"  {res.latency_ms:.2f} ms")
    for f in ("model.onnx", "recipe.json", "trials.jsonl", "pareto.png", "report.html"):
        print(f"wrote {Path(args.out) / f}")
    return 0 if res.met else 1
