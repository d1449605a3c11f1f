"""Producer cones of small integer/bool computations (masks, position ids), and
their evaluation in onnxruntime on probe inputs: how the plain fusion passes
check a semantic fact about a subgraph whose exact form varies by exporter."""

from __future__ import annotations

import numpy as np

from graphopt.io import to_onnx
from graphopt.ir import Graph, Model, Node, Value
from graphopt.pattern import const_value

__all__ = ["cone", "evaluate", "probe_feed", "MAX_CONE"]

MAX_CONE = 256  # mask/position subgraphs are tens of nodes; a bigger cone is not one of them


def cone(mask: Value) -> tuple[list[Node], list[Value], list[Value]] | None:
    """(nodes, graph inputs read as data, values read only through Shape) of ``mask``'s producer cone."""
    nodes: dict[Node, None] = {}
    data_inputs: dict[Value, None] = {}
    shape_sources: dict[Value, None] = {}
    work = [mask]
    seen: set[int] = set()
    while work:
        v = work.pop()
        if id(v) in seen:
            continue
        seen.add(id(v))
        if const_value(v) is not None and v.producer() is None:
            continue
        p = v.producer()
        if p is None:
            if not v.is_graph_input:
                return None
            data_inputs[v] = None
            continue
        if p.subgraphs() or p.domain not in ("", "ai.onnx"):
            return None
        nodes[p] = None
        if len(nodes) > MAX_CONE:
            return None
        src = p.inputs[0] if p.op_type == "Shape" else None
        if src is not None and (src.producer() is None or src.dtype is None or src.dtype.is_float):
            shape_sources[src] = None  # only the shape of an input or of an activation is read
            continue
        # the shape of a computed integer/bool index tensor (dynamo's mask broadcasting): compute it
        work.extend(i for i in p.inputs if i is not None)
    computed = {id(o) for n in nodes for o in n.outputs}
    shape_only = [v for v in shape_sources if id(v) not in computed and v not in data_inputs]
    return list(nodes), list(data_inputs), shape_only


def probe_feed(v: Value, b: int, s: int) -> np.ndarray | None:
    """Zeros shaped like ``v`` for batch ``b`` and sequence ``s``, static dims kept: dims 0 and 1 of
    [B, S, ...]; or, when ``v``'s dims are named, the name of dim 0 is the batch and one other name
    the sequence wherever it appears ([B, N, S, d] heads from a reloaded file)."""
    shape = v.shape
    if shape is None or len(shape) < 2:
        return None
    try:
        dt = v.dtype.numpy
    except (TypeError, AttributeError):
        return None
    if all(isinstance(d, int) for d in shape[2:]):
        return np.zeros((b, s, *shape[2:]), dt)
    names = {d for d in shape[1:] if not isinstance(d, int)}
    if not isinstance(shape[0], str) or not shape[0] or len(names) != 1 or shape[0] in names or "" in names:
        return None
    return np.zeros(tuple(d if isinstance(d, int) else (b if d == shape[0] else s) for d in shape), dt)


def evaluate(model: Model | Graph, nodes: list[Node], mask: Value, feeds_for: dict[Value, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort
    from onnx import helper

    g = model.graph if isinstance(model, Model) else model
    big = frozenset(n for n, v in g.initializers.items() if v.const is not None and v.const.nbytes > 4096)
    full = to_onnx(model, omit_initializer_data=big, value_info=False)
    want = {o.name for n in nodes for o in n.outputs}
    sub_nodes = [n for n in full.graph.node if any(o in want for o in n.output)]
    needed = {i for n in sub_nodes for i in n.input if i} - want
    inits = [t for t in full.graph.initializer if t.name in needed]
    inputs = [helper.make_tensor_value_info(v.name, v.dtype.value, None) for v in feeds_for]
    out = helper.make_tensor_value_info(mask.name, mask.dtype.value if mask.dtype is not None else 1, None)
    sub = helper.make_model(helper.make_graph(sub_nodes, "mask_cone", inputs, [out], inits),
                            opset_imports=list(full.opset_import))
    sub.ir_version = full.ir_version
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(sub.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {v.name: a for v, a in feeds_for.items()})[0]


