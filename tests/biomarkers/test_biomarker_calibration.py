import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import stats

from genosae.biomarkers import cv_classifier, permutation_null
from genosae.biomarkers.calibration import _mwu_from_ranks, _tie_term


def _null(n=30, f=200, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.exponential(1.0, (n, f)) * (rng.random((n, f)) < 0.5)
    obs = pd.DataFrame({"condition": ["case", "control"] * (n // 2)}, index=[f"u{i}" for i in range(n)])
    return AnnData(X=x, obs=obs, layers={"mean": x})


def test_permutation_p_matches_scipy_asymptotic():
    ad = _null(f=20)
    x = ad.layers["mean"]
    lab = (ad.obs["condition"] == "case").to_numpy()
    ranks = stats.rankdata(x, axis=0)
    u, p = _mwu_from_ranks(ranks, lab[None].astype(float), _tie_term(ranks))
    ref = stats.mannwhitneyu(x[lab], x[~lab], axis=0, method="asymptotic")
    np.testing.assert_allclose(u[0], ref.statistic)
    np.testing.assert_allclose(p[0], ref.pvalue, rtol=1e-10)


def test_fpr_under_permuted_labels_is_at_most_alpha():
    res = permutation_null(_null(), n_permutations=200, alpha=0.05, seed=1)
    assert res.observed_fpr <= 0.05
    assert res.any_rejection_rate <= 0.1  # BH controls FWER under the complete null (≈ α)
    assert 0 < res.empirical_p.min() and res.empirical_p.max() <= 1
    # on null data empirical p-values are ~uniform
    assert 0.35 < res.empirical_p.mean() < 0.65
    again = permutation_null(_null(), n_permutations=200, alpha=0.05, seed=1)
    np.testing.assert_array_equal(res.empirical_p, again.empirical_p)


def test_planted_feature_has_small_empirical_p():
    ad = _null()
    ad.layers["mean"][ad.obs["condition"] == "case", 3] += 5
    res = permutation_null(ad, n_permutations=99, seed=0)
    assert res.empirical_p[3] == 0.01 and res.empirical_p_maxstat[3] == 0.01
    assert np.median(res.empirical_p_maxstat) > 0.5


def test_cv_classifier_signal_and_null():
    ad = _null(n=40, f=50)
    y = (ad.obs["condition"] == "case").to_numpy()
    x = ad.layers["mean"].copy()
    x[y, 4] += 3
    good = cv_classifier(x, y, 5, feature_names=[f"f{i}" for i in range(50)])
    assert good.auroc > 0.9 and good.selected[0] == "f4"
    null = cv_classifier(ad.layers["mean"], y, 5, penalty="l2")
    assert null.auroc < 0.8
