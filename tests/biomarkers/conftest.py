"""Synthetic cohort activations with one planted feature (no model needed)."""

from __future__ import annotations

import pytest

from genosae.biomarkers.simulate import SyntheticActivations, synthetic_activations


@pytest.fixture
def cohort() -> SyntheticActivations:
    return synthetic_activations(seed=0)
