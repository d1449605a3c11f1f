"""fork() while another thread is inside Session.run: the child's Session must still run.

Isolated in a subprocess (a deadlocked child must not hang pytest) with timeouts.
Before the fix the plan's mutex stayed locked in the child: 6 of 6 children hung.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import os, sys, threading, time, warnings
    import numpy as np
    from onnx import TensorProto as T, helper as h, numpy_helper as nh
    import graphopt

    warnings.simplefilter("ignore")
    rng = np.random.default_rng(0)
    w = nh.from_array(rng.standard_normal((256, 256)).astype(np.float32), "w")
    g = h.make_graph([h.make_node("MatMul", ["x", "w"], ["m"]), h.make_node("Relu", ["m"], ["y"])], "g",
                     [h.make_tensor_value_info("x", T.FLOAT, [64, 256])],
                     [h.make_tensor_value_info("y", T.FLOAT, [64, 256])], [w])
    sess = graphopt.compile(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]),
                            precision=sys.argv[1], num_threads=2)
    x = rng.standard_normal((64, 256)).astype(np.float32)
    want = sess.run({"x": x})[0]
    stop = False
    def spin():
        while not stop:
            sess.run({"x": x})
    t = threading.Thread(target=spin)
    t.start()
    hung = 0
    for _ in range(6):
        time.sleep(0.02)
        pid = os.fork()
        if pid == 0:  # child: one run, exact result
            ok = np.array_equal(sess.run({"x": x})[0], want)
            os._exit(0 if ok else 3)
        deadline = time.monotonic() + 15
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                assert os.waitstatus_to_exitcode(status) == 0, status
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                hung += 1
                break
            time.sleep(0.01)
    stop = True
    t.join()
    print("hung", hung)
    sys.exit(1 if hung else 0)
""")


def _run(precision: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT, precision], capture_output=True, text=True, timeout=120)


def test_fork_during_run_fp32() -> None:
    r = _run("fp32")
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]


def test_fork_during_run_int8() -> None:
    r = _run("int8")
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
