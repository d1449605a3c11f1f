"""OpenVINO IR export (``.xml`` + ``.bin``) and a CPU compile helper.

How the ``ov.Model`` is built
-----------------------------
Through OpenVINO's own **ONNX frontend** (``openvino.frontend``, the engine
behind ``ov.convert_model``), fed the ModelProto that :func:`graphopt.to_onnx`
writes — not by re-emitting each node with the Python opset API. Why:

* coverage: the frontend translates the whole ONNX opset (every version, every
  attribute variant, subgraphs of If/Loop) that our IR round-trips losslessly;
  an opset-API emitter would re-implement hundreds of translators and their
  corner cases;
* int8: the frontend turns ``QuantizeLinear``/``DequantizeLinear`` pairs into
  ``FakeQuantize`` (and ``Convert``/``Subtract``/``Multiply`` weight
  dequantization), which is exactly what OpenVINO's low-precision
  transformations recognise to run Convolution/MatMul in int8. Our QDQ graphs
  therefore run on OpenVINO's int8 kernels without a graphopt-side mapping;
  :func:`runtime_precisions` shows it per executed layer;
* the control the opset API would give (choosing an OpenVINO op per node) is
  only needed for fused ``graphopt``-domain ops, and those are decomposed to
  standard ONNX first (:func:`_decompose_fused`).

The model goes in memory (``fe.load`` on a byte stream); models past
protobuf's 2 GB limit go through a temporary ONNX file with external data.

Precision
---------
* fp32 weights are written as they are: ``compress_to_fp16=False`` is passed
  to ``openvino.save_model`` (its default, True, would silently turn our fp32
  or graphopt-assigned precisions into fp16 weights; STYLE 3.6).
* bf16 is not a weight format in OpenVINO IR: it is an *execution* precision,
  chosen at compile time with the ``INFERENCE_PRECISION_HINT`` property
  (``"bf16"``/``"f32"``). ``export_openvino(precision=...)`` records the wanted
  hint in the IR's ``rt_info/runtime_options`` so the choice travels with the
  file, but OpenVINO's CPU plugin does not apply that key by itself (checked on
  2026.4), so compile with :func:`compile_for_cpu`, which sets the hint
  explicitly. Note the CPU plugin's default on a CPU with AVX512-BF16/AMX is
  **bf16**: fp32 comparisons must set ``f32``, as :func:`compile_for_cpu` does.
* int8 comes from QDQ in the graph (see above), independent of the hint; the
  hint governs the layers left in floating point. :func:`int8_layers` groups
  the executed Convolution/FullyConnected/MatMul layers of a compiled model by
  runtime precision (``u8``/``i8`` = OpenVINO's int8 kernels); the tests use it
  to check that every quantized MatMul of MiniLM runs in int8.
* OpenVINO 2026.4's CPU "snippets" mis-compute some static-shape int8 MLP
  chains; :func:`compile_for_cpu` turns snippets off for static-shape
  quantized models only (see ``_needs_snippets_off``).

>>> import graphopt
>>> from graphopt.backends.openvino import export_openvino, compile_for_cpu
>>> xml = export_openvino(graphopt.load("model.onnx"), "out/model.xml")   # doctest: +SKIP
>>> cm = compile_for_cpu(xml, precision="fp32")                           # doctest: +SKIP
>>> outs = infer(cm, {"x": x})                                            # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import io
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import GraphoptError, MissingDependencyError, UnsupportedError
from ..ir import Graph, Model

if TYPE_CHECKING:  # pragma: no cover
    import onnx
    import openvino as ov

__all__ = [
    "read_back",
    "export_openvino", "to_openvino", "compile_for_cpu", "infer", "runtime_precisions", "int8_layers",
    "PRECISIONS",
]

logger = logging.getLogger(__name__)

from ..ir.domains import GRAPHOPT_DOMAIN as FUSED_DOMAIN  # noqa: E402 - one home

#: graphopt precision name -> OpenVINO element-type name for INFERENCE_PRECISION_HINT.
PRECISIONS: dict[str, str] = {"fp32": "f32", "bf16": "bf16"}

_PROTOBUF_LIMIT = 2**31 - 1
_HINT_PATH = ["runtime_options", "INFERENCE_PRECISION_HINT"]


def _require_openvino() -> Any:
    try:
        import openvino
    except ImportError as e:
        raise MissingDependencyError("OpenVINO export needs openvino: pip install 'graphopt[openvino]'") from e
    return openvino


def _check_precision(precision: str | None, *, allow_none: bool) -> str | None:
    if precision is None and allow_none:
        return None
    if precision not in PRECISIONS:
        raise UnsupportedError(f"precision {precision!r} is not one of {sorted(PRECISIONS)}"
                               + (" or None" if allow_none else ""))
    return precision


# ---------------------------------------------------------------- model prep


def _as_model(model: Model | Graph | onnx.ModelProto | str | os.PathLike) -> Model:
    from ..io import load

    if isinstance(model, Graph):
        return Model(model)
    if isinstance(model, Model):
        return model
    return load(model)  # ModelProto, bytes or an .onnx path


def _fused_nodes(model: Model) -> list:
    return [n for n in model.graph.walk() if n.domain == FUSED_DOMAIN]


def _decompose_fused(model: Model) -> Model:
    """Return ``model`` with ``graphopt``-domain ops rewritten to standard ONNX.

    The decomposition lives with the op specs in :mod:`graphopt.ops`; the
    model is cloned first so the caller's IR is left as it was.
    """
    fused = _fused_nodes(model)
    if not fused:
        return model
    try:  # the specs and decompositions live in graphopt.ops
        gops = importlib.import_module("graphopt.ops")
    except ImportError:
        gops = None
    decompose = None
    for name in ("decompose_all", "decompose", "decompose_model"):  # graphopt.ops names it decompose_all
        decompose = getattr(gops, name, None) if gops is not None else None
        if decompose is not None:
            break
    if decompose is None:
        n = fused[0]
        raise UnsupportedError(
            f"node {n.name!r} ({FUSED_DOMAIN}::{n.op_type}) has no OpenVINO mapping and no decomposition to "
            f"standard ONNX is available (graphopt.ops); {len(fused)} fused node(s) in the graph")
    from ..ir.clone import clone as clone_model

    copy = clone_model(model)
    result = decompose(copy)  # graphopt.ops.decompose_all rewrites in place
    out = result if isinstance(result, Model) else copy
    left = _fused_nodes(out)
    if left:
        raise UnsupportedError(f"node {left[0].name!r} ({FUSED_DOMAIN}::{left[0].op_type}) could not be "
                               f"decomposed to standard ONNX for OpenVINO")
    return out


# ---------------------------------------------------------------- conversion


def _frontend() -> Any:
    _require_openvino()
    from openvino.frontend import FrontEndManager

    fe = FrontEndManager().load_by_framework("onnx")
    if fe is None:  # pragma: no cover - the wheel ships it
        raise GraphoptError("OpenVINO's ONNX frontend is not available in this openvino install")
    return fe


def _unsupported_report(fe: Any, load: Any, proto: onnx.ModelProto) -> str:
    """Name the ONNX nodes the frontend left unconverted (best effort)."""
    try:
        partial = fe.convert_partially(load())
    except Exception:  # noqa: BLE001 - only used to enrich the error message
        return ""
    by_output = {o: n for n in proto.graph.node for o in n.output if o}
    names = []
    for op in partial.get_ops():
        if "FrameworkNode" in op.get_type_name() or "NotSupported" in op.get_type_name():
            onnx_node = by_output.get(op.get_friendly_name())
            if onnx_node is not None:
                dom = f"{onnx_node.domain}::" if onnx_node.domain else ""
                who = repr(onnx_node.name) if onnx_node.name else f"<unnamed, output {onnx_node.output[0]!r}>"
                names.append(f"{who} ({dom}{onnx_node.op_type})")
            else:
                names.append(repr(op.get_friendly_name()))
    return ", ".join(names)


def _convert(proto: onnx.ModelProto) -> ov.Model:
    fe = _frontend()
    if proto.ByteSize() > _PROTOBUF_LIMIT - 64 * 2**20:
        # past protobuf's limit: through a file with external data. OpenVINO may
        # memory-map the weights; removing the files after conversion is safe on
        # POSIX (the mapping keeps the inode alive).
        import onnx

        with tempfile.TemporaryDirectory(prefix="graphopt-ov-") as tmp:
            path = os.path.join(tmp, "model.onnx")
            onnx.save_model(proto, path, save_as_external_data=True, all_tensors_to_one_file=True,
                            location="model.onnx.data")
            return _convert_with(fe, lambda: fe.load(path), proto)
    data = proto.SerializeToString()  # the common case: in memory, no temporary files
    return _convert_with(fe, lambda: fe.load(io.BytesIO(data)), proto)


def _convert_with(fe: Any, load: Any, proto: onnx.ModelProto) -> ov.Model:
    try:
        return fe.convert(load())
    except Exception as e:  # noqa: BLE001 - OpConversionFailure, GeneralFailure, RuntimeError ...
        where = _unsupported_report(fe, load, proto)
        msg = str(e).strip()
        raise UnsupportedError(
            "OpenVINO's ONNX frontend cannot convert the model"
            + (f": unsupported node(s) {where}" if where else "")
            + f"\n--- OpenVINO says:\n{msg}") from e


def to_openvino(model: Model | Graph | onnx.ModelProto | str | os.PathLike, *,
                precision: str | None = None) -> ov.Model:
    """Build an in-memory ``openvino.Model`` from a graphopt model.

    ``precision`` (``"fp32"``/``"bf16"``/None) is recorded in the model's
    ``rt_info`` as the intended ``INFERENCE_PRECISION_HINT`` (see module doc).

    >>> ov_model = to_openvino(graphopt.load("model.onnx"))     # doctest: +SKIP
    """
    precision = _check_precision(precision, allow_none=True)
    from ..io import to_onnx

    m = _decompose_fused(_as_model(model))
    ov_model = _convert(to_onnx(m))
    if precision is not None:
        ov_model.set_rt_info(PRECISIONS[precision], _HINT_PATH)
    return ov_model


def export_openvino(model: Model | Graph | onnx.ModelProto | str | os.PathLike, path: str | os.PathLike, *,
                    precision: str | None = None, compress_to_fp16: bool = False) -> Path:
    """Write ``path`` (``.xml``) and its ``.bin`` for ``openvino.Core().read_model``.

    ``compress_to_fp16`` is False unless asked for, so the weights keep the
    precision graphopt gave them. Returns the ``.xml`` path.

    >>> xml = export_openvino(model, "out/model.xml", precision="bf16")   # doctest: +SKIP
    >>> import openvino as ov; ov.Core().read_model(xml)                  # doctest: +SKIP
    """
    ov = _require_openvino()
    path = Path(path)
    if path.suffix != ".xml":
        raise GraphoptError(f"OpenVINO IR path must end in .xml, got {path}")
    ov_model = to_openvino(model, precision=precision)
    from ..io.atomic import atomic_output

    try:
        with atomic_output(path) as tmp:  # .xml and .bin replace the old pair only once both are written
            ov.save_model(ov_model, str(tmp), compress_to_fp16=compress_to_fp16)
    except Exception as e:  # noqa: BLE001
        raise GraphoptError(f"cannot write OpenVINO IR {path}: {e}") from e
    logger.info("wrote %s (+ .bin), precision hint %s, compress_to_fp16=%s", path, precision, compress_to_fp16)
    read_back(path)
    return path


def read_back(path: str | os.PathLike) -> Any:
    """Read an exported ``.xml``/``.bin`` with ``openvino.Core`` and return the ``openvino.Model``;
    a file OpenVINO cannot read raises GraphoptError (an export is reported only after this)."""
    ov = _require_openvino()
    try:
        return ov.Core().read_model(str(path))
    except Exception as e:  # noqa: BLE001 - OpenVINO raises its own exception types
        raise GraphoptError(f"OpenVINO cannot read back {path}: {str(e).splitlines()[0] if str(e) else e}") from e


# ---------------------------------------------------------------- runtime


def recorded_precision(ov_model: ov.Model) -> str | None:
    """The graphopt precision recorded by :func:`export_openvino`, if any."""
    if not ov_model.has_rt_info(_HINT_PATH):
        return None
    hint = ov_model.get_rt_info(_HINT_PATH).astype(str)
    return {v: k for k, v in PRECISIONS.items()}.get(hint)


def _needs_snippets_off(ov_model: ov.Model) -> bool:
    """OpenVINO 2026.4's CPU snippets mis-compute some int8 MLP chains
    (FakeQuantize -> MatMul -> Add -> Relu -> FakeQuantize -> MatMul) when all
    shapes are static: they are tokenized into one ``Subgraph`` layer whose
    output is wrong by ~100% (found by tests/backends/test_openvino_int8.py;
    with a dynamic batch dimension, or SNIPPETS_MODE=DISABLE, the same model
    matches onnxruntime exactly). Only that combination is switched off."""
    quantized = any(op.get_type_name() == "FakeQuantize" for op in ov_model.get_ops())
    static = all(p.get_partial_shape().is_static for p in ov_model.inputs)
    return quantized and static


def compile_for_cpu(model: ov.Model | Model | str | os.PathLike, precision: str | None = "fp32", *,
                    num_threads: int | None = None, snippets: bool | None = None,
                    config: Mapping[str, Any] | None = None) -> ov.CompiledModel:
    """Compile for OpenVINO's CPU plugin with ``INFERENCE_PRECISION_HINT`` set explicitly.

    ``precision=None`` uses the hint recorded in the IR by :func:`export_openvino`
    (fp32 when none was recorded). ``model`` is an ``.xml``/``.onnx`` path, an
    ``ov.Model`` or a graphopt Model. ``snippets=None`` keeps OpenVINO's
    snippets (its JIT-fused subgraphs) except for static-shape quantized
    models, where they give wrong results (see ``_needs_snippets_off``).
    A model the plugin cannot take raises :class:`UnsupportedError` with
    OpenVINO's message.

    >>> cm = compile_for_cpu("out/model.xml", precision="bf16")   # doctest: +SKIP
    """
    ov = _require_openvino()
    core = ov.Core()
    if isinstance(model, (str, os.PathLike)) and Path(model).suffix == ".xml":
        try:
            ov_model = core.read_model(str(model))
        except Exception as e:  # noqa: BLE001
            raise GraphoptError(f"OpenVINO cannot read {model}: {e}") from e
    elif isinstance(model, ov.Model):
        ov_model = model
    else:
        ov_model = to_openvino(model)
    if precision is None:
        precision = recorded_precision(ov_model) or "fp32"
    precision = _check_precision(precision, allow_none=False)
    props: dict[str, Any] = {"INFERENCE_PRECISION_HINT": PRECISIONS[precision]}
    if num_threads is not None:
        props["INFERENCE_NUM_THREADS"] = int(num_threads)
    if snippets is None and _needs_snippets_off(ov_model):
        logger.info("static-shape int8 model: SNIPPETS_MODE=DISABLE (OpenVINO CPU snippets bug, see _needs_snippets_off)")
        snippets = False
    if snippets is False:
        props["SNIPPETS_MODE"] = "DISABLE"
    props.update(config or {})
    try:
        return core.compile_model(ov_model, "CPU", props)
    except Exception as e:  # noqa: BLE001
        raise UnsupportedError(f"OpenVINO's CPU plugin cannot compile the model\n--- OpenVINO says:\n"
                               f"{str(e).strip()}") from e


def infer(compiled: ov.CompiledModel, feeds: Mapping[str, np.ndarray] | list[np.ndarray]) -> list[np.ndarray]:
    """Run once; outputs in the model's output order. Feeds not among the
    model's inputs are ignored (so one feed dict serves several models).

    >>> y, = infer(compile_for_cpu(xml), {"x": x})    # doctest: +SKIP
    """
    if isinstance(feeds, Mapping):
        args: Any = {}
        for i, port in enumerate(compiled.inputs):
            # a port carries every tensor name the frontend merged into it
            name = next((n for n in port.get_names() if n in feeds), None)
            if name is None:  # an input passed straight to an output carries the output's
                name = port.get_node().get_friendly_name()  # tensor name; the Parameter keeps its own
            if name not in feeds:
                raise GraphoptError(f"no feed for OpenVINO model input {sorted(port.get_names())} "
                                    f"(fed: {sorted(feeds)})")
            args[i] = _contiguous(feeds[name])
    else:
        args = [_contiguous(x) for x in feeds]
    req = compiled.create_infer_request()
    req.infer(args)
    return [np.array(req.get_output_tensor(i).data, copy=True) for i in range(len(compiled.outputs))]


def _contiguous(x: Any) -> np.ndarray:
    # not np.ascontiguousarray: it turns 0-d scalars into shape (1,)
    return np.require(np.asarray(x), requirements="C")


def runtime_precisions(compiled: ov.CompiledModel) -> list[tuple[str, str, str]]:
    """``(layer name, layer type, runtime precision)`` of every executed layer,
    from the compiled model's runtime graph (the layers OpenVINO actually runs).

    >>> [l for l in runtime_precisions(cm) if l[1] == "FullyConnected"]   # doctest: +SKIP
    """
    out = []
    for op in compiled.get_runtime_model().get_ops():
        ri = op.get_rt_info()
        out.append((op.get_friendly_name(), ri["layerType"].astype(str), ri["runtimePrecision"].astype(str)))
    return out


_COMPUTE_LAYERS = frozenset({"Convolution", "FullyConnected", "MatMul", "Deconvolution"})


def int8_layers(compiled: ov.CompiledModel) -> dict[str, list[str]]:
    """Compute layers (Convolution/FullyConnected/MatMul) grouped by the
    precision they execute in, e.g. ``{"i8": [...], "f32": [...]}``.
    ``u8``/``i8`` mean OpenVINO's int8 kernels run the layer."""
    groups: dict[str, list[str]] = {}
    for name, kind, prec in runtime_precisions(compiled):
        if kind in _COMPUTE_LAYERS:
            groups.setdefault(prec, []).append(name)
    return groups
