"""Other libraries' noise is filtered at our call sites, in scope only."""

from __future__ import annotations

import logging
import warnings

from graphopt._quiet import quiet


def test_onnxruntime_preprocessing_hint_is_dropped_inside_quiet_only(caplog):
    hint = "Please consider to run pre-processing before quantization. Refer to example: ..."
    with caplog.at_level(logging.WARNING):
        with quiet():
            logging.warning(hint)  # what onnxruntime.quantization does (root logger)
            logging.getLogger("graphopt.x").warning("ours stays")
        assert hint not in caplog.text and "ours stays" in caplog.text
        logging.warning(hint)
        assert hint in caplog.text  # outside the block nothing is filtered


def test_deprecation_warnings_are_silenced_in_scope_and_filters_restored():
    before = list(warnings.filters)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet():
            warnings.warn("old api", DeprecationWarning, stacklevel=1)
            warnings.warn("soon gone", FutureWarning, stacklevel=1)
        assert not caught
    assert warnings.filters == before
