"""QDQ files of one float ONNX model from each int8 route, for tests and benchmarks.

Routes: ``graphopt`` (``graphopt.quantize``, static, on the float file), ``graphopt-o2`` (the same
after O2), ``onnxruntime`` / ``onnxruntime-pt`` (``quantize_static``, QDQ format, per channel /
per tensor), ``nncf`` (``nncf.quantize`` on the ONNX model, transformer preset) and ``qat``
(graphopt.train's fake-quant Linear modules, exported; needs the torch module).

``attention=False`` (default) leaves the attention products (activation x activation MatMuls)
float in the onnxruntime and NNCF files and keeps the GEMM outputs unquantized: the file then
quantizes exactly what an int8 GEMM plan runs, so onnxruntime on the file is a reference for the
native plan. With ``attention=True`` the tools' defaults quantize those products too.

>>> path = route_file("onnxruntime", spec.path, workdir, calib)   # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ROUTES", "route_file", "attention_matmuls", "qat_file"]

ROUTES = ("graphopt", "graphopt-o2", "onnxruntime", "onnxruntime-pt", "nncf")


def attention_matmuls(model: Any) -> list[str]:
    """Names of the MatMul nodes of an ``onnx.ModelProto`` whose inputs are both computed
    (attention scores and context), which the onnxruntime/NNCF routes leave float by default."""
    inits = {i.name for i in model.graph.initializer}
    consts = {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in model.graph.node
            if n.op_type == "MatMul" and not any(i in inits or i in consts for i in n.input)]


def route_file(route: str, src: str | os.PathLike, workdir: str | os.PathLike,
               calib: Sequence[dict[str, np.ndarray]], *, attention: bool = False) -> Path:
    """Quantize the float ONNX file ``src`` by ``route`` with calibration batches ``calib``; the
    QDQ file is written under ``workdir`` (and reused when it exists)."""
    import onnx

    out = Path(workdir) / f"{Path(src).stem}-{route}{'-attn' if attention else ''}.onnx"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.onnx")
    if route in ("graphopt", "graphopt-o2"):
        import graphopt
        from graphopt.quant import QuantConfig, quantize

        m = graphopt.optimize(src, level="O2") if route == "graphopt-o2" else graphopt.load(src)
        quantize(m, QuantConfig(quantize_act_matmul=attention, embeddings=False), list(calib), progress=False)
        graphopt.save(m, tmp)
    elif route.startswith("onnxruntime"):
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

        class _Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.it = iter(calib)

            def get_next(self) -> dict[str, np.ndarray] | None:
                return next(self.it, None)

        kw: dict[str, Any] = {}
        if not attention:
            kw = {"op_types_to_quantize": ["MatMul"], "nodes_to_exclude": attention_matmuls(onnx.load(str(src))),
                  "extra_options": {"OpTypesToExcludeOutputQuantization": ["MatMul"]}}
        quantize_static(str(src), str(tmp), _Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=route == "onnxruntime", **kw)
    elif route == "nncf":
        import nncf

        model = onnx.load(str(src))
        ignored = nncf.IgnoredScope(names=attention_matmuls(model)) if not attention else None
        q = nncf.quantize(model, nncf.Dataset(list(calib)), model_type=nncf.ModelType.TRANSFORMER,
                          subset_size=max(1, len(calib)), ignored_scope=ignored)
        onnx.save(q, str(tmp))
    else:
        raise ValueError(f"unknown route {route!r}; one of {ROUTES} (qat: qat_file)")
    tmp.replace(out)
    return out


def qat_file(module: Any, path: str | os.PathLike, calib: Sequence[dict[str, np.ndarray]], *,
             output: str = "last_hidden_state") -> Path:
    """graphopt.train's QAT export of a torch ``module`` (fake-quant Linear modules, the activation
    ranges from ``calib``; no training steps: the export's form is what matters here)."""
    import torch

    from graphopt.quant import QuantConfig
    from graphopt.train import export_onnx, prepare_qat

    path = Path(path)
    if path.exists():
        return path

    class _Out(torch.nn.Module):  # the one output the float export has (no pooler)
        def __init__(self) -> None:
            super().__init__()
            self.m = module

        def forward(self, **kw: Any) -> Any:
            r = self.m(**kw)
            return getattr(r, output) if hasattr(r, output) else r[0]

    module = _Out()
    prepare_qat(module, QuantConfig())
    module.train()
    with torch.no_grad():
        for b in calib:
            module(**{k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in b.items()})
    module.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    return export_onnx(module, path, {k: v[:1] for k, v in calib[0].items()}, output_names=(output,))
