"""Fixtures for tests/model: tiny random models of every supported family, saved once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_lms import MAKERS


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {name: make(root / name) for name, make in MAKERS.items()}
