"""Fixtures for tests/tracks (builders in tracks_helpers.py)."""

from __future__ import annotations

import pytest
from tracks_helpers import Run, make_run


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here on one torch thread (tests/conftest.py::one_thread)."""


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory, yeast_reference) -> Run:
    return make_run(tmp_path_factory.mktemp("cnn"), "cnn", yeast_reference)
