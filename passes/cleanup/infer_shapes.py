"""infer-shapes: fill in value types (onnx inference + graphopt's shape rules).

Other cleanup rules (no-op Reshape/Cast/Expand, ...) need types; running this
first lets them fire on models exported without value_info.
"""

from __future__ import annotations

from graphopt.ir import Model
from graphopt.pm import Pass, PassContext, PassResult, register_pass

__all__ = ["InferShapes"]


@register_pass
class InferShapes(Pass):
    """Refine ``Value.type`` where inference knows more. Only types change,
    never the computation; ``modified`` says whether any type did."""

    name = "infer-shapes"
    description = "infer value dtypes and shapes (onnx inference + registered rules)"

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        from graphopt.io import infer_shapes

        before = [v.type for n in model.graph.walk() for v in n.outputs]
        infer_shapes(model)
        after = [v.type for n in model.graph.walk() for v in n.outputs]
        changed = sum(a != b for a, b in zip(before, after))
        return PassResult(bool(changed), {"typed": changed} if changed else {})
