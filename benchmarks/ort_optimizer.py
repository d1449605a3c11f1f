"""graphopt O2 vs onnxruntime's transformer optimizer, side by side in onnxruntime.

For all-MiniLM-L6-v2 (real weights) and DistilBERT-base (random weights), three
ONNX files are timed in onnxruntime (ORT_ENABLE_ALL, CPU) at batch 1 and 8,
sequence 128, on the shipped English sentences: the original torch export,
``onnxruntime.transformers.optimizer.optimize_model(model_type="bert")``'s
output, and graphopt's O2 output lowered to onnxruntime ops. Systems are
interleaved (a block of runs each, ~150 ms pause before each block); medians
and ratios are printed and written to ``OUT/results.json`` with node counts.

    python benchmarks/ort_optimizer.py --out out/bench-ort
    python benchmarks/ort_optimizer.py --quick --models minilm

The implementation is ``graphopt.cli.bench_ort`` (also ``graphopt bench-ort``).
"""

import sys

from graphopt.cli.bench_ort import main

if __name__ == "__main__":
    sys.exit(main())
