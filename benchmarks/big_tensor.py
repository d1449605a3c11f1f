"""One tensor over 2 GB, saved, reloaded and run (issue #16).

Builds an embedding model whose single table is ``--gb`` GB of fp32 (default 2.5 GB:
305,176 x 2048, a vocabulary larger than any 2 GB protobuf can hold) as ONNX with external data,
written chunk by chunk so the build needs no copy of the table. Then, each step alone in a child
process (wall time and peak resident growth over the child's baseline, as in ``graphopt bench
--scale``):

- ``load+save``: ``graphopt.load`` and ``graphopt.save`` to a new file;
- ``reload+compile+run``: ``graphopt.load`` of the saved file, ``graphopt.compile`` (fp32) and one run;
- ``ort``: onnxruntime's session on the saved file and one run.

Both runs are checked against the table's rows read straight from the data file (the lookup is
exact), and the saved data file against the original byte for byte.

    python benchmarks/big_tensor.py --gb 2.5 --work /tmp/graphopt-big --out benchmarks/results/scale/big-tensor
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HIDDEN = 2048


def _ids(rows: int) -> np.ndarray:
    """Rows from the start, the middle and the end of the table (the last byte of the file included)."""
    return np.array([[0, 1, 7, rows // 3, rows // 2, (2 * rows) // 3, rows - 2, rows - 1]], dtype=np.int64)


def _rows(gb: float) -> int:
    return int(gb * 1e9) // (HIDDEN * 4)


def build(path: Path, gb: float) -> None:
    """``out = Gather(table, ids) * 2``, the table in ``path.data``, filled 64 MB at a time."""
    import onnx
    from onnx import TensorProto, helper

    rows = _rows(gb)
    data = path.with_name(path.name + ".data")
    mm = np.memmap(data, dtype=np.float32, mode="w+", shape=(rows, HIDDEN))
    rng = np.random.default_rng(0)
    step = (64 << 20) // (HIDDEN * 4)
    for i in range(0, rows, step):
        n = min(step, rows - i)
        mm[i:i + n] = rng.standard_normal((n, HIDDEN), dtype=np.float32)
    mm.flush()
    del mm
    t = TensorProto(name="table", data_type=TensorProto.FLOAT, dims=[rows, HIDDEN],
                    data_location=TensorProto.EXTERNAL)
    for k, v in {"location": data.name, "offset": "0", "length": str(rows * HIDDEN * 4)}.items():
        t.external_data.add(key=k, value=v)
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    g = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["rows"], axis=0), helper.make_node("Mul", ["rows", "two"], ["out"])],
        "big_tensor", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["b", "s"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["b", "s", HIDDEN])], initializer=[t, two])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save_model(m, path)  # the table is already external: the proto holds its reference only


def _expected(path: Path) -> np.ndarray:
    rows = _rows_of(path)
    mm = np.memmap(path.with_name(path.name + ".data"), dtype=np.float32, mode="r", shape=(rows, HIDDEN))
    return mm[_ids(rows)] * np.float32(2.0)


def _rows_of(path: Path) -> int:
    return os.path.getsize(path.with_name(path.name + ".data")) // (HIDDEN * 4)


def _child(step: str, src: Path, saved: Path) -> dict:
    import graphopt
    from graphopt.bench.scale import _status, peak_rss_mb, reset_peak  # the scale benchmark's VmRSS / VmHWM

    if step == "ort":
        import onnxruntime as ort
    base = _status("VmRSS")
    reset_peak()
    t0 = time.perf_counter()
    out = None
    if step == "load+save":
        graphopt.save(graphopt.load(src), saved)
    elif step == "reload+compile+run":
        out = graphopt.compile(graphopt.load(saved), "fp32").run({"ids": _ids(_rows_of(src))})[0]
    elif step == "ort":
        out = ort.InferenceSession(str(saved), providers=["CPUExecutionProvider"]).run(None, {"ids": _ids(_rows_of(src))})[0]
    secs = time.perf_counter() - t0
    peak = peak_rss_mb()
    res = {"step": step, "seconds": secs, "peak_growth_mb": peak - base}
    if out is not None:
        res["max_abs_err"] = float(np.abs(out - _expected(src)).max())
    return res


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(64 << 20):
            h.update(chunk)
    return h.hexdigest()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gb", type=float, default=2.5)
    p.add_argument("--work", default=os.environ.get("GRAPHOPT_SCALE_TMP", "/tmp/graphopt-big"))
    p.add_argument("--out", default="benchmarks/results/scale/big-tensor")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(_child(a.child[0], Path(a.child[1]), Path(a.child[2]))))
        return
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    src, saved = work / f"table_{a.gb}gb.onnx", work / f"table_{a.gb}gb_saved.onnx"
    if not src.exists() or _rows_of(src) != _rows(a.gb):
        t0 = time.perf_counter()
        build(src, a.gb)
        print(f"built {src} ({_rows(a.gb)} x {HIDDEN} fp32) in {time.perf_counter() - t0:.1f} s", flush=True)
    table_bytes = _rows(a.gb) * HIDDEN * 4
    results = []
    for step in ("load+save", "reload+compile+run", "ort"):
        r = subprocess.run([sys.executable, __file__, "--child", step, str(src), str(saved)],
                           capture_output=True, text=True, check=False)
        if r.returncode != 0:
            raise SystemExit(f"{step} failed:\n{r.stderr[-3000:]}")
        res = json.loads(r.stdout.strip().splitlines()[-1])
        res["x_model"] = res["peak_growth_mb"] * 2**20 / table_bytes
        results.append(res)
        err = f", max |err| {res['max_abs_err']:.1e}" if "max_abs_err" in res else ""
        print(f"{step:20s} {res['seconds']:7.2f} s  peak +{res['peak_growth_mb']:7.1f} MB ({res['x_model']:.2f}x){err}",
              flush=True)
    data_files = [f for f in work.glob(saved.stem + "*") if f != saved and f.is_file()]
    same = len(data_files) == 1 and _sha(data_files[0]) == _sha(Path(str(src) + ".data"))
    summary = {"table": [_rows(a.gb), HIDDEN], "table_bytes": table_bytes, "steps": results,
               "saved_files": sorted(x.name for x in work.glob(saved.name + "*")),
               "saved_data_identical": same, "load_avg": os.getloadavg()[0],
               "run": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    print(f"saved data file identical to the original: {same}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "big_tensor.json").write_text(json.dumps(summary, indent=1))
    print(f"wrote {out / 'big_tensor.json'}")


if __name__ == "__main__":
    main()
