"""Other libraries' noise stays out of our user's terminal -- scoped, at our call sites.

``with quiet():`` around a call into onnxruntime's quantizer, torch or OpenVINO drops, for
the duration of the block only: onnxruntime's "Please consider to run pre-processing before
quantization" hint (a root-logger warning about a step graphopt does not need), and
DeprecationWarning / FutureWarning raised inside those libraries. Nothing is filtered
globally, and graphopt's own warnings pass.

>>> with quiet():                       # doctest: +SKIP
...     quantize_dynamic(src, dst)
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["quiet"]

_THIRD_PARTY = r"(torch|onnxruntime|onnx|onnxscript|openvino|transformers|nncf)(\.|$)"
_HINTS = ("Please consider to run pre-processing before quantization",)
# Named loggers with their own handlers (a root filter never sees them), held at ERROR in the block:
# the dynamo exporter's "torchvision is not installed. Skipping torchvision::nms" lines.
_LOUD_LOGGERS = ("torch.onnx._internal.exporter._registration",)


class _DropHints(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not any(h in msg for h in _HINTS)


@contextmanager
def _no_bars_off_terminal() -> Iterator[None]:
    """Hugging Face progress bars ("Loading weights") only when stderr is a terminal."""
    if sys.stderr.isatty():
        yield
        return
    saved = os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS")
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # read when transformers is first imported
    restore = None
    if "transformers" in sys.modules:
        from transformers.utils import logging as tlog

        if tlog.is_progress_bar_enabled():
            tlog.disable_progress_bar()
            restore = tlog.enable_progress_bar
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)
        else:
            os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = saved
        if restore is not None:
            restore()


@contextmanager
def quiet() -> Iterator[None]:
    """Silence other libraries' deprecation warnings, onnxruntime's quantization hint and (off a
    terminal) Hugging Face progress bars in this block."""
    drop = _DropHints()
    root = logging.getLogger()
    root.addFilter(drop)
    loud = [logging.getLogger(n) for n in _LOUD_LOGGERS]
    levels = [lg.level for lg in loud]
    for lg in loud:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), _no_bars_off_terminal():
            # deprecations are usually attributed (stacklevel) to the caller, i.e. to us: drop them all
            # in this block; other libraries' UserWarnings only when raised inside those libraries
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", category=UserWarning, module=_THIRD_PARTY)
            yield
    finally:
        root.removeFilter(drop)
        for lg, level in zip(loud, levels):
            lg.setLevel(level)
