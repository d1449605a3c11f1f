"""Calibration: stream batches through the model in onnxruntime and feed observers.

The model is exported once with the observed values added as graph outputs
(in chunks of ``max_outputs`` if there are many, each chunk one pass over the
data), and each fetched tensor updates a bounded-memory observer. The result
maps value names to observers; it attaches to IR values (``value.meta[CALIB]``
or ``value.meta[CHANNEL_MAX]``) and saves to / loads from JSON.

Data can be a feed dict, any iterable of feed dicts, an object with ORT's
``CalibrationDataReader.get_next()`` protocol, an ``.npz`` file, or a folder
of ``.npz`` files (one batch each). Every batch is checked against the
model's inputs (names, dtypes, ranks, fixed dims) before it is run; a list of
batches is checked entirely before any work.

>>> result = calibrate(model, [{"x": x0}, {"x": x1}], ["h"], progress=False)   # doctest: +SKIP
>>> result.attach(model); result.save("calib.json")                           # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Union

import numpy as np

from ..errors import GraphoptError
from ..feeds import check_feeds
from ..pm import Pass, PassContext, PassResult
from ..ir import Model, Value
from ..ir.mapped import is_mapped
from .observers import ChannelAbsMaxObserver, HistogramObserver, observer_from_dict
from .gptq import GramObserver
from .specs import CALIB, CHANNEL_MAX, GRAM, QUANT_INPUTS

__all__ = ["CalibrationDataReader", "CalibrationResult", "calibrate", "iter_batches", "check_feeds",
           "quant_targets", "DataSource", "CalibratePass"]

logger = logging.getLogger(__name__)

Feeds = dict[str, np.ndarray]


class CalibrationDataReader(Protocol):
    """onnxruntime's reader protocol: ``get_next()`` returns a feed dict, or None at the end."""

    def get_next(self) -> Feeds | None: ...


#: What every calibration entry point takes (the API's ``quantize(model, data)`` and the CLI's ``--calib``):
#: a feed dict, an iterable of feed dicts, onnxruntime's reader protocol, a zero-argument callable
#: returning an iterable of feed dicts, an ``.npz`` file or a folder of ``.npz`` files.
DataSource = Union[Feeds, Iterable[Feeds], CalibrationDataReader, Callable[[], Iterable[Feeds]], str, os.PathLike]
Observer = Union[HistogramObserver, ChannelAbsMaxObserver, GramObserver]
# (model, target value names or None for the default, observer kind) -> the observed statistics; how a
# calibration is spread over processes (graphopt.tune's Ray actors each observe a shard and merge)
Calibrator = Callable[["Model", "Sequence[str] | None", str], "CalibrationResult"]


def _reader_iter(reader: CalibrationDataReader) -> Iterator[Feeds]:
    while True:
        b = reader.get_next()
        if b is None:
            return
        yield b


class _Repeatable:
    """Batches from a zero-argument callable; each iteration calls it again."""

    def __init__(self, fn: Callable[[], Iterable[Feeds]]) -> None:
        self.fn = fn

    def __iter__(self) -> Iterator[Feeds]:
        out = self.fn()
        if isinstance(out, Mapping):
            return iter([dict(out)])
        return iter(out)


def iter_batches(data: DataSource) -> Iterable[Feeds]:
    """Normalise any supported data source into an iterable of feed dicts."""
    if isinstance(data, Mapping):
        return [dict(data)]
    if isinstance(data, (str, os.PathLike)):
        p = Path(data)
        if p.is_dir():
            files = sorted(p.glob("*.npz"))
            if not files:
                raise GraphoptError(f"calibration folder {p} holds no .npz files")
            return ({k: z[k] for k in z.files} for z in map(np.load, files))
        if p.suffix == ".npz" and p.is_file():
            with np.load(p) as z:
                return [{k: z[k] for k in z.files}]
        raise GraphoptError(f"calibration data {p} is neither a folder of .npz files nor an .npz file")
    if hasattr(data, "get_next"):
        return _reader_iter(data)  # type: ignore[arg-type]
    if callable(data):  # a zero-argument function returning batches (called again for each pass)
        return _Repeatable(data)
    if isinstance(data, Iterable):
        return data
    raise GraphoptError(f"unsupported calibration data of type {type(data).__name__}")


def quant_targets(model: Model) -> list[str]:
    """Names of the non-constant values some node's QUANT_INPUTS annotation asks to quantize."""
    out: dict[str, None] = {}
    for n in model.graph:
        for i in (n.meta.get(QUANT_INPUTS) or {}):
            v = n.inputs[i]
            if v is not None and v.const is None and not _is_const_chain(v):
                out[v.name] = None
    return list(out)


def _is_const_chain(v: Value) -> bool:
    p = v.producer()
    return p is not None and p.op_type == "Constant"


@dataclass
class CalibrationResult:
    """Observers by value name, plus run facts (batches, seconds)."""

    stats: dict[str, Observer] = field(default_factory=dict)
    batches: int = 0
    seconds: float = 0.0

    def merge(self, other: CalibrationResult) -> CalibrationResult:
        """Combine two results (e.g. from two workers); observers merge associatively."""
        stats = dict(self.stats)
        for k, o in other.stats.items():
            stats[k] = stats[k].merge(o) if k in stats else o  # type: ignore[arg-type]
        return CalibrationResult(stats, self.batches + other.batches, self.seconds + other.seconds)

    def attach(self, model: Model) -> int:
        """Store each observer on its IR value (``CALIB`` or ``CHANNEL_MAX``); returns the count."""
        values = {v.name: v for v in model.graph.all_values()}
        missing = [k for k in self.stats if k not in values]
        if missing:
            raise GraphoptError(f"calibration names value(s) the model does not have: {missing[:5]}")
        for k, o in self.stats.items():
            if isinstance(o, ChannelAbsMaxObserver):
                values[k].meta[CHANNEL_MAX] = o.absmax
            elif isinstance(o, GramObserver):
                values[k].meta[GRAM] = o.gram
            else:
                values[k].meta[CALIB] = o
        return len(self.stats)

    def to_dict(self) -> dict[str, Any]:
        return {"format": "graphopt.calibration/1", "batches": self.batches, "seconds": self.seconds,
                "stats": {k: o.to_dict() for k, o in self.stats.items()}}

    def save(self, path: str | os.PathLike) -> Path:
        from ..io.atomic import write_text

        return write_text(path, json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: str | os.PathLike) -> CalibrationResult:
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise GraphoptError(f"cannot read calibration file {path}: {e}") from e
        if not isinstance(d, dict) or d.get("format") != "graphopt.calibration/1":
            raise GraphoptError(f"{path} is not a graphopt calibration file")
        return cls.from_dict(d)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CalibrationResult:
        """The inverse of :meth:`to_dict`."""
        return cls({k: observer_from_dict(v) for k, v in d["stats"].items()}, d["batches"], d["seconds"])


def _session(model: Model, outputs: Sequence[Value]):
    import onnxruntime as ort

    from ..io import to_onnx

    g = model.graph
    saved = list(g.outputs)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    # basic rewrites only: the fetched values must exist as computed by the graph as written
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    from ..ir.domains import has_fused_ops

    fused = has_fused_ops(g)
    consts = [v.const for v in g.initializers.values() if v.const is not None]
    # a model with memory-mapped weights (loaded from external data) is a big one even once most of
    # it is quantized: keep it on the file path, whose session holds only what the fetched values need
    big = sum(c.nbytes for c in consts) > _INLINE_SESSION or any(is_mapped(c) for c in consts)
    try:
        g.outputs = saved + [v for v in outputs if not any(v is o for o in saved)]
        if big and not fused:
            # through a file with external data: no in-memory proto holding every weight (nor its
            # serialized copy); onnxruntime reads the tensors itself
            return _file_session(model, so, [v.name for v in outputs])
        proto = to_onnx(model)
    finally:
        g.outputs = saved
    if fused:
        # graphopt's fused ops (e.g. graphopt::Linear) run in onnxruntime after lowering a copy;
        # the observed values are graph outputs of the copy, so lowering keeps their names
        from ..io import from_onnx
        from ..ops.lowering import lower_to_onnxruntime

        copy = from_onnx(proto)
        lower_to_onnxruntime(copy)
        proto = to_onnx(copy)
    from .._ort import ort_session

    # basic rewrites only: the fetched values must exist as computed by the graph as written
    return ort_session(proto, optimize="basic")


_INLINE_SESSION = 64 * 2**20  # constants above this go to onnxruntime through an external-data file
# (in memory, the proto, its serialized bytes and onnxruntime's copy would be three copies)


def _prune_to(path: Path, fetch: Sequence[str]) -> None:
    """Keep only the nodes ``fetch`` depends on (onnxruntime does not drop dead nodes, and loads every
    initializer): a GPTQ round observing layer i then holds layers < i (already int4), not the model."""
    import onnx

    mp = onnx.load(str(path), load_external_data=False)
    g = mp.graph
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in g.node for a in n.attribute):
        return  # subgraphs read outer names implicitly: keep everything
    producer = {o: n for n in g.node for o in n.output if o}
    need, stack, keep_nodes = set(), list(fetch), set()
    while stack:
        name = stack.pop()
        if name in need:
            continue
        need.add(name)
        n = producer.get(name)
        if n is not None and id(n) not in keep_nodes:
            keep_nodes.add(id(n))
            stack.extend(i for i in n.input if i)
    nodes = [n for n in g.node if id(n) in keep_nodes]
    inits = [t for t in g.initializer if t.name in need]
    del g.node[:]
    g.node.extend(nodes)
    del g.initializer[:]
    g.initializer.extend(inits)
    outs = [o for o in g.output if o.name in need]
    del g.output[:]
    g.output.extend(outs or [onnx.helper.make_empty_tensor_value_info(f) for f in fetch[:1]])
    onnx.save(mp, str(path))  # the external data file is untouched; only the kept tensors are read


def _file_session(model: Model, so: Any, fetch: Sequence[str] = ()):
    import tempfile

    import onnxruntime as ort

    from ..io import save

    with tempfile.TemporaryDirectory(prefix="graphopt-calib-") as d:
        path = save(model, os.path.join(d, "calib.onnx"), external_data=True)
        if fetch:
            _prune_to(Path(path), list(fetch))
        try:
            return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise GraphoptError(f"onnxruntime cannot load the calibration model: {e}") from e


def calibrate(model: Model, data: DataSource, targets: Sequence[str] | None = None, *,
              kind: str = "histogram", bins: int = 4096, progress: bool | None = None,
              max_outputs: int = 160) -> CalibrationResult:
    """Run ``data`` through ``model`` and observe ``targets`` (default: :func:`quant_targets`).

    ``kind`` is "histogram" (ranges for every observer method),
    "channel_absmax" (per-channel |x| max, for SmoothQuant), "gram" (X^T X in float64, for pruning's
    refits) or "gram-f32" (X^T X in float32, for GPTQ: half the memory).

    >>> res = calibrate(model, batches, progress=False)   # doctest: +SKIP
    >>> res.attach(model)                                 # doctest: +SKIP
    """
    if kind not in ("histogram", "channel_absmax", "gram", "gram-f32"):
        raise GraphoptError(f"unknown observer kind '{kind}'")
    names = list(targets) if targets is not None else quant_targets(model)
    values = {v.name: v for v in model.graph.all_values()}
    missing = [n for n in names if n not in values]
    if missing:
        raise GraphoptError(f"calibration targets not in the model: {missing[:5]}")
    consts = [n for n in names if values[n].const is not None]
    if consts:
        raise GraphoptError(f"calibration targets are constants (weights are quantized offline): {consts[:5]}")
    batches = iter_batches(data)
    chunks = [names[i:i + max_outputs] for i in range(0, len(names), max_outputs)] or [[]]
    if len(chunks) > 1 or isinstance(batches, Sequence):
        batches = list(batches)  # several passes, or cheap to check all up front
        if not batches:
            raise GraphoptError("the calibration set is empty")
        for i, b in enumerate(batches):
            check_feeds(model, b, i)
    factory = {"histogram": lambda: HistogramObserver(bins), "channel_absmax": ChannelAbsMaxObserver,
               "gram": GramObserver, "gram-f32": lambda: GramObserver(np.float32)}[kind]
    stats: dict[str, Observer] = {n: factory() for n in names}
    t0 = time.perf_counter()
    count = 0
    for ci, chunk in enumerate(chunks):
        sess = _session(model, [values[n] for n in chunk])
        count = 0
        bar = _progress(progress, batches, f"calibrate {ci + 1}/{len(chunks)}" if len(chunks) > 1 else "calibrate")
        try:
            for b in batches:
                if not isinstance(batches, list):
                    check_feeds(model, b, count)
                outs = sess.run(chunk or None, {k: np.asarray(v) for k, v in b.items()})
                for n, arr in zip(chunk, outs):
                    stats[n].update(arr)
                count += 1
                bar.update(1)
        finally:
            bar.close()
        if count == 0:
            raise GraphoptError("the calibration set is empty")
    seconds = time.perf_counter() - t0
    logger.info("calibrated %d values on %d batches in %.1f s", len(names), count, seconds)
    return CalibrationResult(stats, count, seconds)


class CalibratePass(Pass):
    """Calibration as a pass: stream ``batches`` through the model and attach the observed
    statistics to its values (``kind`` as in :func:`calibrate`), or attach a saved ``result``.

    Not registered by name (it needs the data); :func:`graphopt.quantize` puts it in its pipeline.
    """

    name = "calibrate"
    description = "stream calibration batches through the model and attach observed ranges"

    def __init__(self, batches: DataSource, *, kind: str = "histogram",
                 targets: Callable[[Model], Sequence[str]] | None = None, progress: bool = False,
                 result: CalibrationResult | None = None, calibrator: Calibrator | None = None) -> None:
        self.batches = batches
        self.calibrator = calibrator
        self.kind = kind
        self.targets = targets
        self.progress = progress
        self.result = result
        if kind != "histogram":
            self.name = f"calibrate-{kind.replace('_', '-')}"  # type: ignore[misc] - one row per kind

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        res = self.result
        if res is None and self.calibrator is not None:
            res = self.calibrator(model, self.targets(model) if self.targets else None, self.kind)
        elif res is None:
            logger.info("%s: running %s batches through the model", self.name,
                        len(self.batches) if hasattr(self.batches, "__len__") else "the")
            res = calibrate(model, self.batches, self.targets(model) if self.targets else None, kind=self.kind,
                            progress=self.progress)
        res.attach(model)
        return PassResult(True, {"values": len(res.stats), "batches": res.batches,
                                 "milliseconds": int(round(res.seconds * 1e3))})


def _progress(enabled: bool | None, batches: Any, desc: str):
    """A tqdm bar on stderr when ``enabled`` (None: only when stderr is a terminal)."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    total = len(batches) if hasattr(batches, "__len__") else None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional: no bar then
        enabled = False
    if not enabled:
        class _Null:
            def update(self, n: int) -> None: ...
            def close(self) -> None: ...
        return _Null()
    return tqdm(total=total, desc=desc, unit="batch", file=sys.stderr, leave=False)
