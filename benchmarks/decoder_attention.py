"""LLaMA-style decoder (hidden 1024, 4 layers, 16 query / 4 KV heads, rotary, RMSNorm, SiLU MLP;
random weights) exported the default way (sdpa + dynamo), seq 128, batch 1: graphopt int8 / bf16 /
fp32 against OpenVINO (NNCF PTQ int8, bf16, fp32 with INFERENCE_PRECISION_HINT=f32) and onnxruntime
fp32, in one interleaved run (rounds x systems, 150 ms pause before each system's block; medians).

    python benchmarks/decoder_attention.py [--threads 1] [--rounds 5] [--per-round 3]

Writes benchmarks/results/decoder-attention.md (and .json beside it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

HIDDEN, LAYERS, HEADS, KV_HEADS, FF, VOCAB, SEQ = 1024, 4, 16, 4, 2816, 1000, 128


def export(path: Path) -> None:
    import torch
    import transformers

    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=FF,
                                   num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                                   num_key_value_heads=KV_HEADS, max_position_embeddings=2 * SEQ, use_cache=False)
    cfg._attn_implementation = "sdpa"
    model = transformers.LlamaModel(cfg).eval()

    class Wrap(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.m = model

        def forward(self, input_ids, attention_mask):
            return self.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    ids = torch.randint(0, VOCAB, (1, SEQ))
    mask = torch.ones(1, SEQ, dtype=torch.int64)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq", max=2 * SEQ)
    with torch.no_grad():
        torch.onnx.export(Wrap(), (ids, mask), str(path), dynamo=True, input_names=["input_ids", "attention_mask"],
                          output_names=["last_hidden_state"],
                          dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}})


def feeds(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"input_ids": rng.integers(0, VOCAB, (1, SEQ)).astype(np.int64),
            "attention_mask": np.ones((1, SEQ), np.int64)}


def build(system: str, path: Path, threads: int):
    if system.startswith("graphopt-"):
        import graphopt

        sess = graphopt.compile(str(path), precision=system.split("-")[1], num_threads=threads)
        note = f"{len(sess.summary().fallbacks)} fallbacks"
        return (lambda f: np.asarray(sess.run(f)[0])), note
    if system == "ort-fp32":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = threads, 1, 3
        s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        return (lambda f: s.run(None, f)[0]), "ORT_ENABLE_ALL"
    import openvino as ov

    core = ov.Core()
    base = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
    if system == "ov-int8":
        import nncf

        calib = [feeds(100 + i) for i in range(16)]
        model = nncf.quantize(core.read_model(str(path)), nncf.Dataset(calib), model_type=nncf.ModelType.TRANSFORMER,
                              subset_size=len(calib))
        cm = core.compile_model(model, "CPU", base)
        note = "NNCF PTQ (transformer, 16 random-token samples)"
    else:
        hint = {"ov-fp32": "f32", "ov-bf16": "bf16"}[system]
        cm = core.compile_model(str(path), "CPU", {**base, "INFERENCE_PRECISION_HINT": hint})
        note = f"INFERENCE_PRECISION_HINT={hint}"
    req, out = cm.create_infer_request(), cm.outputs[0]
    return (lambda f: np.asarray(req.infer(f)[out]).copy()), note


def cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--per-round", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "decoder-attention.md"))
    a = ap.parse_args()
    systems = ["graphopt-int8", "ov-int8", "graphopt-bf16", "ov-bf16", "graphopt-fp32", "ov-fp32", "ort-fp32"]
    work = Path(tempfile.mkdtemp(prefix="decoder-attn-"))
    path = work / "llama-sdpa-dynamo.onnx"
    t0 = time.perf_counter()
    export(path)
    print(f"exported in {time.perf_counter() - t0:.0f} s: {path}", flush=True)
    f = feeds(0)
    runners, notes, outs = {}, {}, {}
    for s in systems:
        runners[s], notes[s] = build(s, path, a.threads)
        outs[s] = runners[s](f)  # warm-up + output
        print(f"built {s}: {notes[s]}", flush=True)
    import graphopt
    from graphopt.pm import PassManager

    m = graphopt.load(path)
    PassManager.from_text("O2")(m)
    fused = m.graph.op_counts().get("graphopt::Attention", 0)
    times: dict[str, list[float]] = {s: [] for s in systems}
    for r in range(a.rounds):
        for s in systems:
            time.sleep(0.15)
            for _ in range(a.per_round):
                t = time.perf_counter()
                runners[s](f)
                times[s].append((time.perf_counter() - t) * 1e3)
        print(f"round {r + 1}/{a.rounds}", flush=True)
    ref = outs["ort-fp32"]
    med = {s: float(np.median(v)) for s, v in times.items()}
    rows = [{"system": s, "median_ms": med[s], "cos_to_ort_fp32": cos(outs[s], ref), "note": notes[s]} for s in systems]
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "threads": a.threads}
    try:
        from graphopt import _C
        machine["isa"] = _C.isa_available()
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                machine["cpu"] = line.split(":", 1)[1].strip()
                break
    except Exception:  # noqa: BLE001
        pass
    ratio = {p: med[f"graphopt-{p}"] / med[f"ov-{p}"] for p in ("int8", "bf16", "fp32")}
    ratio["fp32 vs best fp32 peer"] = med["graphopt-fp32"] / min(med["ov-fp32"], med["ort-fp32"])
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    md = [f"# Decoder attention: LLaMA-style, hidden {HIDDEN}, {LAYERS} layers, {HEADS} q / {KV_HEADS} KV heads, "
          f"seq {SEQ}, batch 1", "",
          "sdpa + dynamo export (random weights), `python benchmarks/decoder_attention.py "
          f"--threads {a.threads} --rounds {a.rounds} --per-round {a.per_round}`; all systems interleaved in one "
          "run, 150 ms pause before each system's block; medians.", "",
          f"Machine: {machine} (shared with other jobs: noisy). graphopt O2 fused {fused}/{LAYERS} attention blocks "
          "(`graphopt::Attention`, grouped KV heads; the causal + padding mask stays the additive bias).", "",
          "| system | median ms | cosine to onnxruntime fp32 | note |", "|---|---|---|---|"]
    md += [f"| {r['system']} | {r['median_ms']:.2f} | {r['cos_to_ort_fp32']:.5f} | {r['note']} |" for r in rows]
    md += ["", "Ratios (graphopt / peer): " + ", ".join(f"{k} {v:.2f}×" for k, v in ratio.items()), ""]
    out.write_text("\n".join(md))
    out.with_suffix(".json").write_text(json.dumps({"machine": machine, "rows": rows, "ratios": ratio,
                                                     "samples_ms": times}, indent=1))
    print("\n".join(md))


if __name__ == "__main__":
    main()
