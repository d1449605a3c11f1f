"""Pruning, distillation and QAT on the BBC News MiniLM classifier: accuracy and native latency.

    python benchmarks/train_bbc.py train [--work DIR]            # distil/QAT the students (resumable)
    python benchmarks/train_bbc.py eval  [--work DIR] [--out benchmarks/results/train-bbc]

``train`` builds, with checkpoints under ``--work`` (rerun after an interrupt to resume):

* pruned25-distilled / pruned50-distilled: the heads and FFN neurons graphopt.prune keeps at
  25 / 50 % (same calibration, same indices), cut from the torch teacher by
  ``student_from_pruned`` and distilled from the unpruned teacher,
* student3: a 3-layer student (layers 0, 2, 4; DistilBERT's init) distilled from the 6 layers,
* qat: the dense classifier fine-tuned with int8 fake-quant from the QuantConfig used for PTQ.

Distillation: KL at T=2 + hidden-state MSE over the layer map + CE on the training labels,
on the training split truncated to ``--seq-train`` tokens (cost; evaluation is at 128).
``eval`` measures every model in one run: validation and test accuracy (native int8, and fp32
for the torch-trained ones), native int8 and bf16 latency at batch 1 and 8 (x 128 tokens; models
interleaved, ~150 ms pause before each block, medians), the pruned models exported to ONNX
(onnxruntime) and OpenVINO and checked against the native fp32 outputs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import graphopt  # noqa: E402
from graphopt.models.bbc import NAMES, accuracy, bbc_classifier, bbc_torch, bbc_train_split  # noqa: E402

WORK = Path.home() / ".cache" / "graphopt" / "train-bbc-s128"


def _truncate(d: dict, seq: int) -> dict:
    return {k: (v[:, :seq] if v.ndim == 2 else v) for k, v in d.items()}


def _freeze_embeddings(student) -> None:  # 12M of the 22M parameters; the teacher's are kept
    for p in student.encoder.embeddings.parameters():
        p.requires_grad_(False)


def _pruned_student(task, teacher, ratio: float, example: dict):
    """The torch student of the graph graphopt.prune gives at ``ratio`` (least-squares refit on):
    the same heads/neurons and the refitted next-layer weights, checked against the graph."""
    from graphopt.train import student_from_pruned

    model, rep = graphopt.prune(graphopt.load(task.path), str(task.calib), heads=ratio, ffn=ratio,
                                reconstruct=True, progress=False)
    student = student_from_pruned(teacher, rep, model)
    import torch

    with torch.no_grad():
        got = student(**{k: torch.from_numpy(v) for k, v in example.items()}).numpy()
    ref = graphopt.compile(model, "fp32").run(example)[0]
    return student, float(np.abs(got - ref).max())


def train(args) -> None:
    import logging

    import torch

    from graphopt.train import distill, drop_layers, export_onnx, layer_list, teacher_outputs

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(args.threads)  # the box is shared: other jobs' timings stay usable
    task = bbc_classifier()
    val = task.split("val")

    def val_accuracy(m) -> float:  # torch fp32 on the validation split (test stays unseen)
        return accuracy(lambda f: [m(**{k: torch.from_numpy(v) for k, v in f.items()}).numpy()], val)

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = _truncate(bbc_train_split(task), args.seq_train)
    example = {k: task.split("val")[k][:2] for k in NAMES}
    jobs = [j for j in args.jobs.split(",") if j]
    for job in jobs:
        out = work / f"{job}.onnx"
        if out.exists():
            print(f"{job}: {out} exists, skipped", flush=True)
            continue
        teacher = bbc_torch(task)
        start_diff = None
        if job == "qat":
            from graphopt.train import qat

            # KL to the float classifier (its logits cached with the distillation targets) + CE;
            # the embeddings stay float in the precision map and are not trained
            dense = bbc_torch(task)
            model, res = qat(dense, data, _qat_config(), steps=args.qat_steps, batch=16, lr=args.qat_lr,
                             teacher=dense, teacher_cache=work / f"teacher-s{args.seq_train}",
                             freeze=("encoder.embeddings.",), checkpoint=work / f"{job}.ckpt", every=25,
                             progress=args.progress, evaluate=val_accuracy if args.eval_every else None,
                             eval_every=args.eval_every, patience=args.patience)
            export_onnx(model, out, example)
        else:
            if job.startswith("pruned"):
                student, start_diff = _pruned_student(task, teacher, int(job[6:8]) / 100, example)
                print(f"{job}: torch student from the least-squares graph, max |logit diff| {start_diff:.2e}",
                      flush=True)
            elif job == "student3":
                student = drop_layers(teacher, 3)
            else:
                sys.exit(f"unknown job {job}")
            _freeze_embeddings(student)
            # every teacher layer cached once: the pruned students map all six, the 3-layer one three
            teacher_outputs(teacher, data, NAMES, list(range(len(layer_list(teacher)[1]))),
                            work / f"teacher-s{args.seq_train}")
            torch.manual_seed(0)
            res = distill(teacher, student, data, steps=args.steps, batch=args.batch, lr=args.lr, alpha_ce=1.0,
                          warmup=0.1, checkpoint=work / f"{job}.ckpt", every=25, progress=args.progress,
                          teacher_cache=work / f"teacher-s{args.seq_train}",
                          evaluate=val_accuracy if args.eval_every else None, eval_every=args.eval_every,
                          patience=args.patience)
            export_onnx(student, out, example)
        rec = {"steps": res.steps, "batch": 16 if job == "qat" else args.batch, "resumed_from": res.resumed_from,
               "seconds_this_run": round(res.seconds, 1),
               "s_per_step": round(res.seconds / max(1, res.steps - res.resumed_from), 2),
               "loss_first10": float(np.mean(res.losses[:10])), "loss_last10": float(np.mean(res.losses[-10:])),
               "seq_train": args.seq_train, "lr": args.qat_lr if job == "qat" else args.lr,
               "start": ("least-squares pruned graph" if job.startswith("pruned") else
                         "teacher layers 0, 2, 4" if job == "student3" else "dense classifier"),
               "loss": ("KL(T=2) to the float classifier + CE, embeddings frozen" if job == "qat" else
                        "KL(T=2) + hidden MSE + CE, embeddings frozen"),
               "start_max_logit_diff_vs_graph": start_diff, "threads": args.threads,
               "val_acc_by_step": [list(e) for e in getattr(res, "evals", [])],
               "stopped_early": getattr(res, "stopped_early", False)}
        (work / f"{job}.json").write_text(json.dumps(rec, indent=1))
        print(job, rec, flush=True)


def _qat_config():
    from graphopt.quant import QuantConfig

    # the precision map QAT and PTQ share: linear layers int8 (per-channel s8 weights, u8
    # activations), attention's activation x activation matmuls and the embeddings float
    return QuantConfig(quantize_act_matmul=False, embeddings=False)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("stage", choices=("train", "eval"))
    p.add_argument("--work", default=str(WORK))
    p.add_argument("--out", default="benchmarks/results/train-bbc")
    p.add_argument("--jobs", default="pruned50,student3,pruned25,qat")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--qat-steps", type=int, default=60)
    p.add_argument("--qat-lr", type=float, default=2e-5)
    p.add_argument("--threads", type=int, default=1, help="torch threads for training (the box is shared)")
    p.add_argument("--eval-every", type=int, default=0, help="validation accuracy every N distillation steps")
    p.add_argument("--patience", type=int, default=0, help="stop after N evaluations without a new best")
    p.add_argument("--seq-train", type=int, default=128, help="the evaluation length (128)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--splits", default="test", help="accuracy on these splits (val,test)")
    p.add_argument("--ratios", default="25,50", help="head/FFN percentages pruned without training")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--reuse-accuracy", action="store_true",
                   help="take accuracies of unchanged models from OUT/accuracy.json (only new models are evaluated)")
    p.add_argument("--no-latency", dest="latency", action="store_false", help="accuracy only (no timing, no exports)")
    p.add_argument("--wait-for", default="", help="jobs whose training is still running: wait for their model")
    p.add_argument("--export-filter", default="", help="export-check only the 50 %% models whose name has this")
    p.add_argument("--lock", default=None, help="flock this file while timing (e.g. /work/bench.lock)")
    args = p.parse_args(argv)
    if args.stage == "train":
        train(args)
    else:
        evaluate(args)
    return 0


def _median_ms(run, feeds, n: int) -> float:
    time.sleep(0.15)
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        run(feeds)
        ts.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(ts))


def _plan(sess) -> list[tuple[str, str]]:
    """A session's fused plan without node names: (kernel kind, detail) per step."""
    return [(kind, detail) for kind, _name, detail, _nodes in sess.summary().rows]


def _source(path: Path) -> str:
    """What a model file is (name and modification time): reused accuracy must be of the same file."""
    return f"{Path(path).name}@{int(Path(path).stat().st_mtime)}"


@contextlib.contextmanager
def _bench_lock(path: str | None):
    """Hold ``path`` (flock) while timing: timing runs of other jobs on the box do not overlap."""
    if not path:
        yield
        return
    import fcntl

    with open(path, "a") as f:
        t0 = time.perf_counter()
        fcntl.flock(f, fcntl.LOCK_EX)
        print(f"bench lock {path} taken after {time.perf_counter() - t0:.0f} s", flush=True)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def evaluate(args) -> None:
    import onnxruntime as ort

    task = bbc_classifier()
    work, out = Path(args.work), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    splits = {s: task.split(s) for s in args.splits.split(",")}
    test = task.split("test")

    def acc(run) -> dict:
        return {s: accuracy(run, d) for s, d in splits.items()}

    calib = str(task.calib)
    models: dict[str, object] = {"dense": graphopt.load(task.path)}
    sources = {"dense": _source(task.path)}

    waits = {j for j in args.wait_for.split(",") if j}

    def trained(name: str, job: str) -> None:
        if (work / f"{job}.onnx").exists() or job in waits:
            models[name] = work / f"{job}.onnx"  # loaded in turn below (--wait-for: when its run ends)

    for r in (int(x) for x in args.ratios.split(",")):
        for refit, tag in ((False, "pruned, no training"), (True, "pruned + least squares")):
            m, _ = graphopt.prune(graphopt.load(task.path), calib, heads=r / 100, ffn=r / 100, reconstruct=refit,
                                  progress=False)
            models[f"{r}% heads+FFN, {tag}"] = m
            sources[f"{r}% heads+FFN, {tag}"] = f"{_source(task.path)} pruned {r} % refit={refit}"
        trained(f"{r}% heads+FFN, least squares + distilled", f"pruned{r}")
    trained("3-layer student, distilled", "student3")
    rows: dict[str, dict] = {}
    sessions: dict[tuple[str, str], object] = {}
    old = json.loads((out / "accuracy.json").read_text()) if args.reuse_accuracy and (out / "accuracy.json").exists() \
        else {"models": {}, "qat_vs_ptq": {}}
    waited = {f"{r}% heads+FFN, least squares + distilled" for r in (25, 50) if f"pruned{r}" in waits}
    waited |= {"3-layer student, distilled"} if "student3" in waits else set()
    for name in sorted(models, key=lambda n: n in waited):  # the models still training last
        if isinstance(models[name], Path):
            path = models[name]
            while not path.with_suffix(".json").exists():  # written after the export
                time.sleep(10)
            models[name] = graphopt.load(path)
            sources[name] = _source(path)
        m = models[name]
        src = sources[name]
        fp32 = graphopt.compile(m, "fp32")
        q = graphopt.quantize(m, calib, progress=False)  # the transformer preset: graphopt's default PTQ
        sessions[(name, "int8")] = graphopt.compile(q)
        sessions[(name, "bf16")] = graphopt.compile(m, "bf16")
        prev = old["models"].get(name)
        if prev is not None and prev.get("source") == src and prev.get("splits") == list(splits):
            rows[name] = prev  # --reuse-accuracy: the same model (file and mtime), the same splits
        else:
            rows[name] = {"params": int(sum(v.const.size for v in m.graph.all_values() if v.const is not None
                                            and np.asarray(v.const).dtype.kind == "f")),
                          "acc_fp32": acc(fp32.run), "acc_int8": acc(sessions[(name, "int8")].run),
                          "acc_bf16": acc(sessions[(name, "bf16")].run),
                          "plan_int8": str(sessions[(name, "int8")].summary()).split("\n")[0],
                          "source": src, "splits": list(splits)}
        if name == "dense":
            sessions[(name, "fp32")] = fp32
        print(name, rows[name], flush=True)
    rows = {n: rows[n] for n in models}  # the table's order
    sessions = dict(sorted(sessions.items(), key=lambda kv: list(models).index(kv[0][0])))
    while "qat" in waits and not (work / "qat.json").exists():  # --wait-for qat: its training still runs
        time.sleep(10)
    # QAT vs PTQ at the same precision map (linear layers int8; attention matmuls and embeddings float)
    qat_plan: dict = {}
    qat_rows: dict[str, dict] = {"fp32 (native)": rows["dense"]["acc_fp32"], "bf16 (native)": rows["dense"]["acc_bf16"]}
    cfg = _qat_config()
    ptq = graphopt.compile(graphopt.quantize(models["dense"], calib, config=cfg, progress=False))
    qat_src = _source(work / "qat.onnx") if (work / "qat.onnx").exists() else None
    reuse = old["qat_vs_ptq"] if old.get("qat_source") == qat_src and old.get("dense_source") == sources["dense"] \
        and "PTQ int8 (same map)" in old["qat_vs_ptq"] else {}
    qat_rows["PTQ int8 (same map)"] = reuse.get("PTQ int8 (same map)") or acc(ptq.run)
    sessions[("PTQ (same map)", "int8")] = ptq
    if qat_src is not None:
        qm = graphopt.load(work / "qat.onnx")
        qs = graphopt.compile(qm)
        qat_rows["QAT int8, native"] = reuse.get("QAT int8, native") or {**acc(qs.run), "precision": qs.precision}
        osess = ort.InferenceSession(str(work / "qat.onnx"), providers=["CPUExecutionProvider"])
        qat_rows["QAT int8, onnxruntime (QDQ file)"] = reuse.get("QAT int8, onnxruntime (QDQ file)") or \
            acc(lambda f: osess.run(None, f))
        sessions[("QAT (same map)", "int8")] = qs
        plan = {"ptq": _plan(ptq), "qat": _plan(qs)}
        plan["same"] = plan["ptq"] == plan["qat"]
        if not plan["same"]:
            plan["first_difference"] = next(([a, b] for a, b in zip(plan["ptq"], plan["qat"]) if a != b),
                                            f"{len(plan['ptq'])} vs {len(plan['qat'])} steps")
        qat_plan = {"same_fused_plan_as_ptq": plan["same"], "steps": len(plan["qat"]),
                    "int8_gemms": sum("int8 static" in d for _, d in plan["qat"]),
                    "attention_on_packed_qkv": sum("packed QKV" in d for _, d in plan["qat"]),
                    **({"first_difference": plan["first_difference"]} if not plan["same"] else {})}
        print("QAT plan vs PTQ:", qat_plan, flush=True)
    partial = {"models": rows, "qat_vs_ptq": qat_rows, "qat_source": qat_src, "dense_source": sources["dense"]}
    (out / "accuracy.json").write_text(json.dumps(partial, indent=1))  # survives a failure of the timing
    if not args.latency:
        print(json.dumps(partial, indent=1))
        return
    # latency: every (model, precision, batch) block interleaved, rounds; under the bench lock
    lat: dict[str, list[float]] = {}
    f1 = {k: test[k][:1] for k in NAMES}
    f8 = {k: test[k][:8] for k in NAMES}
    with _bench_lock(args.lock):
        for _ in range(args.rounds):
            for (name, prec), sess in sessions.items():
                for b, feeds in ((1, f1), (8, f8)):
                    sess.run(feeds)
                    lat.setdefault(f"{name}|{prec}|{b}", []).append(_median_ms(sess.run, feeds, 5 if b == 1 else 3))
    latency = {k: float(np.median(v)) for k, v in lat.items()}
    # exports of the pruned models: onnxruntime and OpenVINO run them and match native fp32
    exports = {}
    for name in [n for n in models if n.startswith("50%") and args.export_filter in n]:
        try:
            exports[name] = _export_check(models[name], name, f8)
        except Exception as e:  # noqa: BLE001 - reported in the results, not fatal to the run
            exports[name] = {"error": repr(e)[:300]}
    trained = {j: json.loads((work / f"{j}.json").read_text()) for j in ("pruned25", "pruned50", "student3", "qat")
               if (work / f"{j}.json").exists()}
    machine = {"cpu": _cpu(), "cores": os.cpu_count(), "threads": "graphopt default", "python": platform.python_version(),
               "note": "shared 2-core box, other jobs running: latency ratios, not absolute figures"}
    res = {"machine": machine, "fp32_teacher": task.accuracy_fp32, "models": rows, "qat_vs_ptq": qat_rows,
           "qat_plan": qat_plan,
           "latency_ms": latency, "latency_rounds": args.rounds, "exports": exports, "training": trained}
    (out / "results.json").write_text(json.dumps(res, indent=1))  # before the table: the numbers survive
    (out / "table.md").write_text(_table(res))
    _plot(res, out / "accuracy-latency.png")
    print(_table(res))


def _plot(res: dict, path: Path) -> None:
    """Test accuracy vs native latency (int8 and bf16; batch 1 and 8), one point per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lat = res["latency_ms"]
    split = next(iter(next(iter(res["models"].values()))["acc_int8"]))
    fig, axes = plt.subplots(1, 2, figsize=(12, 5), constrained_layout=True)
    colors = plt.get_cmap("tab10")
    for ax, b in zip(axes, (1, 8)):
        for i, (name, r) in enumerate(res["models"].items()):
            for prec, marker in (("int8", "o"), ("bf16", "s")):
                x = lat.get(f"{name}|{prec}|{b}")
                if x is None:
                    continue
                ax.scatter(x, 100 * r[f"acc_{prec}"][split], color=colors(i % 10), marker=marker, s=50,
                           label=name if prec == "int8" else None)
        ax.set_xlabel(f"native latency, batch {b} x 128 tokens (ms, median)")
        ax.set_ylabel(f"{split} accuracy (%)")
        ax.set_title(f"BBC News MiniLM, batch {b} (o int8, s bf16)")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="lower right")
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _export_check(m, name: str, f8: dict) -> dict:
    import onnxruntime as ort

    ref = graphopt.compile(m, "fp32").run(f8)[0]
    stem = name.split(",")[1].strip().replace(" ", "-").replace("+", "")
    with __import__("tempfile").TemporaryDirectory() as tmp:
        po = graphopt.export(m, Path(tmp) / f"{stem}.onnx", target="onnx")
        o = ort.InferenceSession(str(po), providers=["CPUExecutionProvider"]).run(None, f8)[0]
        rec = {"onnxruntime_max_abs_diff": float(np.abs(o - ref).max())}
        try:
            import openvino as ov

            px = graphopt.export(m, Path(tmp) / f"{stem}.xml", target="openvino")
            c = ov.Core().compile_model(str(px), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
            v = c(f8)[c.outputs[0]]
            rec["openvino_max_abs_diff"] = float(np.abs(v - ref).max())
        except Exception as e:  # noqa: BLE001 - reported, not fatal
            rec["openvino_error"] = repr(e)[:200]
    rec["argmax_agree"] = bool((o.argmax(-1) == ref.argmax(-1)).all())
    return rec


def _cpu() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def _table(res: dict) -> str:
    lat = res["latency_ms"]
    base1, base8 = lat.get("dense|int8|1"), lat.get("dense|int8|8")
    dense = res["models"]["dense"]
    sp = "/".join(dense["acc_fp32"])

    def a(d: dict) -> str:
        return " / ".join(f"{x:.4f}" for x in d.values())

    def ms(key: str) -> str:
        return f"{lat[key]:.1f}" if key in lat else "-"

    def speed(name: str, prec: str) -> str:  # dense int8 time / this time, batch 1 / 8
        x1, x8 = lat.get(f"{name}|{prec}|1"), lat.get(f"{name}|{prec}|8")
        return f"{base1 / x1:.2f}x / {base8 / x8:.2f}x" if x1 and x8 and base1 and base8 else "-"

    lines = [f"| model | params | acc fp32 {sp} | acc bf16 {sp} | acc int8 {sp} | int8 drop (points) | int8 ms b1 | "
             "int8 ms b8 | bf16 ms b1 | bf16 ms b8 | int8 vs dense int8 (b1 / b8) | bf16 vs dense int8 (b1 / b8) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in res["models"].items():
        drop = 100 * (next(iter(dense["acc_int8"].values())) - next(iter(r["acc_int8"].values())))
        lines.append(f"| {name} | {r['params'] / 1e6:.1f} M | {a(r['acc_fp32'])} | {a(r.get('acc_bf16', {}))} | "
                     f"{a(r['acc_int8'])} | {drop:+.1f} | {ms(f'{name}|int8|1')} | {ms(f'{name}|int8|8')} | "
                     f"{ms(f'{name}|bf16|1')} | {ms(f'{name}|bf16|8')} | {speed(name, 'int8')} | "
                     f"{speed(name, 'bf16')} |")
    lines += ["", f"| QAT vs PTQ (linear layers int8; attention matmuls, embeddings float) | accuracy {sp} | "
              "ms b1 | ms b8 |", "|---|---|---|---|"]
    keys = {"fp32 (native)": "dense|fp32", "bf16 (native)": "dense|bf16", "PTQ int8 (same map)": "PTQ (same map)|int8",
            "QAT int8, native": "QAT (same map)|int8"}
    for name, r in res["qat_vs_ptq"].items():
        k = keys.get(name)
        lines.append(f"| {name} | {' / '.join(f'{v:.4f}' for kk, v in r.items() if kk != 'precision')} | "
                     f"{ms(f'{k}|1') if k else '-'} | {ms(f'{k}|8') if k else '-'} |")
    if res.get("qat_plan"):
        lines += ["", f"QAT export's native plan vs PTQ's (same map): {res['qat_plan']}"]
    lines += ["", "| exported (50 %) | onnxruntime max abs diff | OpenVINO max abs diff | argmax agree |", "|---|---|---|---|"]
    for name, r in res["exports"].items():
        if "error" in r:
            lines.append(f"| {name} | error: {r['error']} | | |")
            continue
        lines.append(f"| {name} | {r['onnxruntime_max_abs_diff']:.2e} | "
                     f"{r.get('openvino_max_abs_diff', float('nan')):.2e} | {r['argmax_agree']} |")
    lines += ["", f"Teacher fp32 (onnxruntime, cache record): {res['fp32_teacher']}. Latency: medians of "
              f"{res.get('latency_rounds', '?')} interleaved rounds (5 runs at b1, 3 at b8 each), 150 ms pause "
              f"before each block. Machine: {res['machine']}.", "", "Training runs:", ""]
    for job, r in res["training"].items():
        lines.append(f"- {job}: " + ", ".join(f"{k} {v}" for k, v in r.items()))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
