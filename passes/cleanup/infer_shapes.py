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
    never the computation, so it reports ``modified=False``."""

    name = "infer-shapes"
    description = "infer value dtypes and shapes (onnx inference + registered rules)"

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        from graphopt.io import infer_shapes

        infer_shapes(model)
        return PassResult(False)
