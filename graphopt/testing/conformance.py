"""The conformance harness now lives in :mod:`graphopt.conformance` (production tools use it);
re-exported here for tests."""

from ..conformance import *  # noqa: F403
from ..conformance import __all__  # noqa: F401
