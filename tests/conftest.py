import os

import pytest
from hypothesis import settings

settings.register_profile("dev", max_examples=25, deadline=None)
settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def minilm_spec():
    """all-MiniLM-L6-v2 (real weights) exported to ONNX, cached across runs."""
    import torch  # noqa: F401 - installed with the suite's extras
    import transformers  # noqa: F401 - installed with the suite's extras
    from graphopt.models import minilm_onnx

    return minilm_onnx()
