"""End-to-end model benchmark (same as ``graphopt bench``): graphopt native vs onnxruntime,
OpenVINO and PyTorch on MiniLM / DistilBERT.

    python benchmarks/models.py                 # MiniLM, batch 1 and 8, 1 and all threads
    python benchmarks/models.py distilbert --out out/bench-distilbert
"""

from __future__ import annotations

import sys

from graphopt.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
