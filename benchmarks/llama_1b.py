"""A ~1.1B-parameter LLaMA-config decoder (random weights, never downloaded) through
load -> O2 -> weight-only int4 (RTN) -> save -> compile -> one forward pass, with the
outputs checked against onnxruntime on the saved int4 file, and the int4 forward pass
beside onnxruntime (MatMulNBits, the same file) and OpenVINO (NNCF compress_weights int4)
in one interleaved run; cosine of every system's logits to the fp32 model's (onnxruntime
fp32) on the same input ids.

    python benchmarks/llama_1b.py --lock /work/bench.lock     # TinyLlama shape, 4.4 GB fp32
    python benchmarks/llama_1b.py --tiny                      # the same architecture at test size

Stages: the fp32 reference and NNCF's compression run in child processes first (their
memory is their own; not timed against anything, so outside the lock); then, holding
``--lock`` (if given), graphopt's steps one by one (wall time, peak resident growth with
VmHWM reset before each step), then the interleaved latency rounds (a ~150 ms pause
before each system's run; medians). OpenVINO runs twice: with its CPU defaults (on a CPU
with AVX512-BF16 that means bf16 activations) and with ``INFERENCE_PRECISION_HINT=f32``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from graphopt.bench.scale import _status, peak_rss_mb, reset_peak
from graphopt.bench.scale_models import LLAMA_1B, LLAMA_TINY, llama_decoder, llama_params

SEQ = 16
NNCF_ARGS = dict(mode="INT4_SYM", group_size=32, ratio=1.0)  # NNCF's defaults otherwise (int8 backup for
# the embedding and the LM head, as NNCF recommends; all_layers=False)


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _step(name: str, fn, log: list[dict], model_bytes: int):
    base = _status("VmRSS")
    reset_peak()
    t0 = time.perf_counter()
    out = fn()
    r = {"step": name, "seconds": time.perf_counter() - t0, "peak_mb": peak_rss_mb() - base,
         "rss_mb": _status("VmRSS")}
    r["x_model"] = r["peak_mb"] * 2**20 / model_bytes
    log.append(r)
    _log(json.dumps(r))
    return out


_CHILD = r"""
import sys, time, json, numpy as np
kind, src, ids_json, out = sys.argv[1:5]
ids = np.array(json.loads(ids_json), np.int64)
t0 = time.perf_counter()
if kind == "fp32":
    import onnxruntime as ort
    s = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    np.save(out, s.run(None, {"input_ids": ids})[0])
else:
    import nncf, openvino as ov
    args = json.loads(sys.argv[5])
    m = nncf.compress_weights(ov.Core().read_model(src), mode=getattr(nncf.CompressWeightsMode, args.pop("mode")), **args)
    ov.save_model(m, out, compress_to_fp16=False)
hwm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")][0] / 1024
print(json.dumps({"seconds": time.perf_counter() - t0, "peak_mb": hwm}))
"""


def _child(kind: str, src: Path, ids: np.ndarray, out: Path, *extra: str) -> dict:
    p = subprocess.run([sys.executable, "-c", _CHILD, kind, str(src), json.dumps(ids.tolist()), str(out), *extra],
                       capture_output=True, text=True)
    if p.returncode:
        return {"error": (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1][:300]}
    return json.loads(p.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def _locked(path: str | None):
    if not path:
        yield
        return
    with open(path, "a") as fh:
        _log(f"waiting for {path}")
        fcntl.flock(fh, fcntl.LOCK_EX)
        _log("lock held")
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def cosine(a: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(mean, min) over token rows of the cosine similarity of logits."""
    a = a.reshape(-1, a.shape[-1]).astype(np.float64)
    b = ref.reshape(-1, ref.shape[-1]).astype(np.float64)
    c = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(c.mean()), float(c.min())


def _interleaved(systems: dict, feeds_ids: np.ndarray, rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {k: [] for k in systems}
    for r in range(rounds):
        for name, run in systems.items():
            time.sleep(0.15)
            t = time.perf_counter()
            run(feeds_ids)
            times[name].append(1e3 * (time.perf_counter() - t))
        _log(f"round {r + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.0f} ms" for k, v in times.items()))
    return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--work", default="/tmp/graphopt-llama")
    ap.add_argument("--out", default="benchmarks/results/scale")
    ap.add_argument("--lock", default=None, help="flock this file around the timed stages (e.g. /work/bench.lock)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved latency rounds")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse the fp32 reference and NNCF's model from an earlier run in --work")
    ap.add_argument("--no-nncf", action="store_true", help="skip OpenVINO/NNCF (its compression takes minutes)")
    a = ap.parse_args(argv)
    import graphopt
    from graphopt.pm.manager import PassManager
    from graphopt.quant.api import quantize
    from graphopt.quant.config import QuantConfig

    cfg = LLAMA_TINY if a.tiny else LLAMA_1B
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    tag = "llama_tiny" if a.tiny else "llama_1b"
    src, dst = work / f"{tag}.onnx", work / f"{tag}_int4.onnx"
    if not src.exists():
        _log(f"building {src}")
        llama_decoder(src, cfg, seq=SEQ)
    nbytes = src.stat().st_size + (src.parent / (src.name + ".data")).stat().st_size
    _log(f"{llama_params(cfg) / 1e9:.2f}B parameters, {nbytes / 1e9:.2f} GB fp32")
    ids = np.random.default_rng(0).integers(0, cfg["vocab_size"], (1, SEQ)).astype(np.int64)

    # untimed preparation in child processes: the fp32 reference logits and NNCF's int4 model
    prep_file = work / f"{tag}_prepared.json"  # --reuse: the children's figures of an earlier run
    prep = json.loads(prep_file.read_text()) if a.reuse and prep_file.exists() else {}
    ref_npy, ov_xml = work / f"{tag}_ref_fp32.npy", work / f"{tag}_nncf_int4.xml"
    if "fp32" not in prep or not ref_npy.exists():
        _log("fp32 reference (onnxruntime, child process)")
        prep["fp32"] = _child("fp32", src, ids, ref_npy)
        _log(json.dumps(prep["fp32"]))
    ref_r, ref = prep["fp32"], np.load(ref_npy)
    nncf_r: dict = {"skipped": True}
    if not a.no_nncf:
        if "nncf" not in prep or not ov_xml.exists():
            _log(f"NNCF compress_weights {NNCF_ARGS} (child process)")
            prep["nncf"] = _child("nncf", src, ids, ov_xml, json.dumps(NNCF_ARGS))
            _log(json.dumps(prep["nncf"]))
        nncf_r = prep["nncf"]
    prep_file.write_text(json.dumps(prep))

    log: list[dict] = []
    with _locked(a.lock):
        m = _step("load", lambda: graphopt.load(src), log, nbytes)
        _step("O2", lambda: PassManager.from_text("O2")(m), log, nbytes)
        _step("weight-only int4 (RTN)", lambda: quantize(m, QuantConfig(mode="weight-only", weight_bits=4, group_size=32),
                                                          progress=False), log, nbytes)
        _step("save", lambda: graphopt.save(m, dst, external_data=True), log, nbytes)
        m = None  # the fp32/int4 IR leaves memory before compile
        sess = _step("compile (int4 file)", lambda: graphopt.compile(str(dst)), log, nbytes)
        out = _step("forward pass", lambda: sess.run({"input_ids": ids})[0], log, nbytes)

    import onnxruntime as ort

    outs = {"graphopt-int4": out}
    systems = {"graphopt-int4": lambda x: sess.run({"input_ids": x})[0]}
    setup: dict[str, float] = {}
    # The same file with accuracy_level=1 on every MatMulNBits: graphopt's fp32-activation int4 paths
    # (what the int8 activations cost in accuracy and buy in time).
    from graphopt.ir import Attr

    m32 = graphopt.load(dst)
    for n in m32.graph:
        if n.op_type == "MatMulNBits":
            n.attrs["accuracy_level"] = Attr.infer("accuracy_level", 1)
    sess32 = graphopt.compile(m32)
    m32 = None
    systems["graphopt-int4-fp32act"] = lambda x: sess32.run({"input_ids": x})[0]
    t0 = time.perf_counter()
    so = ort.SessionOptions()
    so.log_severity_level = 3
    ort_sess = ort.InferenceSession(str(dst), so, providers=["CPUExecutionProvider"])
    setup["ort-matmulnbits"] = time.perf_counter() - t0
    systems["ort-matmulnbits"] = lambda x: ort_sess.run(None, {"input_ids": x})[0]
    if not a.no_nncf and "error" not in nncf_r:
        import openvino as ov

        core = ov.Core()
        for name, conf in (("openvino-int4", {}), ("openvino-int4-f32", {"INFERENCE_PRECISION_HINT": "f32"})):
            t0 = time.perf_counter()
            c = core.compile_model(core.read_model(str(ov_xml)), "CPU", conf)
            setup[name] = time.perf_counter() - t0
            systems[name] = (lambda c: lambda x: c({"input_ids": x})[0])(c)
    for name, run in systems.items():  # warm-up, and the outputs compared
        outs[name] = np.asarray(run(ids))
    _log("latency rounds")
    with _locked(a.lock):
        times = _interleaved(systems, ids, a.rounds)
    sess = sess32 = ort_sess = None

    diff = float(np.abs(outs["graphopt-int4"] - outs["ort-matmulnbits"]).max())
    # graphopt's int4 kernel quantizes activations to int8 (per row) where onnxruntime computes in
    # fp32 on the same weights: the check is the logits' cosine, not bitwise closeness.
    cos_go_ort = cosine(outs["graphopt-int4"], outs["ort-matmulnbits"])
    scale = float(np.abs(outs["ort-matmulnbits"]).max())
    med = {k: float(np.median(v)) for k, v in times.items()}
    systems_json = {k: {"median_ms": med[k], "times_ms": times[k], "setup_s": setup.get(k),
                        "ratio_to_graphopt": med[k] / med["graphopt-int4"],
                        "cosine_to_fp32": cosine(outs[k], ref)[0], "min_cosine_to_fp32": cosine(outs[k], ref)[1]}
                    for k in systems}
    import onnxruntime

    machine = {"cpu": platform.processor() or platform.machine(), "cores": __import__("os").cpu_count(),
               "onnxruntime": onnxruntime.__version__}
    with contextlib.suppress(ImportError):
        import openvino

        machine["openvino"] = openvino.__version__
    summary = {"params": llama_params(cfg), "fp32_bytes": nbytes, "seq": SEQ, "machine": machine, "steps": log,
               "fp32_reference": ref_r, "nncf_compress": {**nncf_r, "args": NNCF_ARGS}, "systems": systems_json,
               "rounds": a.rounds, "max_abs_diff_graphopt_vs_ort": diff, "max_abs_logit": scale,
               "cosine_graphopt_vs_ort": {"mean": cos_go_ort[0], "min": cos_go_ort[1]}}
    print(json.dumps(summary, indent=1))
    out_dir = Path(a.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{tag}.json").write_text(json.dumps(summary, indent=1))
    for k, v in systems_json.items():
        _log(f"{k:<22} {v['median_ms']:8.1f} ms  x{v['ratio_to_graphopt']:.2f}  cosine to fp32 "
             f"{v['cosine_to_fp32']:.4f} (min {v['min_cosine_to_fp32']:.4f})")
    ok = cos_go_ort[1] >= 0.99
    _log(f"logits' cosine to onnxruntime on the int4 file: mean {cos_go_ort[0]:.4f}, min {cos_go_ort[1]:.4f} "
         + ("(match)" if ok else "OUTPUT MISMATCH"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
