"""A ~1.1B-parameter LLaMA-config decoder (random weights, never downloaded) through
load -> O2 -> weight-only int4 (RTN) -> save -> compile -> one forward pass, with the
outputs checked against onnxruntime on the saved int4 file, and the int4 forward-pass
latency beside onnxruntime (MatMulNBits) and OpenVINO (NNCF compress_weights int4).

    python benchmarks/llama_1b.py                       # TinyLlama shape, 4.4 GB fp32
    python benchmarks/llama_1b.py --tiny                # the same architecture at test size

Each step reports wall time and peak resident growth (VmHWM reset before the step).
The peers run in child processes (graphopt.bench.scale helpers), so their memory is their own.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from graphopt.bench.scale import _status, peak_rss_mb, reset_peak
from graphopt.bench.scale_models import LLAMA_1B, LLAMA_TINY, llama_decoder, llama_params

SEQ = 16


def _step(name: str, fn, log: list[dict], model_bytes: int):
    base = _status("VmRSS")
    reset_peak()
    t0 = time.perf_counter()
    out = fn()
    r = {"step": name, "seconds": time.perf_counter() - t0, "peak_mb": peak_rss_mb() - base,
         "rss_mb": _status("VmRSS")}
    r["x_model"] = r["peak_mb"] * 2**20 / model_bytes
    log.append(r)
    print(json.dumps(r), flush=True)
    return out


_PEER = r"""
import sys, time, json, numpy as np
path, kind, ids = sys.argv[1], sys.argv[2], np.array(json.loads(sys.argv[3]), np.int64)
t0 = time.perf_counter()
if kind == "ort":
    import onnxruntime as ort
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"]); run = lambda: s.run(None, {"input_ids": ids})[0]
else:
    import nncf, openvino as ov
    core = ov.Core(); m = core.read_model(path)
    m = nncf.compress_weights(m, mode=nncf.CompressWeightsMode.INT4_SYM, group_size=32, ratio=1.0)
    c = core.compile_model(m, "CPU"); run = lambda: c({"input_ids": ids})[0]
setup = time.perf_counter() - t0
out = run(); ts = []
for _ in range(5):
    t = time.perf_counter(); run(); ts.append(time.perf_counter() - t)
np.save(sys.argv[4], out)
hwm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")][0] / 1024
print(json.dumps({"setup_s": setup, "latency_ms": 1e3 * float(np.median(ts)), "peak_mb": hwm}))
"""


def _peer(path: Path, kind: str, ids: np.ndarray, out: Path) -> dict:
    p = subprocess.run([sys.executable, "-c", _PEER, str(path), kind, json.dumps(ids.tolist()), str(out)],
                       capture_output=True, text=True)
    if p.returncode:
        return {"error": p.stderr.strip().splitlines()[-1][:300]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--work", default="/tmp/graphopt-llama")
    ap.add_argument("--out", default="benchmarks/results/scale")
    ap.add_argument("--no-nncf", action="store_true", help="skip OpenVINO/NNCF (its compression takes minutes)")
    a = ap.parse_args(argv)
    import graphopt
    from graphopt.pm.manager import PassManager
    from graphopt.quant.api import quantize
    from graphopt.quant.config import QuantConfig

    cfg = LLAMA_TINY if a.tiny else LLAMA_1B
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    src, dst = work / ("llama_tiny.onnx" if a.tiny else "llama_1b.onnx"), work / "llama_int4.onnx"
    log: list[dict] = []
    if not src.exists():
        _step("build (random weights)", lambda: llama_decoder(src, cfg, seq=SEQ), log, 1)
    nbytes = src.stat().st_size + (src.parent / (src.name + ".data")).stat().st_size
    print(f"{llama_params(cfg) / 1e9:.2f}B parameters, {nbytes / 1e9:.2f} GB fp32", flush=True)
    log = []
    m = _step("load", lambda: graphopt.load(src), log, nbytes)
    _step("O2", lambda: PassManager.from_text("O2")(m), log, nbytes)
    _step("weight-only int4 (RTN)", lambda: quantize(m, QuantConfig(mode="weight-only", weight_bits=4, group_size=32),
                                                      progress=False), log, nbytes)
    _step("save", lambda: graphopt.save(m, dst, external_data=True), log, nbytes)
    m = None  # the fp32/int4 IR leaves memory before compile
    sess = _step("compile (int4 file)", lambda: graphopt.compile(str(dst)), log, nbytes)
    ids = np.random.default_rng(0).integers(0, cfg["vocab_size"], (1, SEQ)).astype(np.int64)
    out = _step("forward pass", lambda: sess.run({"input_ids": ids})[0], log, nbytes)
    ts = []
    for _ in range(5):
        t = time.perf_counter()
        sess.run({"input_ids": ids})
        ts.append(time.perf_counter() - t)
    gopt_ms = 1e3 * float(np.median(ts))
    sess = None
    ort_r = _peer(dst, "ort", ids, work / "ort.npy")
    ov_r = {"skipped": True} if a.no_nncf else _peer(src, "nncf", ids, work / "ov.npy")
    ref = np.load(work / "ort.npy") if "error" not in ort_r else None
    diff = float(np.abs(out - ref).max()) if ref is not None else float("nan")
    scale = float(np.abs(ref).max()) if ref is not None else float("nan")
    summary = {"params": llama_params(cfg), "fp32_bytes": nbytes, "steps": log,
               "graphopt_forward_ms": gopt_ms, "ort_matmulnbits": ort_r, "openvino_nncf_int4": ov_r,
               "max_abs_diff_vs_ort": diff, "max_abs_logit": scale}
    print(json.dumps(summary, indent=1))
    out_dir = Path(a.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / ("llama_tiny.json" if a.tiny else "llama_1b.json")).write_text(json.dumps(summary, indent=1))
    ok = ref is not None and diff <= 1e-3 * max(scale, 1.0)
    print("outputs match onnxruntime on the int4 file" if ok else "OUTPUT MISMATCH", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
