"""``graphopt.train`` (the ``torch`` extra): distillation and quantization-aware training whose
results come back to graphopt as ordinary ONNX (fp32, or QDQ int8 that the native runtime runs).

- :func:`distill` -- teacher -> student, KL on logits at a temperature plus hidden-state MSE
- :func:`drop_layers`, :func:`student_from_pruned`, :func:`prune_torch` -- students
- :func:`qat` -- fake-quant from a :class:`graphopt.QuantConfig`, straight-through estimator
- :func:`export_onnx` -- the trained model as ONNX (QDQ for a QAT model)

Every run shows progress (a bar on a terminal, log lines otherwise) and, given a checkpoint
path, can be interrupted and resumed.
"""

from ._loop import TrainResult
from .distill import DistillConfig, default_layer_map, distill, teacher_outputs
from .export import export_onnx
from .qat import calibrate_qat, prepare_qat, qat
from .students import drop_layers, layer_list, prune_torch, student_from_pruned

__all__ = ["distill", "teacher_outputs", "DistillConfig", "default_layer_map", "drop_layers", "layer_list", "prune_torch",
           "student_from_pruned", "export_onnx", "TrainResult", "qat", "prepare_qat", "calibrate_qat"]
