"""``graphopt bench-ort``: graphopt O2 vs onnxruntime's transformer optimizer, side by side in onnxruntime.

For all-MiniLM-L6-v2 (real weights) and DistilBERT-base (random weights), three
ONNX files are timed in onnxruntime (ORT_ENABLE_ALL, CPU) at batch 1 and 8,
sequence 128, on the shipped English sentences:

* ``original``  — the torch export as is,
* ``ort-opt``   — ``onnxruntime.transformers.optimizer.optimize_model(model_type="bert")``,
* ``graphopt``  — graphopt's O2 pipeline, lowered to onnxruntime ops, exported.

Timing is interleaved: in each round every system runs a block of ``--block``
inferences after a ~150 ms pause (thread pools of the previous system stop
spinning); the reported figure is the median over all rounds.

    python benchmarks/ort_optimizer.py --out out/bench-ort          # table + results.json
    graphopt bench-ort --quick                                       # the same through the CLI
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

logger = logging.getLogger("graphopt.bench.ort_optimizer")

SYSTEMS = ("original", "ort-opt", "graphopt")
PAUSE_S = 0.15


@dataclass
class BenchConfig:
    models: tuple[str, ...] = ("minilm", "distilbert")
    batches: tuple[int, ...] = (1, 8)
    seq: int = 128
    rounds: int = 12
    block: int = 5
    warmup: int = 3
    threads: int = 0  # 0: onnxruntime's default (all cores)
    out: str = "out/bench-ort"
    final_graphs: bool = False  # also record the op histogram of onnxruntime's own optimized graph

    @classmethod
    def quick(cls) -> BenchConfig:
        return cls(rounds=4, block=3, warmup=1)


@dataclass
class ModelReport:
    name: str
    nodes: dict[str, int] = field(default_factory=dict)
    ops: dict[str, dict[str, int]] = field(default_factory=dict)
    ort_final_ops: dict[str, dict[str, int]] = field(default_factory=dict)  # after ORT_ENABLE_ALL
    o2_seconds: float = 0.0
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    median_ms: dict[str, dict[str, float]] = field(default_factory=dict)  # "b1" -> system -> ms
    samples: dict[str, int] = field(default_factory=dict)
    # 95% bootstrap interval of median(graphopt) / median(ort-opt): how much of a ratio is noise
    ratio_ci: dict[str, tuple[float, float]] = field(default_factory=dict)


def _specs() -> dict[str, Callable[[], Any]]:
    from graphopt.models import distilbert_onnx, minilm_onnx

    return {"minilm": minilm_onnx, "distilbert": distilbert_onnx}


def _onnx_ops(path: Path) -> dict[str, int]:
    import onnx

    mp = onnx.load(str(path), load_external_data=False)
    return dict(Counter(n.op_type for n in mp.graph.node).most_common())


def build_variants(spec: Any, workdir: Path, progress: Callable[[str], None]) -> tuple[dict[str, Path], float]:
    """Write the ort-opt and graphopt files next to the original; returns paths and O2 seconds."""
    import graphopt
    from graphopt.errors import GraphoptError
    from graphopt.ops import lower_to_onnxruntime
    from graphopt.pm import PassManager

    workdir.mkdir(parents=True, exist_ok=True)
    paths = {"original": Path(spec.path)}

    progress(f"{spec.name}: graphopt O2")
    m = graphopt.load(spec.path)
    t = time.perf_counter()
    PassManager.from_text("O2")(m)
    o2_s = time.perf_counter() - t
    mha = [n for n in m.graph if n.op_type == "MultiHeadAttention"]
    if not mha:
        raise GraphoptError(f"{spec.name}: O2 fused no attention; cannot derive num_heads for onnxruntime's optimizer")
    num_heads = int(mha[0].attr("num_heads"))
    hidden = int(mha[0].inputs[1].shape[1]) // 3
    lower_to_onnxruntime(m)
    paths["graphopt"] = graphopt.save(m, workdir / f"{spec.name}.graphopt.onnx")
    progress(f"{spec.name}: onnxruntime optimizer (bert, num_heads={num_heads}, hidden={hidden})")
    from onnxruntime.transformers.optimizer import optimize_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt = optimize_model(str(spec.path), model_type="bert", num_heads=num_heads, hidden_size=hidden)
    paths["ort-opt"] = workdir / f"{spec.name}.ort-opt.onnx"
    opt.save_model_to_file(str(paths["ort-opt"]))
    return paths, o2_s


def _session(path: Path, threads: int, final_graph: Path | None = None) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    if final_graph is not None:
        so.optimized_model_filepath = str(final_graph)
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _feeds(spec: Any, batch: int, seq: int) -> dict[str, np.ndarray]:
    from graphopt.data import sentences
    from graphopt.models import sample_feeds

    return sample_feeds(spec, sentences("eval", limit=batch), seq=seq)


def time_interleaved(sessions: dict[str, Any], feeds: dict[str, np.ndarray], cfg: BenchConfig) -> dict[str, list[float]]:
    """Per-system run times (ms): rounds x block, systems interleaved, pause before each block."""
    times: dict[str, list[float]] = {s: [] for s in sessions}
    for s, sess in sessions.items():
        for _ in range(cfg.warmup):
            sess.run(None, feeds)
    for r in range(cfg.rounds):
        order = list(sessions) if r % 2 == 0 else list(reversed(sessions))  # no fixed first/last position
        for s in order:
            sess = sessions[s]
            time.sleep(PAUSE_S)
            for _ in range(cfg.block):
                t = time.perf_counter()
                sess.run(None, feeds)
                times[s].append((time.perf_counter() - t) * 1e3)
    return times


def _ratio_ci(a: list[float], b: list[float], n: int = 2000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    aa, bb = np.asarray(a), np.asarray(b)
    ra = np.median(rng.choice(aa, (n, aa.size)), axis=1)
    rb = np.median(rng.choice(bb, (n, bb.size)), axis=1)
    lo, hi = np.percentile(ra / rb, [2.5, 97.5])
    return float(lo), float(hi)


def bench_model(name: str, cfg: BenchConfig, progress: Callable[[str], None]) -> ModelReport:
    spec = _specs()[name]()
    paths, o2_s = build_variants(spec, Path(cfg.out), progress)
    rep = ModelReport(spec.name, o2_seconds=o2_s)
    for s, p in paths.items():
        rep.ops[s] = _onnx_ops(p)
        rep.nodes[s] = sum(rep.ops[s].values())
    final = {s: Path(cfg.out) / f"{spec.name}.{s}.ort-final.onnx" for s in SYSTEMS} if cfg.final_graphs else {}
    sessions = {s: _session(paths[s], cfg.threads, final.get(s)) for s in SYSTEMS}
    for s, p in final.items():
        rep.ort_final_ops[s] = _onnx_ops(p)
    for b in cfg.batches:
        feeds = _feeds(spec, b, cfg.seq)
        ref = sessions["original"].run(None, feeds)[0]
        for s in ("ort-opt", "graphopt"):
            out = sessions[s].run(None, feeds)[0]
            rep.max_abs_diff[f"{s}/b{b}"] = float(np.abs(out - ref).max())
        progress(f"{spec.name}: timing batch {b}")
        times = time_interleaved(sessions, feeds, cfg)
        rep.median_ms[f"b{b}"] = {s: statistics.median(v) for s, v in times.items()}
        rep.samples[f"b{b}"] = len(times["original"])
        rep.ratio_ci[f"b{b}"] = _ratio_ci(times["graphopt"], times["ort-opt"])
    return rep


def table(reports: list[ModelReport]) -> str:
    lines = [f"{'model':<18} {'batch':>5} {'original':>10} {'ort-opt':>10} {'graphopt':>10} "
             f"{'graphopt/ort-opt':>17} {'(95% CI)':>16} {'graphopt/original':>18}",
             "-" * 111]
    for r in reports:
        for b, med in r.median_ms.items():
            lo, hi = r.ratio_ci.get(b, (float("nan"), float("nan")))
            lines.append(f"{r.name:<18} {b[1:]:>5} {med['original']:>8.2f}ms {med['ort-opt']:>8.2f}ms "
                         f"{med['graphopt']:>8.2f}ms {med['graphopt'] / med['ort-opt']:>16.3f}x "
                         f"{f'[{lo:.3f}, {hi:.3f}]':>16} {med['graphopt'] / med['original']:>17.3f}x")
    lines.append("")
    lines.append("nodes (original -> ort-opt | graphopt), O2 time, max |diff| vs original:")
    for r in reports:
        diffs = ", ".join(f"{k}={v:.1e}" for k, v in r.max_abs_diff.items())
        lines.append(f"  {r.name}: {r.nodes['original']} -> {r.nodes['ort-opt']} | {r.nodes['graphopt']}; "
                     f"O2 {r.o2_seconds:.2f}s; {diffs}")
        lines.append(f"    graphopt ops: {r.ops['graphopt']}")
        lines.append(f"    ort-opt ops:  {r.ops['ort-opt']}")
        for s, ops in r.ort_final_ops.items():
            lines.append(f"    after onnxruntime's ORT_ENABLE_ALL, {s}: {ops}")
    return "\n".join(lines)


def run(cfg: BenchConfig, progress: Callable[[str], None] = lambda s: None) -> list[ModelReport]:
    reports = [bench_model(m, cfg, progress) for m in cfg.models]
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    from ..io.atomic import write_text

    write_text(out / "results.json", json.dumps({"config": asdict(cfg), "models": [asdict(r) for r in reports]},
                                                 indent=2))
    return reports


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", "--out", dest="out", default="out/bench-ort", help="directory for the ONNX variants and results.json")
    p.add_argument("--models", nargs="+", choices=("minilm", "distilbert"), help="default: both")
    p.add_argument("--batches", type=int, nargs="+", help="default: 1 8")
    p.add_argument("--seq", type=int, default=128, help="sequence length")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 12; --quick 4)")
    p.add_argument("--block", type=int, help="inferences per system per round (default 5; --quick 3)")
    p.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: default)")
    p.add_argument("--quick", action="store_true", help="fewer rounds")
    p.add_argument("--final-graphs", action="store_true",
                   help="also save and count onnxruntime's own optimized graph of each system")


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    cfg = BenchConfig.quick() if args.quick else BenchConfig()
    cfg.out = args.out
    cfg.seq = args.seq
    cfg.threads = args.threads
    cfg.final_graphs = args.final_graphs
    if args.models:
        cfg.models = tuple(args.models)
    if args.batches:
        cfg.batches = tuple(args.batches)
    if args.rounds:
        cfg.rounds = args.rounds
    if args.block:
        cfg.block = args.block
    return cfg


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``benchmarks/ort_optimizer.py``."""
    p = argparse.ArgumentParser(description="graphopt O2 vs onnxruntime's transformer optimizer")
    add_arguments(p)
    return main_from_args(p.parse_args(argv))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench-ort", help="time graphopt O2 ONNX vs onnxruntime's transformer optimizer "
                                         "(MiniLM, DistilBERT; batch 1/8, seq 128)")
    add_arguments(p)
    p.set_defaults(func=lambda args: main_from_args(args))


def main_from_args(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    reports = run(cfg, progress=lambda s: print(f"  .. {s}", flush=True))
    print(table(reports))
    print(f"\nwrote {Path(cfg.out) / 'results.json'}")
    return 0
