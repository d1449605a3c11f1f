"""``graphopt bench [MODEL]``: graphopt's native runtime against onnxruntime, OpenVINO and PyTorch.

MODEL is ``minilm`` (default, the bundled all-MiniLM-L6-v2), ``distilbert`` or a path to an
ONNX encoder (``--model`` works too). Prints a table per (batch, threads) with medians, ratios,
fidelity to fp32 and memory, the issue-6 targets, and writes results.json and latency.png.

``graphopt bench --scale [--sizes 0.1,1,4] [--steps ...] [--out DIR]``: time and peak memory of
each pipeline step (load, O2, int4 RTN/GPTQ, save, compile) and of the peers (onnxruntime session,
its MatMulNBits quantizer, NNCF compress_weights) against model size, every step alone in a child
process (graphopt.bench.scale_suite); MODEL, if given, is an ONNX file measured as well.
"""

from __future__ import annotations

import argparse
import json
import os


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmark a transformer end to end: graphopt native vs onnxruntime, "
                                     "OpenVINO, PyTorch (table, JSON, PNG)")
    p.add_argument("model", nargs="?", default=None, help="minilm (default), distilbert, or an ONNX path")
    p.add_argument("--model", dest="model_opt", default=None, help="same as the positional MODEL")
    p.add_argument("--export-form", default="eager-torchscript",
                   choices=["eager-torchscript", "sdpa-torchscript", "eager-dynamo", "sdpa-dynamo"],
                   help="for minilm/distilbert: transformers attention x torch exporter of the ONNX file "
                        "(default eager-torchscript, graphopt's own export; sdpa-dynamo is the libraries' default)")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="batch sizes (default: 1 8)")
    p.add_argument("--seq", type=int, default=128, help="sequence length (default: 128)")
    p.add_argument("--threads", type=int, nargs="+", help="thread counts (default: 1 and all cores)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default: 5)")
    p.add_argument("--per-round", type=int, default=3, help="timed runs per system per round (default: 3)")
    p.add_argument("--systems", nargs="+", help="only these systems (see graphopt.bench.models.SYSTEMS)")
    p.add_argument("-o", "--output", "--out", dest="out", default="out/bench", help="directory for results.json and latency.png")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    p.add_argument("--quick", action="store_true", help="batch 1 only, 3 rounds of 2 runs (a smoke run, not a measurement)")
    p.add_argument("--memory", action="store_true",
                   help="also measure each system's memory alone in a child process (mem MB: resident growth "
                        "after build + one run; peak MB: peak growth, building included)")
    s = p.add_argument_group("scale (--scale)")
    s.add_argument("--scale", action="store_true",
                   help="cost of each pipeline step against model size (MatMul stacks of --sizes GB, fp32, external "
                        "data): wall time and peak memory growth per step, each in its own child process; writes "
                        "scale.json, scale.md and scale.png to --out")
    s.add_argument("--sizes", default="0.1,1", help="--scale: MatMul-stack sizes in GB, comma-separated")
    s.add_argument("--steps", default=None,
                   help="--scale: comma-separated steps of load, o2, rtn, gptq, save, compile (graphopt), ort, "
                        "ort-nbits, nncf (peers); default all but gptq")
    s.add_argument("--llama", action="store_true", help="--scale: also the ~1.1B LLaMA-config decoder (4.4 GB fp32)")
    s.add_argument("--hidden", type=int, default=2048, help="--scale: width of the MatMul stacks")
    s.add_argument("--work", default=None,
                   help="--scale: directory for the generated models and the steps' outputs "
                        "(default $GRAPHOPT_SCALE_TMP or /tmp/graphopt-scale)")
    s.add_argument("--timeout", type=float, default=3600, help="--scale: seconds allowed per step")
    s.add_argument("--replace", action="store_true",
                   help="--scale: scale.json holds this run only (default: this run's cells replace their "
                        "old values, the others are kept and marked with their run in scale.md)")
    p.set_defaults(func=run)


def _f(v, spec=".2f") -> str:
    return "-" if v is None else format(v, spec)


def print_report(rep) -> None:
    """Print a model-bench report: one table per (batch, threads), then the issue's targets."""
    from ..bench.models import evaluate_targets

    m = rep.machine
    print(f"\n{rep.model} ({rep.export_form}), seq {rep.seq} | {m['cpu']} ({m['logical_cpus']} logical CPUs, isa {m['isa_selected']}) | "
          f"onnxruntime {m['onnxruntime']}, openvino {m['openvino']}, torch {m['torch']}")
    for k, v in rep.skipped.items():
        print(f"skipped {k}: {v}")
    keys = sorted({(r.batch, r.threads) for r in rep.results})
    for b, t in keys:
        rows = [r for r in rep.results if r.batch == b and r.threads == t]
        base = {r.system: r.median_ms for r in rows}
        g = {p: base.get(f"graphopt-{p}") for p in ("fp32", "bf16", "int8")}
        print(f"\nbatch {b}, {t} thread(s): median ms over {rows[0].runs if rows else 0} runs")
        hdr = (f"{'system':<15} {'median ms':>9} {'cpu ms':>8} {'x g-fp32':>8} {'x g-bf16':>8} {'x g-int8':>8} {'cosine':>7} "
               f"{'min cos':>7} {'max|err|':>9} {'mem MB':>7} {'peak MB':>7} {'size MB':>7}  note")
        print(hdr)
        print("-" * len(hdr))
        for r in rows:
            ratios = [(r.median_ms / g[p]) if g[p] and r.median_ms else None for p in ("fp32", "bf16", "int8")]
            print(f"{r.system:<15} {_f(r.median_ms):>9} {_f(r.cpu_ms):>8} {_f(ratios[0]):>8} {_f(ratios[1]):>8} {_f(ratios[2]):>8} "
                  f"{_f(r.cosine, '.4f'):>7} {_f(r.min_cosine, '.4f'):>7} {_f(r.max_abs_err, '.3g'):>9} "
                  f"{_f(r.rss_mb, '.0f'):>7} {_f(r.peak_mb, '.0f'):>7} {_f(r.size_mb, '.1f'):>7}  {r.note}")
    load = [m.get(k) for k in ("loadavg_start", "loadavg_end")]
    if all(v is not None for v in load):
        print(f"\nload average (1 min) at start / end: {load[0]} / {load[1]} on {m['logical_cpus']} logical CPUs")
    print("\ntargets (issues 6 and 12; ratio = graphopt / peer wall-time medians, lower is better; "
          "cpu = the same on CPU-time medians, 1 thread only):")
    for t in evaluate_targets(rep):
        cpu = f" cpu {t['cpu_ratio']:.3f}" if t.get("cpu_ratio") is not None else ""
        print(f"  batch {t['batch']}, {t['threads']} thr: {t['target']:<38} {t['ratio']:.3f}{cpu} (<= {t['bound']}) "
              f"{'MET' if t['met'] else 'not met'} {t['note']}")


def run_scale(args: argparse.Namespace) -> int:
    from ..bench import scale_suite as ss
    from ..errors import UsageError

    try:
        sizes = ss.parse_sizes(args.sizes)
        steps = ss.parse_steps(args.steps) if args.steps else list(ss.DEFAULT_STEPS)
    except ValueError as e:
        raise UsageError(str(e)) from None
    model = args.model_opt or args.model
    models = [model] if model else []
    for m in models:
        if not os.path.isfile(m):
            raise UsageError(f"--scale: {m} is not an ONNX file")
    if args.hidden < 1:
        raise UsageError(f"--hidden must be positive, not {args.hidden}")

    errors = []

    def show(r: dict) -> None:
        if "error" in r:
            errors.append(r)
            print(f"  {r['model']:<16} {r['step']:<10} error: {r['error']}", flush=True)
        else:
            peak = r["peak_mb"] * 2**20 / 1e9
            print(f"  {r['model']:<16} {r['step']:<10} {r['seconds']:8.1f} s  peak +{peak:.3f} GB "
                  f"({peak / r['gb']:.2f}x model)", flush=True)

    rows = ss.run_scale(sizes, steps, out=args.out, work=args.work, models=models, llama=args.llama,
                        hidden=args.hidden, timeout=args.timeout, plot_png=not args.no_plot,
                        replace=args.replace, progress=show)
    print()
    print(ss.table(rows))
    print(f"\nwrote {os.path.join(args.out, 'scale.json')}, scale.md" + ("" if args.no_plot else ", scale.png"))
    return 1 if errors else 0


def run(args: argparse.Namespace) -> int:
    if args.scale:
        return run_scale(args)
    from ..bench.models import SYSTEMS, BenchConfig, plot, run_model_bench

    model = args.model_opt or args.model or "minilm"
    cfg = BenchConfig.quick(model, args.export_form) if args.quick else BenchConfig(
        model=model, export_form=args.export_form, batches=tuple(args.batch), rounds=args.rounds,
        per_round=args.per_round)
    cfg.seq = args.seq
    cfg.memory = args.memory
    if args.threads:
        cfg.threads = tuple(args.threads)
    if args.systems:
        unknown = [s for s in args.systems if s not in SYSTEMS]
        if unknown:
            print(f"unknown systems {unknown}; choose from {', '.join(SYSTEMS)}")
            return 2
        cfg.systems = tuple(args.systems)
    from .._quiet import quiet

    with quiet():  # other libraries' deprecation chatter and onnxruntime's quantizer hint
        rep = run_model_bench(cfg, progress=lambda s: print(f"  .. {s}", flush=True))
    print_report(rep)
    os.makedirs(args.out, exist_ok=True)
    from ..io.atomic import write_text

    write_text(os.path.join(args.out, "results.json"), json.dumps(rep.to_json(), indent=1))
    print(f"\nwrote {os.path.join(args.out, 'results.json')}")
    if not args.no_plot:
        png = os.path.join(args.out, "latency.png")
        plot(rep, png)
        print(f"wrote {png}")
    return 0
