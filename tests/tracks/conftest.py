"""Fixtures for tests/tracks (builders in tracks_helpers.py)."""

from __future__ import annotations

import pytest
import torch
from tracks_helpers import Run, make_run


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory, yeast_reference) -> Run:
    return make_run(tmp_path_factory.mktemp("cnn"), "cnn", yeast_reference)
