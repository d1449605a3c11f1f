"""``graphopt quantize MODEL -o OUT``: ``graphopt.quantize`` + ``graphopt.save``, with a fidelity report.

Static mode calibrates on ``--calib`` (a folder of .npz batches or one .npz file; for a
transformer with ``input_ids`` the default is the shipped calibration sentences). The
report gives the end-to-end fidelity of the model outputs first, then the per-layer
errors (unpadded positions only, named by the original layers); ``--report DIR`` writes a
PNG plot and report.json, ``--json`` prints the same report.

    graphopt quantize model.onnx -o model.int8.onnx --calib batches/ --smoothquant 0.8
    graphopt quantize -o minilm.int8.onnx          # the bundled all-MiniLM-L6-v2, shipped sentences
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from ._common import add_json, add_output, add_progress, emit, ignored, progress, say

_DEFAULTS: dict[str, Any] = {"calib": None, "calib_count": 100, "load_calib": None, "save_calib": None,
                             "observer": None, "smoothquant": None, "bits": 8, "group_size": 32, "fmt": "qdq"}


def register(sub: Any) -> None:
    p = sub.add_parser("quantize", help="post-training quantization: static (calibrated), dynamic, weight-only")
    p.add_argument("model", nargs="?", help="an .onnx file (default: the bundled all-MiniLM-L6-v2)")
    add_output(p, "output .onnx path")
    p.add_argument("--mode", choices=("static", "dynamic", "weight-only"), default="static",
                   help="static: calibrated activation ranges; dynamic: ranges at run time; weight-only: int8/int4 "
                        "weights, float activations")
    p.add_argument("--calib", help="calibration data: folder of .npz batches or an .npz file "
                                   "(default for transformers: the shipped calibration sentences)")
    p.add_argument("--calib-count", type=int, default=100, help="shipped sentences to calibrate on (<= 100)")
    p.add_argument("--config", help="QuantConfig as YAML or JSON (default: the --preset)")
    p.add_argument("--preset", choices=("transformer", "cnn"), default="transformer", help="QuantConfig preset")
    p.add_argument("--observer", choices=("minmax", "percentile", "entropy", "mse"),
                   help="activation range method (default: the config's)")
    p.add_argument("--smoothquant", type=float, metavar="ALPHA",
                   help="SmoothQuant alpha (negative: off; default: the config's)")
    p.add_argument("--format", choices=("qdq", "qoperator"), default="qdq", dest="fmt", help="output form")
    p.add_argument("--bits", type=int, choices=(4, 8), default=8, help="weight-only bits")
    p.add_argument("--group-size", type=int, default=32, help="weight-only int4 group size")
    p.add_argument("--save-calib", help="write the calibration result to this JSON file")
    p.add_argument("--load-calib", help="reuse a calibration JSON (skips the range calibration)")
    p.add_argument("--report", metavar="DIR", help="folder for layer_errors.png and report.json")
    p.add_argument("--recipe", help="a recipe.json from graphopt tune: per-node int8/bf16/fp32 and its knobs")
    add_progress(p)
    add_json(p)
    p.set_defaults(func=run)


def _config(args: argparse.Namespace) -> Any:
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


def _warn_ignored(args: argparse.Namespace) -> None:
    if args.mode != "static":
        ignored(args, _DEFAULTS, ("calib_count", "load_calib", "save_calib", "observer", "fmt"),
                f"it applies to --mode static, not {args.mode}")
        if args.mode == "dynamic":
            ignored(args, _DEFAULTS, ("calib", "smoothquant"), "dynamic quantization needs no data")
    if args.mode != "weight-only":
        ignored(args, _DEFAULTS, ("bits", "group_size"), "it applies to --mode weight-only")
    if args.calib:
        ignored(args, _DEFAULTS, ("calib_count",), "it counts the shipped sentences, not --calib")


def run(args: argparse.Namespace) -> int:
    import graphopt
    from ..errors import UsageError
    from ..io.atomic import refuse_same_file, write_text
    from ..pm import Timing
    from ..quant import CalibrationResult
    from ..quant.report import file_bytes

    _warn_ignored(args)
    if args.calib_count > 100:
        raise UsageError("--calib-count must be <= 100 (the shipped calibration split)")
    if args.model:
        src = Path(args.model)
    else:
        from ..models import minilm_onnx

        src = minilm_onnx().path
    refuse_same_file(src, args.output)
    if args.recipe:
        return _apply_recipe(args, src, graphopt.load(src))
    fp32 = graphopt.load(src)
    cfg = _config(args)
    cfg.validate(fp32)
    names = [v.name for v in fp32.graph.inputs if not v.is_initializer]
    data: Any = None
    if args.mode != "dynamic":
        if args.calib:
            data = args.calib
        elif "input_ids" in names:
            from ..data import sentence_batches

            data = sentence_batches(names, "calib", args.calib_count)
        elif args.mode == "static" or cfg.gptq:
            raise UsageError(f"--calib is required: the model has no 'input_ids' input for the shipped sentences "
                             f"(inputs: {names})")
    calibration = CalibrationResult.load(args.load_calib) if args.load_calib and args.mode == "static" else None
    timing = Timing()
    t = time.perf_counter()
    say(args, f"quantizing {src.name} ({args.mode}, {args.fmt})"
              + (" -- calibrating" if data is not None and calibration is None else ""))
    model = graphopt.quantize(fp32, data, config=cfg, fmt=args.fmt, calibration=calibration,
                              progress=progress(args), instruments=[timing])
    seconds = time.perf_counter() - t
    out = graphopt.save(model, args.output)
    ratio = file_bytes(out) / max(file_bytes(src), 1)
    stats = {r.name: r.stats for r in timing.records if r.stats}
    calib_s = sum(r.seconds for r in timing.records if r.name.startswith("calibrate"))
    report: dict[str, Any] = {"model": str(src), "output": str(out), "mode": args.mode, "format": args.fmt,
                              "seconds": seconds, "calibration_seconds": calib_s, "size_ratio": ratio,
                              "stats": stats}
    say(args, f"quantized in {seconds:.1f} s (calibration {calib_s:.1f} s); wrote {out} "
              f"({file_bytes(out) / 2**20:.1f} MiB, {ratio:.1%} of the fp32 model)")
    for name, st in stats.items():
        say(args, f"  {name}: " + ", ".join(f"{k}={v}" for k, v in st.items()))
    if args.save_calib and args.mode == "static":
        # the ranges insert-qdq used, keyed by value name (reusable with --load-calib)
        say(args, f"wrote {CalibrationResult(_used_stats(model), 0).save(args.save_calib)}")
    if args.mode == "static" or "input_ids" in names:
        probe = _probe(args, fp32, names)
        if probe:
            _fidelity(args, fp32, model, probe, report, src)
    if args.report:
        rp = Path(args.report) / "report.json"
        write_text(rp, json.dumps(report, indent=2, default=str))
        say(args, f"wrote {rp}")
    emit(args, report)
    return 0


def _probe(args: argparse.Namespace, fp32: Any, names: list[str]) -> list[dict[str, Any]]:
    """Inputs for the report: shipped eval sentences one per batch (unpadded) for text models,
    else the first --calib batches."""
    if "input_ids" in names:
        from ..data import sentence_batches

        return sentence_batches(names, "eval", 16, batch=1)
    if args.calib:
        from ..quant import iter_batches

        out = []
        for b in iter_batches(args.calib):
            out.append(b)
            if len(out) == 4:
                break
        return out
    return []


def _fidelity(args: argparse.Namespace, fp32: Any, model: Any, probe: list[dict[str, Any]],
              report: dict[str, Any], src: Path) -> None:
    from ..quant.report import end_to_end, format_layer_table, layer_errors, plot_layer_errors

    e2e = end_to_end(fp32, model, probe)
    report["end_to_end"] = e2e
    say(args, f"\nend-to-end on {len(probe)} input(s): relative L2 error {e2e['relative_l2']:.4%}, "
              f"cosine mean {e2e['cosine_mean']:.4f} min {e2e['cosine_min']:.4f}")
    errs = layer_errors(fp32, model, probe)
    report["layer_errors"] = errs
    if errs:
        say(args, "per-layer error (relative L2 of the layer output, unpadded positions, worst first):")
        say(args, format_layer_table(errs, top=15))
        if args.report:
            png = plot_layer_errors(errs, Path(args.report) / "layer_errors.png", f"{src.name}: per-layer error")
            say(args, f"wrote {png}")


def _used_stats(model: Any) -> dict[str, Any]:
    from ..quant import CALIB

    return {v.name: v.meta[CALIB] for v in model.graph.all_values() if v.meta.get(CALIB) is not None}


def _apply_recipe(args: argparse.Namespace, src: Path, model: Any) -> int:
    """Re-apply a tuned recipe: the same groups, knobs and precisions (calibrated on --calib)."""
    from ..errors import GraphoptError, UsageError
    from ..io import save
    from ..quant.api import prepare_batches
    from ..tune.space import Recipe, build, find_groups

    recipe = Recipe.load(args.recipe)
    if recipe.prune and not args.calib:
        raise UsageError(f"recipe {args.recipe} prunes {100 * recipe.prune:.0f} % of heads/FFN: --calib is required")
    if recipe.prune:
        from ..pruning import prune

        model, _ = prune(model, prepare_batches(model, args.calib), heads=recipe.prune, ffn=recipe.prune,
                         level="O0", progress=False)
    groups = find_groups(model)
    missing = sorted(set(dict(recipe.nodes)) - {g.name for g in groups})
    if missing:
        raise GraphoptError(f"recipe {args.recipe} names node(s) this model does not quantize: {missing[:5]}")
    needs = any(recipe.precision(g.name) == "int8" for g in groups)
    names = [v.name for v in model.graph.inputs if not v.is_initializer]
    if not needs:
        batches = []
    elif args.calib:
        batches = prepare_batches(model, args.calib)
    elif "input_ids" in names:
        from ..data import sentence_batches

        batches = prepare_batches(model, sentence_batches(names, "calib", args.calib_count))
    else:
        raise UsageError(f"--calib is required to re-apply an int8 recipe (inputs: {names})")
    t = time.perf_counter()
    out = save(build(model, recipe, groups, batches), args.output)
    c = recipe.counts(groups)
    say(args, f"applied recipe {args.recipe} to {src.name} in {time.perf_counter() - t:.1f} s: "
              f"{c['int8']} int8, {c['bf16']} bf16, {c['fp32']} fp32 nodes")
    say(args, f"wrote {out}")
    emit(args, {"model": str(src), "output": str(out), "recipe": args.recipe, "precisions": c})
    return 0
