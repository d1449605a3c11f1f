"""onnx's op schemas as the IR verifier's arity source (installed on import of graphopt.io)."""

from __future__ import annotations

from functools import lru_cache

import onnx.defs

from ..ir.verify import OpArity, set_schema_provider

__all__ = ["onnx_arity", "install"]


@lru_cache(maxsize=4096)
def onnx_arity(domain: str, op_type: str, version: int | None) -> OpArity | None:
    """Arity of ``op_type`` in ``domain`` at ``version`` (newest if None); None if onnx has no schema."""
    try:
        if version is None:
            schema = onnx.defs.get_schema(op_type, domain)
        else:
            schema = onnx.defs.get_schema(op_type, version, domain)
    except onnx.defs.SchemaError:
        return None
    required = frozenset(name for name, a in schema.attributes.items() if a.required)
    return OpArity(schema.min_input, schema.max_input, schema.min_output, schema.max_output, required)


def install() -> None:
    set_schema_provider(onnx_arity)
