"""Latency of every zoo model: graphopt native fp32 / int8 vs onnxruntime and OpenVINO fp32.

    python benchmarks/zoo_latency.py [--threads 1] [--batch 1] [--rounds 5] [--calls 10] \
        [--out benchmarks/results/zoo-latency]

Per zoo architecture (graphopt.testing.zoo: 2 layers, hidden 64, random weights; seq 32 for
text, 32x32 images), in the default export form (sdpa + dynamo; eager + dynamo where there is
no sdpa; dynamo for the CNNs). Systems, all on the same feeds:

- graphopt fp32 / int8: ``graphopt.compile(path, precision=P, num_threads=T)`` (O2; int8 is
  dynamic: per-tensor activations, per-channel s8 weights);
- onnxruntime fp32: all graph optimizations, ``intra_op_num_threads=T``;
- OpenVINO fp32: ``INFERENCE_PRECISION_HINT=f32`` (no silent bf16), LATENCY hint, T threads, the
  model reshaped to the feeds' static shapes.

Systems are interleaved in rounds, a ~150 ms pause before each system's block of ``--calls``
calls; the table gives per-call medians over the rounds and ratios to onnxruntime. Cosine to
onnxruntime's output is reported beside each graphopt figure. Writes <out>.md and <out>.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import graphopt  # noqa: E402
from graphopt.testing.zoo import ZOO, export, forms_of  # noqa: E402

Call = Callable[[], object]


def _form(name: str) -> tuple[str, str]:
    forms = forms_of(ZOO[name])
    for want in (("sdpa", "dynamo"), ("eager", "dynamo"), ("-", "dynamo")):
        if want in forms and not export(name, *want).error:
            return want
    raise RuntimeError(f"{name}: no dynamo export")


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _systems(path: str, feeds: dict[str, np.ndarray], threads: int) -> tuple[dict[str, Call], dict[str, float]]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    feeds = {k: v for k, v in feeds.items() if k in names}
    ref = sess.run(None, feeds)[0]
    calls: dict[str, Call] = {"onnxruntime fp32": lambda: sess.run(None, feeds)}
    cos: dict[str, float] = {}
    for prec in ("fp32", "int8"):
        s = graphopt.compile(path, precision=prec, num_threads=threads)
        cos[f"graphopt {prec} fallbacks"] = float(len(s.fallbacks))  # reported (T5's per-head-bias attention)
        y = s.run(feeds)
        cos[f"graphopt {prec}"] = _cos(np.asarray(y[0] if isinstance(y, (list, tuple)) else y), ref)
        calls[f"graphopt {prec}"] = (lambda s=s: s.run(feeds))
    try:
        import openvino as ov

        core = ov.Core()
        om = core.read_model(path)
        # static input shapes (the exports' dims are symbolic; a dynamic OpenVINO model is not its best case)
        om.reshape({p.get_any_name(): list(feeds[p.get_any_name()].shape) for p in om.inputs
                    if p.get_any_name() in feeds})
        cm = core.compile_model(om, "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                             "INFERENCE_PRECISION_HINT": "f32",
                                                             "PERFORMANCE_HINT": "LATENCY"})
        req = cm.create_infer_request()
        order = [p.get_any_name() for p in cm.inputs]
        ov_feeds = {n: feeds[n] for n in order if n in feeds}
        calls["OpenVINO fp32"] = lambda: req.infer(ov_feeds)
    except Exception as e:  # noqa: BLE001 - a peer that cannot load the file is reported, not fatal
        logging.warning("OpenVINO cannot run %s: %s", path, str(e).splitlines()[0][:120])
    return calls, cos


def _time(fn: Call, calls: int) -> float:
    time.sleep(0.15)
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t) / calls * 1e3


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--models", default=",".join(ZOO), help="comma-separated zoo names")
    ap.add_argument("--out", default="benchmarks/results/zoo-latency")
    args = ap.parse_args(argv)
    order = ["graphopt fp32", "graphopt int8", "onnxruntime fp32", "OpenVINO fp32"]
    rows = []
    for name in args.models.split(","):
        attn, exporter = _form(name)
        e = export(name, attn, exporter)
        calls, cos = _systems(str(e.path), e.feeds(batch=args.batch), args.threads)
        for fn in calls.values():  # warm-up (first-run arena growth, OpenVINO's first infer)
            fn()
        times: dict[str, list[float]] = {k: [] for k in calls}
        for _ in range(args.rounds):
            for k, fn in calls.items():
                times[k].append(_time(fn, args.calls))
        med = {k: statistics.median(v) for k, v in times.items()}
        rows.append({"model": name, "form": e.form, "ms": med, "cosine": cos})
        print(name, e.form, {k: round(v, 3) for k, v in med.items()}, flush=True)

    ort_ms = lambda r: r["ms"]["onnxruntime fp32"]  # noqa: E731
    lines = ["# Zoo latency: graphopt native vs onnxruntime and OpenVINO (fp32 unless stated)", "",
             f"`python benchmarks/zoo_latency.py --threads {args.threads} --batch {args.batch} --rounds {args.rounds} "
             f"--calls {args.calls}`; {platform.processor() or platform.machine()}, {os.cpu_count()} cores "
             f"(shared with other jobs: noisy), batch {args.batch}, {args.threads} thread(s); medians of "
             f"{args.rounds} interleaved rounds of {args.calls} calls, ms per call; ratio = system / onnxruntime "
             "fp32; cos = cosine of graphopt's output to onnxruntime's.", "",
             "| model | form | graphopt fp32 | graphopt int8 | onnxruntime fp32 | OpenVINO fp32 | fp32 ratio | "
             "int8 ratio | OpenVINO ratio | int8 cos | Python fallbacks |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m = r["ms"]
        ov = m.get("OpenVINO fp32")
        lines.append(f"| {r['model']} | {r['form']} | {m['graphopt fp32']:.3f} | {m['graphopt int8']:.3f} | "
                     f"{ort_ms(r):.3f} | {'—' if ov is None else f'{ov:.3f}'} | "
                     f"{m['graphopt fp32'] / ort_ms(r):.2f} | {m['graphopt int8'] / ort_ms(r):.2f} | "
                     f"{'—' if ov is None else f'{ov / ort_ms(r):.2f}'} | {r['cosine']['graphopt int8']:.4f} | "
                     f"{int(r['cosine']['graphopt fp32 fallbacks'])} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"args": vars(args), "systems": order, "rows": rows}, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
