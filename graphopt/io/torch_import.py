"""PyTorch front end: ``torch.nn.Module`` -> ONNX (torch.onnx) -> graphopt IR.

Which exporter
--------------
``exporter="auto"`` uses torch's **TorchScript** exporter
(``torch.onnx.export(..., dynamo=False)``) first and falls back to the
**dynamo-based** exporter (``dynamo=True``: ``torch.export`` + onnxscript) when
it fails, logging why. That is the reverse of torch's own default, because the
TorchScript graph is what our passes optimise best (measured on
all-MiniLM-L6-v2, torch 2.13, transformers 5): O2 takes the TorchScript export
from 520 nodes to 45 with all 6 attention blocks fused into
``graphopt::MultiHeadAttention``, but the dynamo export only from 240 to 161
nodes with no attention fused (its attention subgraph -- folded shape
arithmetic, different mask construction -- is not one the fusion patterns
know), and TorchScript exports it ~5x faster (4.7 s vs 24.8 s). The dynamo
exporter covers ops TorchScript has no symbolic for (``rms_norm``,
antialiased ``interpolate`` ...), hence the fallback. TorchScript *traces*, so
Python control flow on tensor values is frozen at the example inputs: its
``TracerWarning``s are logged as warnings (transformers' mask code raises a
harmless one); pass ``exporter="dynamo"`` for modules where that matters --
``torch.export`` refuses them instead of guessing. ``"dynamo"`` and
``"torchscript"`` pick one exporter with no fallback.

Inputs
------
``example_inputs`` is a tensor, a tuple of tensors (positional call) or a
dict ``{name: tensor}``: a dict calls the module with keyword arguments —
what transformers 5 models need, since their positional order is not stable —
and its keys become the ONNX input names. Outputs that are a transformers
``ModelOutput``, a dict or a tuple are flattened; their keys (or
``output_names``) name the ONNX outputs.

``dynamic_shapes`` is either ``{input_name: {axis: "dim_name"}}`` (the
``dynamic_axes`` form, understood by both exporters) or a ``torch.export``
spec with ``torch.export.Dim`` objects (dynamo only).

>>> import torch, graphopt
>>> model = graphopt.from_torch(torch.nn.Linear(4, 2), (torch.randn(1, 4),),
...                             dynamic_shapes={"x": {0: "batch"}}, input_names=["x"])   # doctest: +SKIP
>>> model.graph.op_counts()                                                               # doctest: +SKIP
{'Gemm': 1}
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import GraphoptError, MissingDependencyError
from ..ir import Model

__all__ = ["from_torch", "torch_to_onnx", "EXPORTERS"]

logger = logging.getLogger(__name__)

EXPORTERS = ("auto", "dynamo", "torchscript")

_INSTALL = "pip install 'graphopt[torch]' (torch==2.13.0, CPU build)"


def _require_torch() -> Any:
    try:
        import torch
    except ImportError as e:
        raise MissingDependencyError(f"from_torch needs PyTorch: {_INSTALL}") from e
    return torch


def _flatten_outputs(out: Any) -> tuple[list[Any], list[str] | None]:
    """Tensors of a module's result in order, and their names when it has keys."""
    if hasattr(out, "to_tuple") and hasattr(out, "keys"):  # transformers ModelOutput
        return list(out.to_tuple()), [str(k) for k in out.keys()]
    if isinstance(out, Mapping):
        return list(out.values()), [str(k) for k in out]
    if isinstance(out, (tuple, list)):
        return list(out), None
    return [out], None


def _make_adapter(torch: Any, module: Any, keyword: Sequence[str] | None) -> Any:
    class _Adapter(torch.nn.Module):
        """Calls ``module`` by keyword (if asked) and returns a flat tuple."""

        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(self, *args: Any) -> Any:
            out = self.inner(**dict(zip(keyword, args))) if keyword is not None else self.inner(*args)
            flat, _ = _flatten_outputs(out)
            return tuple(flat)

    return _Adapter()


def _default_input_names(module: Any, n: int) -> list[str]:
    try:
        params = [p.name for p in inspect.signature(module.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    if len(params) >= n:
        return params[:n]
    return [f"input_{i}" for i in range(n)]


def _is_axes_form(spec: Any) -> bool:
    return isinstance(spec, Mapping) and all(
        isinstance(v, (Mapping, list, tuple)) and all(isinstance(a, int) for a in v) for v in spec.values())


def _axes(spec: Mapping[str, Any]) -> dict[str, dict[int, str]]:
    out: dict[str, dict[int, str]] = {}
    for name, axes in spec.items():
        out[name] = ({int(a): str(d) for a, d in axes.items()} if isinstance(axes, Mapping)
                     else {int(a): f"{name}_dim{a}" for a in axes})
    return out


def _module_name(module: Any) -> str:
    return type(module).__qualname__


def _op_hint(msg: str) -> str:
    """Pull the failing op out of an exporter message, when it names one."""
    for pat in (r"ONNX export of operator ([\w:.]+)", r"Unsupported FX nodes: \{?'?([\w:.]+)",
                r"(aten::[\w.]+)", r"(aten\.[\w.]+)", r"no (?:symbolic|decomposition)[^:]*: ([\w:.]+)"):
        m = re.search(pat, msg)
        if m:
            return m.group(1)
    return ""


def _dynamo_shapes(torch: Any, spec: Any, names: Sequence[str]) -> tuple:
    """``dynamic_shapes`` for the adapter's ``forward(*args)``: torch.export
    matches the spec to the signature, so the per-input specs go in one tuple
    for ``args``. Axis-form names become shared ``Dim`` objects, so inputs
    that name the same dimension are constrained equal."""
    if _is_axes_form(spec):
        dims: dict[str, Any] = {}
        axes = _axes(spec)
        unknown = set(axes) - set(names)
        if unknown:
            raise GraphoptError(f"dynamic_shapes names unknown input(s) {sorted(unknown)}; inputs are {list(names)}")
        per_arg = [{a: dims.setdefault(d, torch.export.Dim(re.sub(r"\W", "_", d))) for a, d in axes[n].items()}
                   if n in axes else None for n in names]
    elif isinstance(spec, Mapping):
        per_arg = [spec.get(n) for n in names]
    else:
        per_arg = list(spec)
    return (tuple(per_arg),)


def _export_dynamo(torch: Any, adapter: Any, args: tuple, input_names: list[str], output_names: list[str],
                   dynamic_shapes: Any, opset: int) -> Any:
    kw: dict[str, Any] = {}
    if dynamic_shapes is not None:
        kw["dynamic_shapes"] = _dynamo_shapes(torch, dynamic_shapes, input_names)
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints its progress
        program = torch.onnx.export(adapter, args, None, input_names=input_names, output_names=output_names,
                                    opset_version=opset, dynamo=True, verbose=False, **kw)
    if program is None:  # pragma: no cover - torch returns the ONNXProgram when f is None
        raise RuntimeError("the dynamo exporter returned no program")
    return program.model_proto


def _output_axes(torch: Any, adapter: Any, args: tuple, input_names: Sequence[str], output_names: Sequence[str],
                 axes: dict[str, dict[int, str]]) -> dict[str, dict[int, str]]:
    """Probe the module: grow every input axis named ``d`` by one (repeating
    the last slice) and see which output axes grow with it."""
    def run(xs: tuple) -> list[Any]:
        with torch.no_grad():
            return list(adapter(*xs))

    base = run(args)
    found: dict[str, dict[int, str]] = {}
    for dim in sorted({d for a in axes.values() for d in a.values()}):
        grown = []
        for name, a in zip(input_names, args):
            for ax, d in axes.get(name, {}).items():
                if d == dim:
                    a = torch.cat([a, a.narrow(ax, a.shape[ax] - 1, 1)], dim=ax)
            grown.append(a)
        try:
            outs = run(tuple(grown))
        except Exception as e:  # noqa: BLE001 - a dimension the module cannot grow: leave it unnamed
            logger.debug("probing dynamic dim %r failed: %s", dim, e)
            continue
        for oname, o0, o1 in zip(output_names, base, outs):
            for ax in range(min(o0.dim(), o1.dim())):
                if o0.shape[ax] != o1.shape[ax]:
                    found.setdefault(oname, {})[ax] = dim
    return found


def _export_torchscript(torch: Any, adapter: Any, args: tuple, input_names: list[str], output_names: list[str],
                        dynamic_shapes: Any, opset: int) -> Any:
    import onnx

    if dynamic_shapes is not None and not _is_axes_form(dynamic_shapes):
        raise GraphoptError("the TorchScript exporter needs dynamic_shapes as {input_name: {axis: 'dim_name'}}, "
                            "not a torch.export spec")
    axes = None
    if dynamic_shapes is not None:
        axes = _axes(dynamic_shapes)
        # TorchScript names output dims only when told: find which output axes follow each input dim
        axes.update(_output_axes(torch, adapter, args, input_names, output_names, axes))
    buf = io.BytesIO()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.onnx.export(adapter, args, buf, input_names=input_names, output_names=output_names,
                          opset_version=opset, dynamo=False, dynamic_axes=axes)
    tracer = sorted({str(w.message).splitlines()[0] for w in caught
                     if issubclass(w.category, torch.jit.TracerWarning)})
    if tracer:
        # the trace may have frozen a value-dependent branch at the example inputs
        logger.warning("TorchScript tracing of %s: %d tracer warning(s), e.g. %r; use exporter='dynamo' if the "
                       "module branches on tensor values", _module_name(adapter.inner), len(tracer), tracer[0][:160])
    return onnx.load_from_string(buf.getvalue())


def torch_to_onnx(module: Any, example_inputs: Any, *, dynamic_shapes: Any = None,
                  input_names: Sequence[str] | None = None, output_names: Sequence[str] | None = None,
                  opset: int = 17, exporter: str = "auto") -> Any:
    """Export ``module`` to an ``onnx.ModelProto`` (see the module doc for the
    arguments). Raises :class:`GraphoptError` naming the module and, where the
    exporter says, the op, with the exporter's message attached.

    >>> proto = torch_to_onnx(torch.nn.ReLU(), torch.randn(2, 3))   # doctest: +SKIP
    """
    torch = _require_torch()
    if exporter not in EXPORTERS:
        raise GraphoptError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    if not isinstance(module, torch.nn.Module):
        raise GraphoptError(f"from_torch needs a torch.nn.Module, got {type(module).__name__}")

    # keyword names call the module; ``names`` name the ONNX inputs (input_names may rename them)
    keyword: list[str] | None = [str(k) for k in example_inputs] if isinstance(example_inputs, Mapping) else None
    if keyword is not None:
        names = list(keyword)
        args = tuple(example_inputs.values())
    else:
        args = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
        names = list(input_names) if input_names else _default_input_names(module, len(args))
    if input_names is not None:
        if len(input_names) != len(args):
            raise GraphoptError(f"{len(input_names)} input_names for {len(args)} example inputs")
        names = list(input_names)
    for n, a in zip(names, args):
        if not isinstance(a, torch.Tensor):
            raise GraphoptError(f"example input {n!r} is a {type(a).__name__}; from_torch takes tensors")

    was_training = module.training
    try:
        return _export_eval(torch, module, args, names, keyword, dynamic_shapes, output_names, opset, exporter)
    finally:
        module.train(was_training)  # export must not change the caller's module


def _export_eval(torch: Any, module: Any, args: tuple, names: list[str], keyword: list[str] | None,
                 dynamic_shapes: Any,
                 output_names: Sequence[str] | None, opset: int, exporter: str) -> Any:
    module.eval()
    # The adapter must be in eval mode too: the TorchScript exporter puts the
    # exported module in eval for tracing and afterwards restores the mode it
    # found *recursively*, which would leave a fresh (training) adapter's inner
    # module in training mode (BatchNorm then uses batch statistics).
    adapter = _make_adapter(torch, module, keyword).eval()
    try:
        with torch.no_grad():
            sample = module(**dict(zip(keyword, args))) if keyword is not None else module(*args)
    except Exception as e:  # noqa: BLE001
        raise GraphoptError(f"{_module_name(module)} fails on the example inputs: {type(e).__name__}: {e}") from e
    flat, keys = _flatten_outputs(sample)
    if output_names is not None:
        outs = list(output_names)
    elif keys is not None and len(keys) == len(flat):
        outs = keys
    else:
        outs = ["output"] if len(flat) == 1 else [f"output_{i}" for i in range(len(flat))]

    order = {"auto": ("torchscript", "dynamo"), "dynamo": ("dynamo",), "torchscript": ("torchscript",)}[exporter]
    errors: list[tuple[str, BaseException]] = []
    for which in order:
        fn = _export_dynamo if which == "dynamo" else _export_torchscript
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # exporter deprecation chatter; failures raise
                proto = fn(torch, adapter, args, names, outs, dynamic_shapes, opset)
        except GraphoptError:
            raise
        except Exception as e:  # noqa: BLE001 - exporters raise many types
            errors.append((which, e))
            if which != order[-1]:
                logger.warning("the %s exporter failed on %s (%s: %s); falling back to the %s exporter", which,
                               _module_name(module), type(e).__name__, str(e).splitlines()[0][:200] if str(e) else "",
                               order[-1])
            continue
        if errors:
            logger.info("exported %s with the %s exporter", _module_name(module), which)
        got = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), opset)
        if got != opset:
            # the dynamo exporter emits opset >= 18 and down-converts best effort
            logger.warning("%s exported at opset %d (asked for %d): the %s exporter could not convert it",
                           _module_name(module), got, opset, which)
        return proto
    detail = "\n".join(f"--- {w} exporter: {type(e).__name__}: {e}" for w, e in errors)
    op = next((h for h in (_op_hint(str(e)) for _, e in errors) if h), "")
    raise GraphoptError(f"cannot export {_module_name(module)} to ONNX"
                        + (f": unsupported op {op}" if op else "") + f"\n{detail}") from errors[-1][1]


def from_torch(module: Any, example_inputs: Any, *, dynamic_shapes: Any = None,
               input_names: Sequence[str] | None = None, output_names: Sequence[str] | None = None,
               opset: int = 17, exporter: str = "auto") -> Model:
    """Import a ``torch.nn.Module`` into graphopt through torch's ONNX exporter.

    >>> import torch, graphopt
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU())
    >>> m = graphopt.from_torch(net, torch.randn(1, 3, 32, 32), input_names=["image"],
    ...                         dynamic_shapes={"image": {0: "batch"}})   # doctest: +SKIP
    >>> # transformers models: pass a dict so they are called by keyword
    >>> m = graphopt.from_torch(bert, {"input_ids": ids, "attention_mask": mask})   # doctest: +SKIP
    """
    from .onnx_import import from_onnx

    proto = torch_to_onnx(module, example_inputs, dynamic_shapes=dynamic_shapes, input_names=input_names,
                          output_names=output_names, opset=opset, exporter=exporter)
    return from_onnx(proto, source=f"<torch {_module_name(module)}>")
