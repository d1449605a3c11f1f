"""Steady-state MiniLM fp32 of the graphopt installed in this interpreter: compile time, then batch 1
and 8 (seq 128) at 1 and 2 threads, median wall and min CPU time of 25 / 10 runs; one JSON line.

For an A/B of two builds, run it alternately from each build's venv under the bench lock:

    flock /work/bench.lock sh -c 'for i in 1 2; do venv-a/bin/python benchmarks/minilm_steady.py;
                                                    venv-b/bin/python benchmarks/minilm_steady.py; done'
"""

from __future__ import annotations

import json
import time

import numpy as np

import graphopt
from graphopt.bench.models import _feeds, _spec


def main() -> None:
    spec = _spec("minilm")
    res: dict = {"graphopt": graphopt.__file__}
    for th in (1, 2):
        t0 = time.perf_counter()
        sess = graphopt.compile(spec.path, precision="fp32", num_threads=th)
        res[f"compile_t{th}_s"] = round(time.perf_counter() - t0, 3)
        for b in (1, 8):
            f = _feeds(spec, b, 128)
            for _ in range(3):
                sess.run(f)
            wall, cpu = [], []
            for _ in range(25 if b == 1 else 10):
                time.sleep(0.02)
                t, c = time.perf_counter(), time.process_time()
                sess.run(f)
                wall.append(time.perf_counter() - t)
                cpu.append(time.process_time() - c)
            res[f"b{b}_t{th}"] = {"median_ms": round(1e3 * float(np.median(wall)), 2),
                                  "min_cpu_ms": round(1e3 * min(cpu), 2)}
    print(json.dumps(res))


if __name__ == "__main__":
    main()
