"""Pass infrastructure: the Pass contract, context, registry, manager, instruments and pipelines."""

from .context import PassContext, register_config
from .instruments import (CheckUnmodified, DumpIR, Instrument, NumericGuard, NumericMismatch, PassInfo, PassRecord, PrintIR, Reproducer,
                          Stats, Timing, Verify)
from .manager import Fixpoint, PassManager, PipelineResult, functional
from .pass_ import Pass, PassResult
from .pipeline import format_pipeline, parse_pipeline, pipeline_for_level, preset_text, presets, register_preset
from .registry import get_pass, register_pass, registered_passes

__all__ = ["Pass", "PassResult", "PassContext", "register_config", "register_pass", "get_pass",
           "registered_passes", "PassManager", "Fixpoint", "PipelineResult", "Instrument", "PassInfo",
           "PassRecord", "Reproducer", "CheckUnmodified", "Stats", "functional", "Timing", "Verify", "DumpIR", "PrintIR", "NumericGuard", "NumericMismatch",
           "parse_pipeline", "format_pipeline", "pipeline_for_level", "register_preset", "presets", "preset_text"]
