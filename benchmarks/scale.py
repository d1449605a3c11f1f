"""Scale benchmark: time and peak memory of each step against model size (issue 16).

The same as ``graphopt bench --scale`` (graphopt.bench.scale_suite), with the results going
to benchmarks/results/scale by default:

    python benchmarks/scale.py --sizes 0.1,1 --steps gptq,rtn,o2,load,save,compile
    python benchmarks/scale.py --sizes 0.1,1,4 --steps load,o2,rtn,save,compile,ort,ort-nbits,nncf
    python benchmarks/scale.py --llama --sizes ""          # the ~1.1B LLaMA-config decoder only

Peak memory is the growth of VmHWM over the child's baseline after imports; "x model"
divides it by the model's bytes. Keep other big jobs off the machine while it runs.
"""

from __future__ import annotations

import sys

from graphopt.cli import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if not any(a in ("-o", "--out", "--output") or a.startswith(("--out=", "--output=")) for a in argv):
        argv += ["--out", "benchmarks/results/scale"]
    sys.exit(main(["bench", "--scale", *argv]))
