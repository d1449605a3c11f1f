"""Model benchmark: graphopt's native runtime against onnxruntime, OpenVINO and PyTorch.

For each (batch, threads) configuration every system is built once, checked
for fidelity against the fp32 reference (onnxruntime on the original model:
cosine of the attention-mask mean-pooled embeddings, and max abs error), then
timed in interleaved rounds: each round visits every system, pausing ~150 ms
before each system's block so the previous system's spinning thread pool
has gone quiet, then making one untimed call (the pause lets the system's own
threads sleep and its caches go cold: that first call measured 1.5-4 ms slower at
2 threads on DistilBERT batch 8, and with 2 timed runs a block it moved the median).
Medians over all timed runs are reported: steady-state latency.

Systems (those whose package is missing are skipped with a note):

- ``graphopt-fp32|bf16|int8``: :func:`graphopt.compile` (O2, then native kernels; int8 quantizes
  activations dynamically, one scale per row);
- ``graphopt-int8s``: static int8: O2, then :func:`graphopt.quant.api.quantize` (QDQ, the transformer
  preset with SmoothQuant 0.8, calibrated on 32 of the shipped calibration sentences), then compile
  (calibrated activation scales, no run-time range pass);
- ``ort-fp32``: onnxruntime, ORT_ENABLE_ALL;
- ``ort-fp32-opt``: onnxruntime after its transformers optimizer (fused Attention etc.);
- ``ort-int8`` / ``ort-int8-pc``: ``quantize_dynamic`` (per tensor / per channel) of the optimized model;
- ``ov-fp32`` / ``ov-bf16``: OpenVINO CPU with INFERENCE_PRECISION_HINT f32 (explicit: it defaults to
  bf16 on AVX512-BF16 CPUs) / bf16;
- ``ov-int8``: OpenVINO after NNCF post-training quantization (``nncf.quantize`` with
  ``model_type=TRANSFORMER``, calibrated on the same 32 shipped sentences as ``graphopt-int8s``),
  the plugin's default precision for what stays float (the fastest int8 peer; ``pip install 'graphopt[peers]'``);
- ``torch-fp32`` / ``torch-int8``: PyTorch eager, and ``quantize_dynamic`` on its Linear layers.

>>> report = run_model_bench(BenchConfig(model="minilm", batches=(1,), threads=(2,)))   # doctest: +SKIP
"""

from __future__ import annotations

import gc
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["BenchConfig", "SystemResult", "BenchReport", "run_model_bench", "evaluate_targets", "plot", "SYSTEMS"]

logger = logging.getLogger(__name__)

SYSTEMS = ("graphopt-fp32", "graphopt-bf16", "graphopt-int8", "graphopt-int8s", "ort-fp32", "ort-fp32-opt", "ort-int8", "ort-int8-pc",
           "ov-fp32", "ov-bf16", "ov-int8", "torch-fp32", "torch-int8")
CALIB_SENTENCES = 32  # graphopt-int8s and ov-int8 calibrate on the same shipped sentences, 8 per batch


@dataclass
class BenchConfig:
    """What to run. ``threads`` None means (1, all cores)."""

    model: str = "minilm"  # minilm | distilbert | a path to an ONNX encoder
    export_form: str = "eager-torchscript"  # for minilm/distilbert: {eager,sdpa}-{torchscript,dynamo}
    batches: tuple[int, ...] = (1, 8)
    seq: int = 128
    threads: tuple[int, ...] | None = None
    rounds: int = 5
    per_round: int = 3
    pause_s: float = 0.15
    systems: tuple[str, ...] = SYSTEMS
    memory: bool = False  # measure each system's memory alone in a child process (graphopt.bench.memory)

    @classmethod
    def quick(cls, model: str = "minilm", export_form: str = "eager-torchscript") -> BenchConfig:
        return cls(model=model, export_form=export_form, batches=(1,), rounds=3, per_round=2)


@dataclass
class SystemResult:
    system: str
    batch: int
    threads: int
    median_ms: float | None = None
    runs: int = 0
    # Median process CPU time per run (all threads). At 1 thread it is the call's own work and
    # barely moves when other processes share the cores, unlike wall time; at 2+ threads it
    # also counts pool spinning, so only the 1-thread figure is comparable across systems.
    cpu_ms: float | None = None
    cosine: float | None = None  # mean over the batch of the pooled-embedding cosine to fp32
    min_cosine: float | None = None
    max_abs_err: float | None = None
    rss_mb: float | None = None  # resident-set growth of this system alone after build + one run (--memory)
    peak_mb: float | None = None  # peak resident-set growth while building and running it (--memory)
    size_mb: float | None = None  # weights: the file for peers, packed weights + constants for graphopt
    note: str = ""


@dataclass
class BenchReport:
    model: str
    seq: int
    machine: dict[str, Any]
    results: list[SystemResult] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    graphopt_summary: str = ""
    export_form: str = "eager-torchscript"

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "export_form": self.export_form, "seq": self.seq, "machine": self.machine, "skipped": self.skipped,
                "results": [asdict(r) for r in self.results], "targets": evaluate_targets(self)}


# ---------------------------------------------------------------- models and inputs

def _spec(model: str, export_form: str = "eager-torchscript"):
    from ..models import ModelSpec, distilbert_onnx, minilm_onnx

    attn, _, exporter = export_form.partition("-")
    if model == "minilm":
        return minilm_onnx(attn=attn, exporter=exporter)
    if model == "distilbert":
        return distilbert_onnx(attn=attn, exporter=exporter)
    p = Path(model)
    if not p.exists():
        from ..errors import GraphoptError

        raise GraphoptError(f"model '{model}' is neither 'minilm', 'distilbert' nor an ONNX file")
    import onnx

    names = tuple(i.name for i in onnx.load(str(p), load_external_data=False).graph.input)
    return ModelSpec(p, names, p.stem)


def _feeds(spec, batch: int, seq: int) -> dict[str, np.ndarray]:
    from ..data import sentences
    from ..models import sample_feeds

    sents = sentences("eval")[:batch]
    try:
        f = sample_feeds(spec, sents, batch=batch, seq=seq)
    except Exception:  # noqa: BLE001 - no tokenizer for a user model: random ids
        f = sample_feeds(spec, None, batch=batch, seq=seq)
    return {k: v for k, v in f.items() if k in spec.input_names}


def _feeds_for(spec, sents: list[str], seq: int) -> dict[str, np.ndarray]:
    from ..models import sample_feeds

    f = sample_feeds(spec, sents, batch=len(sents), seq=seq)
    return {k: v for k, v in f.items() if k in spec.input_names}


# ---------------------------------------------------------------- systems

Runner = Callable[[dict[str, np.ndarray]], np.ndarray]


class _Builder:
    """Builds one system's runner for a thread count; shared artifacts are made once."""

    def __init__(self, spec, workdir: Path) -> None:
        self.spec = spec
        self.workdir = workdir
        self._opt: Path | None = None
        self._int8: dict[bool, Path] = {}
        self.graphopt_summary = ""

    def _ort_session(self, path: Path, threads: int) -> Runner:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        return lambda f: sess.run(None, f)[0]

    def optimized(self) -> Path:
        if self._opt is None:
            from onnxruntime.transformers.optimizer import optimize_model

            out = self.workdir / "ort_opt.onnx"
            heads, hidden = self.heads_hidden()
            m = optimize_model(str(self.spec.path), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=1)
            m.save_model_to_file(str(out))
            self._opt = out
        return self._opt

    def heads_hidden(self) -> tuple[int, int]:
        """(num_heads, hidden) for ORT's optimizer, which cannot detect them on these exports:
        read from the MultiHeadAttention our O2 pipeline fuses (0, 0 = let ORT try)."""
        try:
            from ..runtime.compile import prepare

            m = prepare(self.spec)
            for n in m.graph:
                if n.op_type == "MultiHeadAttention" and n.domain == "graphopt":
                    w = n.inputs[1].const
                    return int(n.attr("num_heads")), int(w.shape[0])
        except Exception as e:  # noqa: BLE001
            logger.info("could not read num_heads/hidden (%s)", e)
        return 0, 0

    def int8(self, per_channel: bool) -> Path:
        if per_channel not in self._int8:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            out = self.workdir / f"ort_int8{'_pc' if per_channel else ''}.onnx"
            try:
                # The strongest ORT int8 path: quantize the transformers-optimized graph (fused
                # Attention, SkipLayerNorm, ...). Its intermediate types must be inferred first.
                import onnx

                opt = onnx.shape_inference.infer_shapes(onnx.load(str(self.optimized())))
                src = self.workdir / "ort_opt_typed.onnx"
                onnx.save(opt, str(src))
                quantize_dynamic(str(src), str(out), weight_type=QuantType.QInt8, per_channel=per_channel)
            except Exception as e:  # noqa: BLE001 - fall back to quantizing the original graph
                logger.info("quantize_dynamic on the optimized graph failed (%s); using the original", e)
                quantize_dynamic(str(self.spec.path), str(out), weight_type=QuantType.QInt8, per_channel=per_channel)
            self._int8[per_channel] = out
        return self._int8[per_channel]

    def torch_model(self):
        import torch
        import transformers

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        if self.spec.name == "all-MiniLM-L6-v2":
            from ..models import minilm_path

            return transformers.AutoModel.from_pretrained(str(minilm_path())).eval()
        if self.spec.name == "distilbert":
            torch.manual_seed(0)  # the same construction as graphopt.models.distilbert_onnx()
            cfg = transformers.DistilBertConfig()
            cfg._attn_implementation = "eager"
            m = transformers.DistilBertModel(cfg).eval()
            m.config._attn_implementation = "sdpa"
            return m
        raise RuntimeError("no PyTorch module for a user-supplied ONNX file")

    def static_int8(self):
        """The O2 graph statically quantized (QDQ) with graphopt.quant on shipped calibration sentences."""
        if getattr(self, "_static", None) is None:
            from ..quant.api import quantize
            from ..quant.config import QuantConfig
            from ..runtime.compile import prepare

            m = prepare(self.spec, "O2")
            # quantize's default preset (SmoothQuant 0.8: MiniLM's batch-8 cosine 0.9930 -> 0.9965); its
            # 1/s Muls fold into the GEMMs (runtime.lower.fold_channel_mul), so it costs no step.
            quantize(m, QuantConfig.transformer(quantize_act_matmul=False, embeddings=False), self.calibration(),
                     progress=False)
            self._static = m
        return self._static

    def calibration(self) -> list[dict[str, np.ndarray]]:
        """The calibration batches graphopt's static int8 and NNCF both use."""
        from ..data import sentences

        cal = sentences("calib")[:CALIB_SENTENCES]
        return [_feeds_for(self.spec, cal[i:i + 8], 128) for i in range(0, len(cal), 8)]

    def nncf_int8(self):
        """The model read by OpenVINO and quantized by NNCF PTQ (transformer model type)."""
        if getattr(self, "_nncf", None) is None:
            import nncf
            import openvino as ov

            ds = nncf.Dataset(self.calibration())
            self._nncf = nncf.quantize(ov.Core().read_model(str(self.spec.path)), ds,
                                       model_type=nncf.ModelType.TRANSFORMER, subset_size=CALIB_SENTENCES)
        return self._nncf

    def build(self, system: str, threads: int) -> tuple[Runner, float | None, str]:
        """(runner, size in MB or None, note)."""
        spec = self.spec
        if system == "graphopt-int8s":
            import graphopt

            sess = graphopt.compile(self.static_int8(), precision="int8", num_threads=threads, level="O0")
            s = sess.summary()
            return (lambda f: sess.run(f)[0]), (s.packed_bytes + s.const_bytes) / 1e6, \
                f"static QDQ, fallbacks={len(s.fallbacks)}"
        if system.startswith("graphopt-"):
            import graphopt

            sess = graphopt.compile(spec, precision=system.split("-")[1], num_threads=threads)
            s = sess.summary()
            if system == "graphopt-int8" and not self.graphopt_summary:
                self.graphopt_summary = str(s)
            note = f"fallbacks={len(s.fallbacks)}"
            return (lambda f: sess.run(f)[0]), (s.packed_bytes + s.const_bytes) / 1e6, note
        if system == "ort-fp32":
            return self._ort_session(spec.path, threads), Path(spec.path).stat().st_size / 1e6, "ORT_ENABLE_ALL"
        if system == "ort-fp32-opt":
            p = self.optimized()
            return self._ort_session(p, threads), p.stat().st_size / 1e6, "transformers optimizer"
        if system in ("ort-int8", "ort-int8-pc"):
            p = self.int8(system.endswith("pc"))
            return self._ort_session(p, threads), p.stat().st_size / 1e6, \
                "quantize_dynamic " + ("per-channel" if system.endswith("pc") else "per-tensor")
        if system == "ov-int8":
            import openvino as ov

            cm = ov.Core().compile_model(self.nncf_int8(), "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                                    "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1})
            req = cm.create_infer_request()
            out = cm.outputs[0]
            return (lambda f: req.infer(f)[out]), None, \
                f"NNCF PTQ (transformer), float ops at {_type_name(cm.get_property('INFERENCE_PRECISION_HINT'))}"
        if system in ("ov-fp32", "ov-bf16"):
            import openvino as ov

            core = ov.Core()
            cfg = {"INFERENCE_PRECISION_HINT": {"fp32": "f32", "bf16": "bf16"}[system.split("-")[1]],
                   "INFERENCE_NUM_THREADS": threads,
                   "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
            cm = core.compile_model(str(spec.path), "CPU", cfg)
            req = cm.create_infer_request()
            out = cm.outputs[0]
            return (lambda f: req.infer(f)[out]), None, f"INFERENCE_PRECISION_HINT={cfg['INFERENCE_PRECISION_HINT']}"
        if system in ("torch-fp32", "torch-int8"):
            import torch

            torch.set_num_threads(threads)
            m = self.torch_model()
            if system == "torch-int8":
                m = torch.ao.quantization.quantize_dynamic(m, {torch.nn.Linear}, dtype=torch.qint8)

            def run(f: dict[str, np.ndarray]) -> np.ndarray:
                with torch.inference_mode():
                    return m(**{k: torch.from_numpy(v) for k, v in f.items()}).last_hidden_state.numpy()
            return run, None, "eager" + (" + quantize_dynamic(Linear)" if system == "torch-int8" else "")
        raise ValueError(f"unknown system {system}")


def _type_name(t: Any) -> str:
    return t.get_type_name() if hasattr(t, "get_type_name") else str(t)


def _pooled(h: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    if mask is None:
        return h.mean(1)
    m = mask[..., None].astype(np.float32)
    return (h * m).sum(1) / np.maximum(m.sum(1), 1.0)


def _fidelity(out: np.ndarray, ref: np.ndarray, mask: np.ndarray | None) -> tuple[float, float, float]:
    a, b = _pooled(out.astype(np.float32), mask), _pooled(ref, mask)
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)
    return float(cos.mean()), float(cos.min()), float(np.abs(out - ref).max())


def _machine(threads: tuple[int, ...]) -> dict[str, Any]:
    import platform

    from .. import _C

    info: dict[str, Any] = {"cpu": _C.cpu_features().get("brand", platform.processor()), "logical_cpus": os.cpu_count(),
                            "isa_selected": _C.isa_selected(), "threads": list(threads)}
    for mod in ("onnxruntime", "openvino", "torch", "numpy"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            info[mod] = None
    if hasattr(os, "getloadavg"):  # how shared the cores were: 1-minute load average at the start
        info["loadavg_start"] = round(os.getloadavg()[0], 2)
    return info


# ---------------------------------------------------------------- driver

def run_model_bench(cfg: BenchConfig, progress: Callable[[str], None] | None = None) -> BenchReport:
    """Run the benchmark described by ``cfg`` (see the module docstring)."""
    say = progress or (lambda s: None)
    spec = _spec(cfg.model, cfg.export_form)
    threads = cfg.threads or tuple(sorted({1, os.cpu_count() or 1}))
    form = cfg.export_form if cfg.model in ("minilm", "distilbert") else "as given"
    report = BenchReport(spec.name, cfg.seq, _machine(threads), export_form=form)
    with tempfile.TemporaryDirectory(prefix="graphopt-bench-") as tmp:
        builder = _Builder(spec, Path(tmp))
        for batch in cfg.batches:
            feeds = _feeds(spec, batch, cfg.seq)
            mask = feeds.get("attention_mask")
            ref = builder._ort_session(spec.path, max(threads))(feeds)
            for th in threads:
                say(f"batch {batch}, {th} thread(s): building")
                runners: dict[str, Runner] = {}
                results: dict[str, SystemResult] = {}
                for name in cfg.systems:
                    r = SystemResult(name, batch, th)
                    try:
                        fn, size, note = builder.build(name, th)
                        out = fn(feeds)
                        r.cosine, r.min_cosine, r.max_abs_err = _fidelity(np.asarray(out), ref, mask)
                        r.size_mb, r.note = size, note
                        runners[name] = fn
                    except Exception as e:  # noqa: BLE001 - a missing peer must not stop the benchmark
                        msg = f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
                        report.skipped.setdefault(name, msg)
                        logger.info("skipping %s: %s", name, msg)
                        continue
                    results[name] = r
                times: dict[str, list[float]] = {n: [] for n in runners}
                cpu: dict[str, list[float]] = {n: [] for n in runners}
                for fn in runners.values():  # warm-up
                    fn(feeds)
                for rnd in range(cfg.rounds):
                    say(f"batch {batch}, {th} thread(s): round {rnd + 1}/{cfg.rounds}")
                    for name, fn in runners.items():
                        time.sleep(cfg.pause_s)
                        fn(feeds)  # untimed: wakes the system's threads after the pause
                        for _ in range(cfg.per_round):
                            c0, t0 = time.process_time(), time.perf_counter()
                            fn(feeds)
                            times[name].append((time.perf_counter() - t0) * 1e3)
                            cpu[name].append((time.process_time() - c0) * 1e3)
                for name, r in results.items():
                    r.median_ms = float(np.median(times[name]))
                    r.cpu_ms = float(np.median(cpu[name]))
                    r.runs = len(times[name])
                    report.results.append(r)
                runners.clear()
                gc.collect()
            if cfg.memory:
                _measure_memory(cfg, builder, [r for r in report.results if r.batch == batch], batch, max(threads), say)
        report.graphopt_summary = builder.graphopt_summary
    if hasattr(os, "getloadavg"):
        report.machine["loadavg_end"] = round(os.getloadavg()[0], 2)
    return report


def _measure_memory(cfg: BenchConfig, builder: _Builder, rows: list[SystemResult], batch: int, threads: int,
                    say: Callable[[str], None]) -> None:
    """Fill rss_mb / peak_mb of ``rows``: each system measured alone in a child process."""
    from .memory import measure

    for name in dict.fromkeys(r.system for r in rows):
        say(f"batch {batch}: memory of {name} (alone, in a child process)")
        artifact = None
        if name == "ort-fp32-opt":
            artifact = builder.optimized()
        elif name in ("ort-int8", "ort-int8-pc"):
            artifact = builder.int8(name.endswith("pc"))
        elif name == "graphopt-int8s":
            import graphopt

            artifact = builder.workdir / "graphopt-int8s.onnx"
            if not artifact.exists():
                graphopt.save(builder.static_int8(), artifact)
        model = cfg.model if cfg.export_form == "eager-torchscript" else str(builder.spec.path)  # other forms: the file
        m = measure(name, model, batch=batch, seq=cfg.seq, threads=threads, artifact=artifact)
        if m.error:
            logger.info("memory of %s not measured: %s", name, m.error)
        for r in rows:
            if r.system == name:
                r.rss_mb, r.peak_mb = m.resident_mb, m.peak_mb


def _get(report: BenchReport, system: str, batch: int, threads: int) -> SystemResult | None:
    for r in report.results:
        if r.system == system and r.batch == batch and r.threads == threads and r.median_ms is not None:
            return r
    return None


def evaluate_targets(report: BenchReport) -> list[dict[str, Any]]:
    """Targets per (batch, threads): issue 6 (graphopt int8 <= 0.8x fastest ORT int8 with cosine >= 0.99,
    bf16 <= 0.7x ORT fp32, fp32 <= 1.0x the faster of ORT fp32 / ORT transformers-optimized) and issue 12
    (int8 <= 0.8x OpenVINO+NNCF int8 with cosine >= its, bf16 <= 0.85x OpenVINO bf16, fp32 <= 0.9x the
    best fp32 peer). ``ratio`` compares wall-time medians; at 1 thread ``cpu_ratio`` compares the
    CPU-time medians too (the steadier figure when other processes share the cores)."""
    out = []
    keys = sorted({(r.batch, r.threads) for r in report.results})
    for b, t in keys:
        def get(s: str) -> SystemResult | None:
            return _get(report, s, b, t)

        def fastest(names: tuple[str, ...]) -> SystemResult | None:
            rs = [r for r in (get(n) for n in names) if r is not None]
            return min(rs, key=lambda r: r.median_ms or float("inf")) if rs else None

        rows: list[tuple[str, SystemResult, SystemResult, float, bool, str]] = []
        ort_int8 = fastest(("ort-int8", "ort-int8-pc"))
        ort_fp32 = fastest(("ort-fp32", "ort-fp32-opt"))
        fp32_peer = fastest(("ort-fp32", "ort-fp32-opt", "ov-fp32", "torch-fp32"))
        g16, g32, ov8 = get("graphopt-bf16"), get("graphopt-fp32"), get("ov-int8")
        for sysname, label in (("graphopt-int8", "int8 (dynamic)"), ("graphopt-int8s", "int8 (static)")):
            g8 = get(sysname)
            if g8 and ort_int8:
                rows.append((f"{label} vs fastest ORT int8", g8, ort_int8, 0.8, (g8.cosine or 0) >= 0.99,
                             f"cosine {g8.cosine:.4f}"))
        for sysname, label in (("graphopt-int8", "int8 (dynamic)"), ("graphopt-int8s", "int8 (static)")):
            g8 = get(sysname)
            if g8 and ov8:  # issue 12: <= 0.8x OpenVINO+NNCF, cosine >= OpenVINO's
                rows.append((f"{label} vs OpenVINO+NNCF int8", g8, ov8, 0.8, (g8.cosine or 0) >= (ov8.cosine or 0),
                             f"cosine {g8.cosine:.4f} vs {ov8.cosine:.4f}"))
        ovb, ortf = get("ov-bf16"), get("ort-fp32")
        if g16 and ovb:
            rows.append(("bf16 vs OpenVINO bf16", g16, ovb, 0.85, True, ""))
        if g16 and ortf:
            rows.append(("bf16 vs ORT fp32", g16, ortf, 0.7, True, ""))
        if g32 and ort_fp32:
            rows.append(("fp32 vs ORT fp32 (optimized)", g32, ort_fp32, 1.0, True, ""))
        if g32 and fp32_peer:  # issue 12
            rows.append((f"fp32 vs best fp32 peer ({fp32_peer.system})", g32, fp32_peer, 0.9, True, ""))
        for name, ours, peer, bound, ok, extra in rows:
            if not ours.median_ms or not peer.median_ms:
                continue
            ratio = ours.median_ms / peer.median_ms
            cpu_ratio = (ours.cpu_ms / peer.cpu_ms) if t == 1 and ours.cpu_ms and peer.cpu_ms else None
            out.append({"batch": b, "threads": t, "target": name, "ratio": round(ratio, 3), "bound": bound,
                        "met": bool(ratio <= bound and ok),
                        "cpu_ratio": None if cpu_ratio is None else round(cpu_ratio, 3), "note": extra})
    return out


def plot(report: BenchReport, path: str | os.PathLike) -> None:
    """Bar chart of median latency per system, one panel per (batch, threads)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({(r.batch, r.threads) for r in report.results})
    if not keys:
        return
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 4.5), squeeze=False)
    for ax, (b, t) in zip(axes[0], keys):
        rs = [r for r in report.results if r.batch == b and r.threads == t and r.median_ms]
        names = [r.system for r in rs]
        vals = [r.median_ms for r in rs]
        colors = ["#1f77b4" if n.startswith("graphopt") else "#ff7f0e" if n.startswith("ort") else
                  "#2ca02c" if n.startswith("ov") else "#7f7f7f" for n in names]
        ax.barh(names, vals, color=colors)
        ax.invert_yaxis()
        ax.set_title(f"{report.model}: batch {b}, seq {report.seq}, {t} thread(s)")
        ax.set_xlabel("median latency (ms), lower is better")
        for i, v in enumerate(vals):
            ax.text(v, i, f" {v:.1f}", va="center", fontsize=8)
    fig.tight_layout()
    from ..io.atomic import atomic_output

    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
