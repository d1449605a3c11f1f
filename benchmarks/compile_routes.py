"""Every int8 route to graphopt's native plan: steps and latency of all-MiniLM-L6-v2, seq 128, batch 1.

Routes (the QDQ files from graphopt.testing.int8_routes, calibrated on the same 32 shipped
sentences): the float file compiled at int8 (dynamic activations), graphopt's static quantize
(before O2), onnxruntime ``quantize_static`` (QDQ, per channel; MatMul inputs only, attention products
left float), NNCF ``nncf.quantize`` on the ONNX model (transformer preset, its defaults), and
graphopt.train's QAT export (fake-quant Linear modules, activation ranges from the same sentences,
no training steps). For each QDQ file, onnxruntime runs the same file (ORT_ENABLE_ALL) in the same
interleaved run, and OpenVINO runs NNCF's int8 (OpenVINO backend, same sentences) beside them.

Fidelity: cosine of the mask-mean-pooled embeddings to onnxruntime fp32 on the float file (mean over
the batch), and to onnxruntime on the same QDQ file. Timing: 1 thread, interleaved rounds, ~150 ms
pause before each system's block, medians. Run under ``flock /work/bench.lock``.

    python benchmarks/compile_routes.py --workdir W --prepare          # the QDQ files, once
    flock /work/bench.lock python benchmarks/compile_routes.py --workdir W [--form eager-torchscript] [--rounds 12]
"""

from __future__ import annotations

import argparse
import collections
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

import graphopt
from graphopt.bench.models import CALIB_SENTENCES, _fidelity
from graphopt.data import sentences
from graphopt.models import minilm_onnx, minilm_path, sample_feeds
from graphopt.testing.int8_routes import qat_file, route_file

Runner = Callable[[dict[str, np.ndarray]], np.ndarray]


def _ort(path: Path, threads: int) -> Runner:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return lambda f: s.run(None, f)[0]


def _ov_nncf(spec: Any, calib: list[dict[str, np.ndarray]], threads: int) -> Runner:
    import nncf
    import openvino as ov

    q = nncf.quantize(ov.Core().read_model(str(spec.path)), nncf.Dataset(calib), model_type=nncf.ModelType.TRANSFORMER,
                      subset_size=CALIB_SENTENCES)
    cm = ov.Core().compile_model(q, "CPU", {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                                            "NUM_STREAMS": 1})
    req, out = cm.create_infer_request(), cm.outputs[0]
    return lambda f: req.infer(f)[out]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--form", default="eager-torchscript", help="MiniLM export form {eager,sdpa}-{torchscript,dynamo}")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--runs", type=int, default=5, help="timed runs per system per round")
    ap.add_argument("--out", default="benchmarks/results/compile-routes")
    ap.add_argument("--workdir", default=None, help="where the QDQ files go (default: a temporary directory)")
    ap.add_argument("--prepare", action="store_true", help="only write the QDQ files (no timing: no lock needed)")
    args = ap.parse_args()
    threads, seq = 1, 128
    attn, exporter = args.form.split("-")
    spec = minilm_onnx(attn=attn, exporter=exporter)
    cal = sentences("calib")[:CALIB_SENTENCES]
    calib = [sample_feeds(spec, cal[i:i + 8], seq=seq) for i in range(0, len(cal), 8)]
    feeds = sample_feeds(spec, sentences("calib")[40:41], seq=seq)
    wd = Path(args.workdir or tempfile.mkdtemp(prefix="compile-routes-"))
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    ref = ort.InferenceSession(str(spec.path), so, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    mask = feeds.get("attention_mask")

    files: dict[str, Path | None] = {"float@int8": None}
    for route in ("graphopt", "onnxruntime", "nncf"):
        t = time.perf_counter()
        files[route] = route_file(route, spec.path, wd, calib, attention=route == "nncf")
        print(f"{route}: QDQ file in {time.perf_counter() - t:.0f} s", flush=True)
    import transformers

    module = transformers.AutoModel.from_pretrained(str(minilm_path()), attn_implementation=attn).eval()
    files["qat"] = qat_file(module, wd / "qat.onnx", calib)
    if args.prepare:
        print(f"QDQ files in {wd}")
        return

    systems: dict[str, Runner] = {}
    rows: dict[str, dict[str, Any]] = {}
    for route, path in files.items():
        t = time.perf_counter()
        sess = graphopt.compile(spec.path if path is None else path, "int8", threads)
        kinds = collections.Counter(st.kind for st in sess._steps)
        systems[f"graphopt {route}"] = (lambda s: (lambda f: s.run(f)[0]))(sess)
        rows[f"graphopt {route}"] = {"steps": len(sess._steps), "attention_kernels": kinds["Attention"],
                                     "linear_int8": sum(1 for st in sess._steps if st.kind == "Linear"
                                                        and st.iattrs.get("mode") == 2),
                                     "fallbacks": len(sess.fallbacks), "compile_s": round(time.perf_counter() - t, 2)}
        if path is not None:
            systems[f"onnxruntime {route}"] = _ort(path, threads)
            rows[f"onnxruntime {route}"] = {}
    systems["openvino+nncf int8"] = _ov_nncf(spec, calib, threads)
    rows["openvino+nncf int8"] = {}

    outs = {k: r(feeds) for k, r in systems.items()}
    for k, y in outs.items():
        rows[k]["cos_fp32"], _, rows[k]["max_abs_fp32"] = _fidelity(y, ref, mask)
        route = k.split(" ", 1)[1]
        if k.startswith("graphopt ") and files.get(route) is not None:
            rows[k]["cos_ort_same_file"] = _fidelity(y, outs[f"onnxruntime {route}"], mask)[0]
    times: dict[str, list[float]] = {k: [] for k in systems}
    for r in systems.values():
        r(feeds)
    for _ in range(args.rounds):
        for k, r in systems.items():
            time.sleep(0.15)
            for _ in range(args.runs):
                t = time.perf_counter()
                r(feeds)
                times[k].append((time.perf_counter() - t) * 1e3)
    base = float(np.median(times["graphopt float@int8"]))
    for k in systems:
        rows[k]["ms"] = round(float(np.median(times[k])), 2)
        rows[k]["vs_float_at_int8"] = round(rows[k]["ms"] / base, 3)
    from graphopt import _C

    report = {"model": "all-MiniLM-L6-v2", "form": args.form, "seq": seq, "batch": 1, "threads": threads,
              "rounds": args.rounds, "runs_per_round": args.runs,
              "machine": {"cpu": _C.cpu_features().get("brand", platform.processor()), "isa": _C.isa_selected()},
              "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.form}.json").write_text(json.dumps(report, indent=1))
    lines = [f"# int8 routes: all-MiniLM-L6-v2 ({args.form}), seq {seq}, batch 1, 1 thread",
             "", f"{report['machine']} -- shared, loaded box: medians of {args.rounds}x{args.runs} interleaved runs.", "",
             "| system | steps | attention kernels | int8 Linears | ms | vs float@int8 | cos to fp32 | cos to ORT on the file |",
             "|---|---|---|---|---|---|---|---|"]
    for k, r in rows.items():
        lines.append(f"| {k} | {r.get('steps', '')} | {r.get('attention_kernels', '')} | {r.get('linear_int8', '')} | "
                     f"{r['ms']:.2f} | {r['vs_float_at_int8']:.2f} | {r['cos_fp32']:.4f} | "
                     f"{r['cos_ort_same_file']:.4f} |" if "cos_ort_same_file" in r else
                     f"| {k} | {r.get('steps', '')} | {r.get('attention_kernels', '')} | {r.get('linear_int8', '')} | "
                     f"{r['ms']:.2f} | {r['vs_float_at_int8']:.2f} | {r['cos_fp32']:.4f} | |")
    (out / f"{args.form}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
