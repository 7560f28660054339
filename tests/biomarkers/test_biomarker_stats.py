import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from anndata import AnnData
from scipy import stats

from genosae.biomarkers import stats as bstats
from genosae.errors import InputError
from genosae.multitest import benjamini_hochberg


@pytest.fixture
def fixed():
    rng = np.random.default_rng(3)
    n = 20
    x = rng.gamma(2.0, 1.0, (n, 6))
    x[:10, 0] += 1.5
    x[:, 5] = np.round(x[:, 5])  # ties
    obs = pd.DataFrame({"condition": ["case"] * 10 + ["control"] * 10,
                        "age": rng.normal(50, 8, n), "site": ["a", "b"] * 10},
                       index=[f"s{i}" for i in range(n)])
    return AnnData(X=x, obs=obs, layers={"mean": x.copy()})


def test_agrees_with_scipy(fixed):
    t = bstats.test_features(fixed, case="case", control="control")
    x = fixed.layers["mean"]
    for j in range(x.shape[1]):
        mw = stats.mannwhitneyu(x[:10, j], x[10:, j], alternative="two-sided")
        we = stats.ttest_ind(x[:10, j], x[10:, j], equal_var=False)
        assert t.loc[j, "p"] == pytest.approx(mw.pvalue)
        assert t.loc[j, "welch_p"] == pytest.approx(we.pvalue)
        assert t.loc[j, "auroc"] == pytest.approx(mw.statistic / 100)
        # Cliff's delta from its definition
        d = np.sign(x[:10, j][:, None] - x[10:, j][None, :]).mean()
        assert t.loc[j, "cliffs_delta"] == pytest.approx(d)
        assert t.loc[j, "mean_diff"] == pytest.approx(x[:10, j].mean() - x[10:, j].mean())
    np.testing.assert_allclose(t["q"], stats.false_discovery_control(t["p"]))
    assert t.loc[0, "direction"] == "up" and t["n_case"].eq(10).all()


def test_covariate_model_agrees_with_statsmodels(fixed):
    t = bstats.test_features(fixed, case="case", control="control", covariates=["age", "site"])
    obs = fixed.obs
    design = sm.add_constant(pd.DataFrame({
        "case": (obs["condition"] == "case").astype(float), "age": obs["age"],
        "site_b": (obs["site"] == "b").astype(float)}))
    for j in range(fixed.n_vars):
        fit = sm.OLS(fixed.layers["mean"][:, j], design).fit()
        assert t.loc[j, "coef_adjusted"] == pytest.approx(fit.params["case"])
        assert t.loc[j, "p_adjusted"] == pytest.approx(fit.pvalues["case"])
    np.testing.assert_allclose(t["q_adjusted"], stats.false_discovery_control(t["p_adjusted"]))


def test_constant_feature_and_errors(fixed):
    fixed.layers["mean"][:, 1] = 0.0
    t = bstats.test_features(fixed, case="case", control="control")
    assert t.loc[1, "p"] == 1.0 and t.loc[1, "auroc"] == 0.5
    with pytest.raises(InputError, match="covariate"):
        bstats.test_features(fixed, covariates=["bmi"])
    with pytest.raises(InputError, match="need ≥ 2"):
        bstats.test_features(fixed, case="case", control="ctrl")
    ranked = bstats.rank_features(t)
    assert ranked.loc[0, "feature"] == "0"


def test_mann_whitney_method_per_column_like_scipy():
    from genosae.biomarkers.stats import mann_whitney

    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(6, 5)), rng.normal(size=(7, 5))
    x[:, 0], y[:, 0] = 0.0, np.r_[0.0, 1.0, 0.0, 2.0, 0.0, 0.0, 3.0]  # ties only in column 0
    u, p = mann_whitney(x, y)
    for j in range(5):
        ref = stats.mannwhitneyu(x[:, j], y[:, j], alternative="two-sided")
        assert p[j] == pytest.approx(ref.pvalue, rel=1e-12) and u[j] == ref.statistic
    big_x, big_y = rng.normal(size=(12, 3)), rng.normal(size=(10, 3))
    _, p = mann_whitney(big_x, big_y)
    np.testing.assert_allclose(p, stats.mannwhitneyu(big_x, big_y, axis=0).pvalue, rtol=1e-12)


def test_bh_excludes_untested_hypotheses():
    from statsmodels.stats.multitest import multipletests

    p = np.array([[0.01, 0.04, 1.0, 0.03], [0.5, 0.001, 1.0, 0.2]])
    tested = np.array([True, True, False, True])
    q = benjamini_hochberg(p, axis=1, tested=tested[None, :])
    for row in range(2):
        np.testing.assert_allclose(q[row, tested], multipletests(p[row, tested], method="fdr_bh")[1])
    assert (q[:, 2] == 1).all()
    np.testing.assert_allclose(benjamini_hochberg(p[0]), multipletests(p[0], method="fdr_bh")[1])


def _two_groups(case_values, control_values):
    x = np.column_stack([np.r_[case_values, control_values],
                         np.random.default_rng(0).random(len(case_values) + len(control_values))])
    obs = pd.DataFrame({"condition": ["case"] * len(case_values) + ["control"] * len(control_values)},
                       index=[f"u{i}" for i in range(len(x))])
    return AnnData(X=x, obs=obs, layers={"mean": x.copy()})


def test_welch_p_is_undefined_when_both_groups_are_constant():
    # zero variance in both groups with different means: t = ±inf has no null distribution, so the
    # Welch (and OLS) p is undefined, not 0; the rank test still gives its exact p
    t = bstats.test_features(_two_groups([1.0] * 5, [2.0] * 5))
    row = t.loc[0]
    assert np.isnan(row["welch_p"]) and np.isnan(row["welch_q"])
    assert np.isnan(row["p_adjusted"]) and np.isnan(row["q_adjusted"])
    assert row["p"] == pytest.approx(stats.mannwhitneyu([1.0] * 5, [2.0] * 5).pvalue)
    assert row["auroc"] == 0.0 and row["direction"] == "down"
    assert np.isfinite(t.loc[1, "welch_p"]) and 0 < t.loc[1, "welch_p"] <= 1
    # NaN counts as p = 1 in the family of the other features
    expect = stats.false_discovery_control([1.0, t.loc[1, "welch_p"]])[1]
    assert t.loc[1, "welch_q"] == pytest.approx(expect)


def test_direction_follows_the_auroc_not_the_mean():
    # one large case value makes the case mean higher although cases are mostly lower: p and rank
    # come from Mann-Whitney, so the direction must be that of its AUROC
    t = bstats.test_features(_two_groups([0.0, 0.1, 0.2, 0.3, 100.0], [1.0, 1.1, 1.2, 1.3, 1.4]))
    row = t.loc[0]
    assert row["mean_diff"] > 0 and row["auroc"] == pytest.approx(0.2)
    assert row["direction"] == "down"
    tie = bstats.test_features(_two_groups([0.0, 2.0, 1.0], [1.0, 0.5, 1.5]))
    assert tie.loc[0, "auroc"] == 0.5 and tie.loc[0, "direction"] == "none"
    np.testing.assert_array_equal(bstats.auroc_direction(np.array([0.7, 0.3, 0.5, np.nan])),
                                  ["up", "down", "none", "none"])
