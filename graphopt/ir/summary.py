"""A model summary: interface, op histogram, parameters by dtype."""

from __future__ import annotations

from typing import Any

from ._core import Model

__all__ = ["summarize", "format_summary"]


def summarize(model: Model) -> dict[str, Any]:
    """Facts about ``model`` as plain data (what ``graphopt inspect --json`` prints)."""
    g = model.graph
    params: dict[str, dict[str, int]] = {}
    for v in g.initializers.values():
        key = v.dtype.short if v.dtype is not None else "?"
        p = params.setdefault(key, {"tensors": 0, "elements": 0, "bytes": 0})
        p["tensors"] += 1
        p["elements"] += int(v.const.size)
        p["bytes"] += int(v.const.nbytes)
    io = lambda vs: [{"name": v.name, "type": str(v.type) if v.type is not None else "?"} for v in vs]  # noqa: E731
    input_ids = {id(v) for v in g.inputs}
    nodes_total = sum(1 for _ in g.walk())
    return {
        "graph": g.name,
        "ir_version": model.ir_version,
        "opsets": {d or "ai.onnx": v for d, v in sorted(model.opset_imports.items())},
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "inputs": io([v for v in g.inputs if not v.is_initializer]),
        "outputs": io(g.outputs),
        "nodes": len(g),
        "nodes_including_subgraphs": nodes_total,
        "op_counts": g.op_counts(),
        "initializers": sum(1 for v in g.initializers.values() if id(v) not in input_ids),
        "parameters": sum(p["elements"] for p in params.values()),
        "parameter_bytes": sum(p["bytes"] for p in params.values()),
        "parameters_by_dtype": params,
    }


def format_summary(s: dict[str, Any]) -> str:
    lines = [f"graph {s['graph']!r}  ir_version={s['ir_version']}  opsets="
             + ", ".join(f"{d}:{v}" for d, v in s["opsets"].items())]
    lines.append("inputs:")
    lines += [f"  {v['name']}: {v['type']}" for v in s["inputs"]]
    lines.append("outputs:")
    lines += [f"  {v['name']}: {v['type']}" for v in s["outputs"]]
    lines.append(f"nodes: {s['nodes']} ({s['nodes_including_subgraphs']} with subgraphs)")
    for op, n in s["op_counts"].items():
        lines.append(f"  {op:44s} {n:6d}")
    lines.append(f"parameters: {s['parameters']:,} ({s['parameter_bytes'] / 2**20:.2f} MiB)")
    for dt, p in s["parameters_by_dtype"].items():
        lines.append(f"  {dt:6s} {p['tensors']:5d} tensors {p['elements']:14,d} elements {p['bytes'] / 2**20:10.2f} MiB")
    return "\n".join(lines)


