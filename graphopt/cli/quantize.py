"""``graphopt quantize MODEL -o OUT``: post-training quantization (static, dynamic, weight-only).

Static mode calibrates on ``--calib`` (a folder of .npz batches or one .npz
file; for a transformer with ``input_ids`` the default is the shipped
calibration sentences), prints a per-layer quantization-error table, and with
``--report DIR`` writes a PNG plot and a JSON summary.

    graphopt quantize model.onnx -o model.int8.onnx --calib batches/ --smoothquant 0.8
    graphopt quantize -o minilm.int8.onnx          # the bundled all-MiniLM-L6-v2, shipped sentences
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GraphoptError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quantize", help="post-training quantization: static (calibrated), dynamic, weight-only")
    p.add_argument("model", nargs="?", help="an .onnx file (default: the bundled all-MiniLM-L6-v2)")
    p.add_argument("-o", "--out", required=True, help="output .onnx path")
    p.add_argument("--mode", choices=("static", "dynamic", "weight-only"), default="static")
    p.add_argument("--calib", help="calibration data: folder of .npz batches or an .npz file "
                                   "(default for transformers: the shipped calibration sentences)")
    p.add_argument("--calib-count", type=int, default=100, help="shipped sentences to calibrate on (<= 100)")
    p.add_argument("--config", help="QuantConfig as YAML or JSON (default: transformer preset)")
    p.add_argument("--preset", choices=("transformer", "cnn"), default="transformer")
    p.add_argument("--observer", choices=("minmax", "percentile", "entropy", "mse"),
                   help="activation range method")
    p.add_argument("--smoothquant", type=float, metavar="ALPHA", help="SmoothQuant alpha (negative: off)")
    p.add_argument("--format", choices=("qdq", "qoperator"), default="qdq", dest="fmt")
    p.add_argument("--bits", type=int, choices=(4, 8), default=8, help="weight-only bits")
    p.add_argument("--group-size", type=int, default=32, help="weight-only int4 group size")
    p.add_argument("--save-calib", help="write the calibration result to this JSON file")
    p.add_argument("--load-calib", help="reuse a calibration JSON (skips the range calibration)")
    p.add_argument("--report", help="folder for layer_errors.png and report.json")
    p.add_argument("--recipe", help="a recipe.json from graphopt tune: per-node int8/bf16/fp32 and its knobs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _config(args: argparse.Namespace):
    from ..quant import QuantConfig

    cfg = QuantConfig.load(args.config) if args.config else \
        (QuantConfig.transformer() if args.preset == "transformer" else QuantConfig.cnn())
    cfg.mode = args.mode
    if args.observer:
        cfg.activation = cfg.activation.with_(observer=args.observer)
    if args.smoothquant is not None:
        cfg.smoothquant = None if args.smoothquant < 0 else args.smoothquant
    cfg.weight_bits, cfg.group_size = args.bits, args.group_size
    cfg.__post_init__()  # re-validate the edited fields
    return cfg


def _sentence_batches(model: Any, count: int, batch: int = 10) -> list[dict[str, np.ndarray]]:
    from ..data import sentences
    from ..models import minilm_tokenizer

    names = [v.name for v in model.graph.inputs]
    if "input_ids" not in names:
        raise GraphoptError("--calib is required: the model has no 'input_ids' input for the shipped sentences "
                            f"(inputs: {names})")
    if count > 100:
        raise GraphoptError("--calib-count must be <= 100 (the shipped calibration split)")
    tok = minilm_tokenizer()
    sents = sentences("calib", count)
    out = []
    for i in range(0, len(sents), batch):
        enc = tok(sents[i:i + batch], padding="longest", truncation=True, max_length=128, return_tensors="np")
        out.append({n: enc[n].astype(np.int64) for n in names if n in enc})
    return out


def run(args: argparse.Namespace) -> int:
    from ..io import load, save
    from ..io.atomic import refuse_same_file, write_text
    from ..quant import CalibrationResult, quantize
    from ..quant.api import prepare_batches

    if args.model:
        src = Path(args.model)
    else:
        from ..models import minilm_onnx

        src = minilm_onnx().path
    refuse_same_file(src, args.out)
    model = load(src)
    if args.recipe:
        return _apply_recipe(args, src, model)
    fp32 = load(src)
    cfg = _config(args)
    cfg.validate(model)
    batches = None
    if cfg.mode == "static":
        batches = prepare_batches(model, args.calib) if args.calib else _sentence_batches(model, args.calib_count)
    calibration = CalibrationResult.load(args.load_calib) if args.load_calib else None
    t = time.perf_counter()
    model, rep = quantize(model, cfg, batches, fmt=args.fmt, progress=not args.no_progress, calibration=calibration)
    out = save(model, args.out)
    ratio = out.stat().st_size / src.stat().st_size
    print(f"quantized {src.name} ({cfg.mode}, {args.fmt}) in {time.perf_counter() - t:.1f} s "
          f"(calibration {rep.calibration_seconds:.1f} s on {rep.calibration_batches} batches)")
    for name, st in rep.stats.items():
        print(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in st.items()))
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB, {ratio:.1%} of the fp32 file)")
    if args.save_calib and cfg.mode == "static":
        # the ranges insert-qdq used, keyed by value name (reusable with --load-calib)
        print(f"wrote {CalibrationResult(_used_stats(model), rep.calibration_batches).save(args.save_calib)}")
    report: dict[str, Any] = {"model": str(src), "out": str(out), "size_ratio": ratio, "stats": rep.stats,
                              "calibration_seconds": rep.calibration_seconds}
    if batches:
        from ..quant.report import format_layer_table, layer_errors, plot_layer_errors

        # one unpadded sentence per batch for text models: padded positions are masked downstream,
        # so their (large) error would hide the error that matters
        probe = batches[:4] if args.calib else _sentence_batches(fp32, 16, batch=1)
        errs = layer_errors(fp32, model, probe)
        if errs:
            print("\nper-layer quantization error (relative L2 of the layer output, worst first):")
            print(format_layer_table(errs, top=15))
        report["layer_errors"] = errs
        if args.report:
            png = plot_layer_errors(errs, Path(args.report) / "layer_errors.png", f"{src.name}: per-layer error")
            print(f"wrote {png}")
    if args.report:
        rp = Path(args.report) / "report.json"
        write_text(rp, json.dumps(report, indent=2, default=str))
        print(f"wrote {rp}")
    return 0


def _used_stats(model: Any) -> dict[str, Any]:
    from ..quant import CALIB

    return {v.name: v.meta[CALIB] for v in model.graph.all_values() if v.meta.get(CALIB) is not None}


def _apply_recipe(args: argparse.Namespace, src: Path, model: Any) -> int:
    """Re-apply a tuned recipe: the same groups, knobs and precisions (calibrated on --calib)."""
    from ..io import save
    from ..quant.api import prepare_batches
    from ..tune.space import Recipe, build, find_groups

    recipe = Recipe.load(args.recipe)
    groups = find_groups(model)
    missing = sorted(set(dict(recipe.nodes)) - {g.name for g in groups})
    if missing:
        raise GraphoptError(f"recipe {args.recipe} names node(s) this model does not quantize: {missing[:5]}")
    needs = any(recipe.precision(g.name) == "int8" for g in groups)
    batches = (prepare_batches(model, args.calib) if args.calib else _sentence_batches(model, args.calib_count)) \
        if needs else []
    t = time.perf_counter()
    out = save(build(model, recipe, groups, batches), args.out)
    c = recipe.counts(groups)
    print(f"applied recipe {args.recipe} to {src.name} in {time.perf_counter() - t:.1f} s: "
          f"{c['int8']} int8, {c['bf16']} bf16, {c['fp32']} fp32 nodes")
    print(f"wrote {out}")
    return 0
