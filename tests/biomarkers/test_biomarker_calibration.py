import numpy as np
import pandas as pd
import pytest
from anndata import AnnData
from scipy import stats

from genosae.biomarkers import cv_classifier, permutation_null
from genosae.biomarkers.calibration import (
    _mwu_from_ranks,
    _tie_term,
    calibration_text,
    clopper_pearson,
    mann_whitney_null,
)
from genosae.biomarkers.stats import mann_whitney, mwu_exact_pvalues


def _null(n=30, f=200, seed=0, ties=True):
    rng = np.random.default_rng(seed)
    x = rng.exponential(1.0, (n, f))
    if ties:
        x = x * (rng.random((n, f)) < 0.5)
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


@pytest.mark.parametrize(("n1", "n2"), [(1, 1), (3, 5), (8, 8), (2, 30), (12, 8)])
def test_exact_null_table_matches_scipy_exact(n1, n2):
    rng = np.random.default_rng(n1 * 100 + n2)
    x, y = rng.normal(size=(n1, 3000)), rng.normal(size=(n2, 3000))
    ref = stats.mannwhitneyu(x, y, axis=0, method="exact")
    table = mwu_exact_pvalues(n1, n2)
    assert table.shape == (n1 * n2 + 1,)
    np.testing.assert_allclose(table[ref.statistic.astype(int)], ref.pvalue, rtol=1e-12)


def test_permuted_p_uses_the_same_test_as_the_observed_p():
    # small groups: scipy's "auto" is exact for columns without ties and asymptotic with them; the
    # permuted p-values must follow the same rule per feature, or the null is of another test
    rng = np.random.default_rng(4)
    x = rng.normal(size=(13, 6))
    x[:, 0] = np.round(x[:, 0])  # ties → asymptotic
    lab = np.zeros(13, bool)
    lab[:6] = True
    _, p_obs = mann_whitney(x[lab], x[~lab])
    _, p_null = mann_whitney_null(x, lab[None])
    np.testing.assert_allclose(p_null[0], p_obs, rtol=1e-12)
    perms = np.array([rng.permutation(lab) for _ in range(30)])
    u, p = mann_whitney_null(x, perms)
    for i in range(0, 30, 7):
        ref = [stats.mannwhitneyu(x[perms[i], j], x[~perms[i], j], alternative="two-sided") for j in range(6)]
        np.testing.assert_allclose(p[i], [r.pvalue for r in ref], rtol=1e-12)
        np.testing.assert_allclose(u[i], [r.statistic for r in ref])
    # the exact columns differ from the asymptotic approximation, so the rule matters here
    ranks = stats.rankdata(x, axis=0)
    _, p_asym = _mwu_from_ranks(ranks, perms.astype(float), _tie_term(ranks))
    assert np.abs(p_asym[:, 1:] - p[:, 1:]).max() > 1e-3
    np.testing.assert_allclose(p_asym[:, 0], p[:, 0])
    res = permutation_null(AnnData(X=x, obs=pd.DataFrame(
        {"condition": np.where(lab, "case", "control")}, index=[f"u{i}" for i in range(13)]),
        layers={"mean": x}), n_permutations=20)
    assert res.n_exact == 5 and res.n_tested == 6


@pytest.mark.parametrize(("n", "f"), [(30, 20), (12, 20)])  # asymptotic (15/15) and exact (6/6) p
def test_familywise_rate_on_null_data_is_within_alpha(n, f):
    res = permutation_null(_null(n=n, f=f, ties=False), n_permutations=2000, alpha=0.05, seed=1)
    lo, hi = res.familywise_ci
    assert lo <= 0.05 and lo <= res.familywise_rate <= hi
    assert hi - lo < 0.03  # 2,000 permutations pin the rate down
    assert res.familywise_rate == pytest.approx((res.rejections > 0).mean())
    assert res.mean_rejections >= res.familywise_rate  # a permutation with a rejection has ≥ 1
    s = res.summary()
    assert s["familywise_ci_low"] == lo and s["n_permutations_with_rejection"] == int((res.rejections > 0).sum())
    assert "observed_fpr" not in s and len(s["rejections_per_permutation"]) == 2000
    text = calibration_text(s)
    assert "within α" in text and f"{res.familywise_rate:.3f}" in text


def test_familywise_rate_detects_an_anticonservative_test():
    # p/4 rejects far too often; the family-wise figure must show it, while the mean fraction of
    # features rejected (the old `observed_fpr`) stays far below α and would have hidden it
    ad = _null(n=30, f=20, ties=False)
    bad = permutation_null(ad, n_permutations=2000, alpha=0.05, seed=1,
                           pvalues=lambda x, lab: mann_whitney_null(x, lab)[1] / 4)
    lo, _ = bad.familywise_ci
    assert lo > 0.05, bad.summary()
    assert bad.mean_rejections / bad.n_tested < 0.05
    assert bad.n_exact is None
    assert "anti-conservative" in calibration_text(bad.summary())
    good = permutation_null(ad, n_permutations=2000, alpha=0.05, seed=1)
    assert bad.familywise_rate > 2 * good.familywise_rate


def test_clopper_pearson_interval():
    lo, hi = clopper_pearson(5, 100)
    # values from the exact binomial: P(X ≥ 5 | hi-side) etc.
    assert stats.binom.sf(4, 100, lo) == pytest.approx(0.025, rel=1e-6)
    assert stats.binom.cdf(5, 100, hi) == pytest.approx(0.025, rel=1e-6)
    assert clopper_pearson(0, 50)[0] == 0.0 and clopper_pearson(50, 50)[1] == 1.0
    assert clopper_pearson(0, 50)[1] == pytest.approx(1 - 0.025 ** (1 / 50))


def test_empirical_p_on_null_data_is_uniform_and_reproducible():
    res = permutation_null(_null(), n_permutations=200, alpha=0.05, seed=1)
    assert 0 < res.empirical_p.min() and res.empirical_p.max() <= 1
    # on null data empirical p-values are ~uniform
    assert 0.35 < res.empirical_p.mean() < 0.65
    again = permutation_null(_null(), n_permutations=200, alpha=0.05, seed=1)
    np.testing.assert_array_equal(res.empirical_p, again.empirical_p)
    np.testing.assert_array_equal(res.rejections, again.rejections)
    # blocks of permutations give the same result as one block
    small = permutation_null(_null(), n_permutations=200, alpha=0.05, seed=1, chunk_cells=1000)
    np.testing.assert_array_equal(res.empirical_p, small.empirical_p)


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


def test_cv_auroc_is_out_of_fold_not_a_mean_over_folds():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(2)
    y = np.r_[np.ones(12, bool), np.zeros(12, bool)]
    x = rng.normal(size=(24, 5))
    x[y, 0] += 1.0
    res = cv_classifier(x, y, 4, penalty="l2", seed=0)
    assert len(res.oof_scores) == 24 and len(res.auroc_folds) == 4
    assert res.auroc == pytest.approx(roc_auc_score(y, res.oof_scores))
    # on these data the two differ, so the test tells them apart
    assert abs(res.auroc - np.mean(res.auroc_folds)) > 0.01
