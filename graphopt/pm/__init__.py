"""Pass infrastructure: the Pass contract, context, registry, manager, instruments and pipelines.

>>> from graphopt.pm import PassManager, DumpIR
>>> result = PassManager.from_text("O1", instruments=[DumpIR("ir")])(model)   # doctest: +SKIP
>>> print(result.table())                                                     # doctest: +SKIP
"""

from .context import PassContext, register_config
from .instruments import (
    CheckUnmodified,
    DumpIR,
    Instrument,
    NumericGuard,
    NumericMismatch,
    PassInfo,
    PassRecord,
    PrintIR,
    Reproducer,
    Stats,
    Timing,
    Verify,
)
from .manager import Fixpoint, PassManager, PipelineResult, functional
from .pass_ import Pass, PassResult
from .pipeline import format_pipeline, parse_pipeline, pipeline_for_level, preset_text, presets, register_preset
from .registry import get_pass, register_pass, registered_passes

__all__ = [
    "Pass", "PassResult", "PassContext", "register_config", "register_pass", "get_pass", "registered_passes",
    "PassManager", "Fixpoint", "PipelineResult", "functional",
    "Instrument", "PassInfo", "PassRecord", "Timing", "Verify", "DumpIR", "PrintIR", "Stats", "NumericGuard",
    "NumericMismatch", "Reproducer", "CheckUnmodified",
    "parse_pipeline", "format_pipeline", "pipeline_for_level", "register_preset", "presets", "preset_text",
]
