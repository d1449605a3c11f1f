"""Export one model for onnxruntime and for OpenVINO; each file is read back by its runtime.

    python examples/export_targets.py [OUT_DIR]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

import graphopt
from graphopt._ort import run_ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quickstart import mlp_onnx  # noqa: E402 - the example model


def main(out: Path) -> None:
    model = graphopt.load(mlp_onnx())
    onnx_path = graphopt.export(model, out / "mlp.O2.onnx", target="onnx", level="O2")
    x = {"x": np.ones((1, 32), np.float32)}
    print(f"{onnx_path}: onnxruntime output sum {run_ort(onnx_path, x)[0].sum():.4f}")
    try:
        xml = graphopt.export(model, out / "mlp.xml", target="openvino", precision="fp32")
    except graphopt.GraphoptError as e:  # without the openvino extra: a one-line install hint
        print(f"OpenVINO export skipped: {e}")
    else:
        print(f"{xml}: read back by openvino.Core")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()))
