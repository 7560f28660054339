"""The one Benjamini–Hochberg (genosae.multitest) against scipy and statsmodels."""

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from genosae.multitest import benjamini_hochberg


def test_bh_equals_scipy_and_statsmodels():
    rng = np.random.default_rng(0)
    p = np.concatenate([rng.random(500), rng.random(50) * 1e-4, [1.0, 0.0, 0.5, 0.5]])
    q = benjamini_hochberg(p)
    np.testing.assert_allclose(q, stats.false_discovery_control(p), rtol=1e-12)
    np.testing.assert_allclose(q, multipletests(p, method="fdr_bh")[1], rtol=1e-12)
    assert not np.allclose(q, p)  # it adjusts


def test_bh_families_along_an_axis_and_tested_masks():
    rng = np.random.default_rng(1)
    p = rng.random((3, 40)) ** 3
    q = benjamini_hochberg(p, axis=1)
    for row in range(3):
        np.testing.assert_allclose(q[row], stats.false_discovery_control(p[row]))
    np.testing.assert_allclose(benjamini_hochberg(p.T, axis=0), q.T)
    tested = rng.random(40) > 0.3
    q = benjamini_hochberg(p, axis=1, tested=tested[None, :])  # the same family in every row
    assert (q[:, ~tested] == 1).all()
    for row in range(3):
        np.testing.assert_allclose(q[row, tested], stats.false_discovery_control(p[row, tested]))
    per_row = rng.random((3, 40)) > 0.5  # a different family per row
    q = benjamini_hochberg(p, axis=1, tested=per_row)
    for row in range(3):
        np.testing.assert_allclose(q[row, per_row[row]], stats.false_discovery_control(p[row, per_row[row]]))
        assert (q[row, ~per_row[row]] == 1).all()


def test_bh_nan_policies():
    p = np.array([0.01, np.nan, 0.04, 0.03])
    omit = benjamini_hochberg(p)
    assert np.isnan(omit[1])
    np.testing.assert_allclose(omit[[0, 2, 3]], stats.false_discovery_control(p[[0, 2, 3]]))
    one = benjamini_hochberg(p, nan="one")
    np.testing.assert_allclose(one, stats.false_discovery_control(np.nan_to_num(p, nan=1.0)))
    assert benjamini_hochberg(np.zeros(0)).shape == (0,)
    with pytest.raises(ValueError, match="nan must be one of"):
        benjamini_hochberg(p, nan="drop")
