"""Native int4 (MatMulNBits) kernel vs onnxruntime's MatMulNBits and graphopt's fp32 GEMM, one thread.

    python benchmarks/int4_kernel.py

For each LLaMA-1B projection shape and 1 / 16 rows, the peers run interleaved in one process;
each figure is the minimum CPU time (process_time) of 20 calls after a warm-up, which a shared,
loaded machine disturbs far less than wall time. Weights are random, block 32, symmetric.
graphopt int4 runs its default (int8 activations, VNNI) and, with ``accuracy_level=1`` on the
node, its fp32 paths; onnxruntime runs its default (fp32 compute) and ``accuracy_level=4`` (int8).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import helper, numpy_helper

import graphopt

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from kernel_tests.test_int4 import _case  # noqa: E402  (the MatMulNBits model builder of the kernel tests)

SHAPES = [(2048, 2048), (2048, 11264), (5632, 2048)]  # q|k|v-sized, packed gate|up, down


def _cpu_ms(f, n: int = 20) -> float:
    f()
    ts = []
    for _ in range(n):
        time.sleep(0.15 / n)
        t0 = time.process_time()
        f()
        ts.append(time.process_time() - t0)
    return 1e3 * min(ts)


def main() -> int:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    print("| K x N | rows | graphopt int4 (int8 act.) | graphopt int4 (fp32 act.) | onnxruntime MatMulNBits "
          "| onnxruntime MatMulNBits accuracy_level 4 | graphopt fp32 |\n|---|---|---|---|---|---|---|")
    for k, n in SHAPES:
        mp, w, _ = _case(k, n, 32, False, False, 0)
        mp1 = _case(k, n, 32, False, False, 0, accuracy_level=1)[0]
        mp4 = _case(k, n, 32, False, False, 0, accuracy_level=4)[0]
        g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "fp32",
                              [helper.make_tensor_value_info("x", 1, ["m", k])],
                              [helper.make_tensor_value_info("y", 1, ["m", n])],
                              [numpy_helper.from_array(np.ascontiguousarray(w), "w")])
        fp = graphopt.compile(graphopt.from_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])),
                              num_threads=1)
        q4 = graphopt.compile(graphopt.from_onnx(mp), num_threads=1)
        q4f = graphopt.compile(graphopt.from_onnx(mp1), num_threads=1)
        ref = ort.InferenceSession(mp.SerializeToString(), so, providers=["CPUExecutionProvider"])
        ref4 = ort.InferenceSession(mp4.SerializeToString(), so, providers=["CPUExecutionProvider"])
        for m in (1, 4, 16):
            x = np.random.default_rng(0).standard_normal((m, k)).astype(np.float32)
            r = [_cpu_ms(lambda: q4.run({"x": x})), _cpu_ms(lambda: q4f.run({"x": x})),
                 _cpu_ms(lambda: ref.run(None, {"x": x})), _cpu_ms(lambda: ref4.run(None, {"x": x})),
                 _cpu_ms(lambda: fp.run({"x": x}))]
            print(f"| {k} x {n} | {m} | " + " | ".join(f"{v:.2f} ms" for v in r) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
