"""Post-training quantization: specs, observers, calibration, configuration, one-call API.

The rewrite passes live in ``graphopt.passes.quant`` (annotate, smoothquant,
insert-qdq, fold-qdq, quantize-dynamic, quantize-weight-only).

>>> from graphopt.quant import QuantConfig, quantize, calibrate
"""

from .api import QuantReport, prepare_batches, quantize
from .calibrate import CalibrationDataReader, CalibrationResult, calibrate, check_feeds, iter_batches
from .config import NodePlan, Override, QuantConfig
from .observers import ChannelAbsMaxObserver, HistogramObserver
from .specs import CALIB, CHANNEL_MAX, PRECISION, QPARAMS, QUANT_INPUTS, QParams, QType, QuantSpec

__all__ = ["quantize", "QuantReport", "prepare_batches", "calibrate", "CalibrationResult",
           "CalibrationDataReader", "check_feeds", "iter_batches", "QuantConfig", "Override", "NodePlan",
           "HistogramObserver", "ChannelAbsMaxObserver", "QType", "QuantSpec", "QParams", "QUANT_INPUTS",
           "CALIB", "CHANNEL_MAX", "QPARAMS", "PRECISION"]
