"""The one onnxruntime session helper: every place that runs a model in onnxruntime goes through here.

Sessions are made on the CPU provider with onnxruntime's own log noise off; by default with
its graph rewrites off too, so the graph runs as written (what a comparison needs).

>>> sess = ort_session("model.onnx")                         # doctest: +SKIP
>>> outs = run_ort("model.onnx", {"x": x})                   # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .errors import GraphoptError

__all__ = ["ort_session", "run_ort", "session_options"]


def session_options(*, optimize: bool | str = False, threads: int | None = None) -> Any:
    """``onnxruntime.SessionOptions``: log severity 3; ``optimize`` False (rewrites off),
    True (all rewrites) or ``"basic"``; ``threads`` sets intra-op threads."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if optimize is False:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    elif optimize == "basic":
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    if threads is not None:
        so.intra_op_num_threads = int(threads)
    return so


def _payload(model: Any) -> str | bytes:
    if isinstance(model, (str, os.PathLike)):
        return str(Path(model))
    if isinstance(model, bytes):
        return model
    if hasattr(model, "SerializeToString"):  # onnx.ModelProto
        return model.SerializeToString()
    from .ir import Graph, Model

    if isinstance(model, (Model, Graph)):
        from .pm.instruments import _default_export

        return _default_export(model if isinstance(model, Model) else Model(model)).SerializeToString()
    raise GraphoptError(f"cannot run a {type(model).__name__} in onnxruntime")


def ort_session(model: Any, *, optimize: bool | str = False, threads: int | None = None,
                options: Any = None) -> Any:
    """An ``onnxruntime.InferenceSession`` for a path, bytes, an ``onnx.ModelProto`` or a graphopt Model
    (graphopt-domain fused ops are mapped to onnxruntime ops on a copy first).

    A model onnxruntime cannot load raises :class:`GraphoptError` with onnxruntime's reason.
    """
    import onnxruntime as ort

    so = options if options is not None else session_options(optimize=optimize, threads=threads)
    try:
        return ort.InferenceSession(_payload(model), so, providers=["CPUExecutionProvider"])
    except GraphoptError:
        raise
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise GraphoptError(f"onnxruntime cannot load the model: {str(e).splitlines()[0]}") from e


def run_ort(model: Any, feeds: Mapping[str, np.ndarray], *, optimize: bool | str = False,
            threads: int | None = None) -> list[np.ndarray]:
    """Run ``model`` once in onnxruntime on ``feeds`` (feeds it has no input for are dropped)."""
    sess = model if hasattr(model, "get_inputs") else ort_session(model, optimize=optimize, threads=threads)
    names = {i.name for i in sess.get_inputs()}
    return sess.run(None, {k: v for k, v in feeds.items() if k in names})
