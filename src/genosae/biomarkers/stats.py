"""Case/control statistics per feature, vectorised over features."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from functools import lru_cache

import anndata as ad
import numpy as np
import pandas as pd
from scipy import stats as sst

from genosae.errors import InputError
from genosae.multitest import benjamini_hochberg

log = logging.getLogger(__name__)

STAT_COLUMNS = (
    "feature", "mean_case", "mean_control", "mean_diff", "log2fc", "cliffs_delta", "auroc",
    "u_stat", "p", "q", "welch_p", "welch_q", "coef_adjusted", "p_adjusted", "q_adjusted",
    "n_case", "n_control", "direction",
)


#: scipy's ``mannwhitneyu(method="auto")`` uses the exact null when a group has at most this many
#: values and the column has no tie (``scipy.stats._mannwhitneyu._mwu_choose_method``).
EXACT_MAX_GROUP = 8


def mwu_exact_columns(n1: int, n2: int, ties: np.ndarray) -> np.ndarray:
    """Columns whose Mann-Whitney p is exact under scipy's ``"auto"`` rule (the rest: asymptotic).

    Exact when the smaller group has at most :data:`EXACT_MAX_GROUP` values and the column has
    no tie; ``ties`` is a bool array, one per column.
    """
    ties = np.asarray(ties, dtype=bool)
    return ~ties if min(n1, n2) <= EXACT_MAX_GROUP else np.zeros(ties.shape, dtype=bool)


@lru_cache(maxsize=32)
def mwu_exact_pvalues(n1: int, n2: int) -> np.ndarray:
    """Exact two-sided Mann-Whitney p for every U in ``0..n1·n2`` (no ties).

    Without ties the null distribution of U depends only on the group sizes: its generating
    function is the Gaussian binomial coefficient [n1+n2 choose n1]_q, expanded here with exact
    integers. ``p[u] = min(1, 2·P(U ≥ max(u, n1·n2 − u)))``, as ``scipy.stats.mannwhitneyu``
    with ``method="exact"``. Read-only array of length ``n1·n2 + 1``.
    """
    m, n = sorted((int(n1), int(n2)))
    if m < 1:
        msg = f"group sizes must be ≥ 1, got {n1} and {n2}"
        raise ValueError(msg)
    size = m * n + 1
    poly = np.zeros(size, dtype=object)
    poly[:] = 0
    poly[0] = 1
    for i in range(1, m + 1):  # multiply by (1 − q^(n+i)) / (1 − q^i); m ≤ 8 where this is used
        a = n + i
        new = poly.copy()
        if a < size:
            new[a:] = new[a:] - poly[:size - a]
        for r in range(i):  # divide by (1 − q^i): b[k] = a[k] + b[k − i]
            new[r::i] = np.cumsum(new[r::i])
        poly = new
    total = int(sum(poly))
    tail = np.cumsum(poly[::-1])[::-1]  # tail[k] = #arrangements with U ≥ k
    u = np.arange(size)
    upper = np.maximum(u, m * n - u)
    p = np.array([min(1.0, 2 * int(t) / total) for t in tail[upper]], dtype=np.float64)
    p.setflags(write=False)
    return p


def mann_whitney(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided Mann-Whitney U along axis 0, column by column as ``scipy.stats.mannwhitneyu``.

    Vectorised scipy picks one method for all columns (asymptotic as soon as *any* column has a
    tie), so a column's p would depend on the others; here each column gets the method scipy's
    ``"auto"`` would pick for it alone (:func:`mwu_exact_columns`: exact when a group has ≤ 8
    values and the column has no tie). Returns ``(U of x, p)``.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    u, p = np.full(x.shape[1:], np.nan), np.full(x.shape[1:], np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        both = np.sort(np.concatenate([x, y], axis=0), axis=0)
        ties = (np.diff(both, axis=0) == 0).any(axis=0)
        exact = mwu_exact_columns(x.shape[0], y.shape[0], ties)
        for mask, method in ((~exact, "asymptotic"), (exact, "exact")):
            if mask.any():
                res = sst.mannwhitneyu(x[:, mask], y[:, mask], axis=0, alternative="two-sided",
                                       method=method)
                u[mask], p[mask] = res.statistic, res.pvalue
    return u, p


def layer_matrix(adata: ad.AnnData, layer: str | None) -> np.ndarray:
    """Dense float64 copy of ``adata.layers[layer]`` (``X`` when ``layer`` is None)."""
    if layer is not None and layer not in adata.layers:
        raise InputError(f"profiles have no layer {layer!r}; choose one of {list(adata.layers)}",
                         record="layer")
    x = adata.X if layer is None else adata.layers[layer]
    x = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
    return np.asarray(x, dtype=np.float64)


def case_control_masks(labels: pd.DataFrame | Sequence[str] | np.ndarray, case: str, control: str, *,
                       condition: str = "condition", units: str = "units") -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks of the case and the control units: the one place they are built.

    Parameters
    ----------
    labels
        A unit table with a ``condition`` column (profiles' ``obs``) or the labels themselves.
    case, control
        The two labels compared (compared as strings; other units are in neither mask).
    units
        What the units are, for the error message (``"samples"``, ...).

    Raises :class:`~genosae.errors.InputError` when the column is missing or a group has fewer
    than two units.
    """
    if isinstance(labels, pd.DataFrame):
        if condition not in labels.columns:
            raise InputError(f"profiles obs has no column {condition!r}; it must hold the case/control "
                             "labels", record="condition")
        labels = labels[condition]
    text = np.asarray(labels).astype(str)
    is_case, is_ctrl = text == str(case), text == str(control)
    for name, mask in ((case, is_case), (control, is_ctrl)):
        if mask.sum() < 2:
            raise InputError(f"group {name!r} has {int(mask.sum())} {units} (need ≥ 2); labels "
                             f"present: {sorted(set(text))}", record=f"obs.{condition}")
    return is_case, is_ctrl


def _ols_condition(y: np.ndarray, is_case: np.ndarray, cov: pd.DataFrame
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Coefficient and two-sided p of the case indicator in y ~ 1 + case + covariates (all columns)."""
    design = np.column_stack([np.ones(len(y)), is_case.astype(float), cov.to_numpy(dtype=float)])
    rank = np.linalg.matrix_rank(design)
    if rank < design.shape[1]:
        raise InputError(f"covariates {list(cov.columns)} are collinear with the condition or each "
                         "other; drop one", record="biomarkers.covariates")
    dof = len(y) - design.shape[1]
    if dof < 1:
        raise InputError(f"{len(y)} units cannot fit {design.shape[1]} coefficients; use fewer "
                         "covariates", record="biomarkers.covariates")
    xtx_inv = np.linalg.inv(design.T @ design)
    beta = xtx_inv @ design.T @ y
    resid = y - design @ beta
    sigma2 = (resid**2).sum(axis=0) / dof
    se = np.sqrt(sigma2 * xtx_inv[1, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        t = beta[1] / se
    p = 2 * sst.t.sf(np.abs(t), dof)
    # zero residual variance (up to rounding: the model fits exactly): the t-test is undefined,
    # unless the data are constant (p = 1)
    scale = np.abs(y - y.mean(axis=0)).max(axis=0)
    exact_fit = np.sqrt(sigma2) <= 1e-10 * np.maximum(scale, np.finfo(float).tiny)
    p = np.where(scale == 0, 1.0, np.where(exact_fit, np.nan, p))
    return beta[1], p


def covariate_frame(obs: pd.DataFrame, covariates: Sequence[str]) -> pd.DataFrame:
    """Numeric design columns for ``covariates`` (categoricals one-hot, constant columns dropped)."""
    missing = [c for c in covariates if c not in obs.columns]
    if missing:
        raise InputError(f"covariate(s) {missing} not in profiles obs (have {list(obs.columns)}); "
                         "remove them from biomarkers.covariates or add them to the sample sheet",
                         record="biomarkers.covariates")
    parts = []
    for col in covariates:
        s = obs[col]
        if pd.api.types.is_numeric_dtype(s) and not isinstance(s.dtype, pd.CategoricalDtype):
            if s.isna().any():
                raise InputError(f"covariate {col!r} has missing values", record=f"obs.{col}")
            parts.append(s.astype(float).rename(col))
        else:
            parts.append(pd.get_dummies(s.astype(str), prefix=col, drop_first=True, dtype=float))
    frame = pd.concat(parts, axis=1) if parts else pd.DataFrame(index=obs.index)
    const = [c for c in frame.columns if frame[c].nunique() <= 1]
    if const:
        log.warning("dropping constant covariate(s) %s", const)
        frame = frame.drop(columns=const)
    return frame


def test_features(
    adata: ad.AnnData,
    *,
    layer: str | None = "mean",
    condition: str = "condition",
    case: str = "case",
    control: str = "control",
    covariates: Sequence[str] = (),
    pseudocount: float = 1e-3,
) -> pd.DataFrame:
    """Per-feature case vs control tests on unit profiles.

    Parameters
    ----------
    adata
        Profiles (units × features), e.g. from :func:`~genosae.biomarkers.region_profiles`.
    layer
        Layer tested (``None`` = ``X``).
    condition, case, control
        ``obs`` column and its two labels compared; other units are ignored.
    covariates
        ``obs`` columns adjusted for in the OLS model ``feature ~ 1 + case + covariates``.
    pseudocount
        Added to both group means before the log2 fold change.

    Returns
    -------
    DataFrame, one row per feature (``var`` order), columns :data:`STAT_COLUMNS`: ``p`` two-sided
    Mann-Whitney U (scipy, default method), ``welch_p`` Welch t-test, ``auroc`` = U/(n_case n_control)
    (probability a case unit exceeds a control one, ties ½), ``cliffs_delta`` = 2·AUROC − 1,
    ``direction`` the side of ½ the AUROC lies on (:func:`auroc_direction`),
    ``coef_adjusted``/``p_adjusted`` the case coefficient of the OLS model (without covariates it is
    the plain OLS = pooled t-test), ``q*`` Benjamini-Hochberg over features. ``welch_p`` and
    ``p_adjusted`` are NaN where their t-test is undefined (zero residual variance with different
    means, e.g. both groups constant at different values; ``p`` still tests such a feature); NaN
    counts as p = 1 in BH and its q is NaN.
    """
    x = layer_matrix(adata, layer)
    is_case, is_ctrl = case_control_masks(adata.obs, case, control, condition=condition)
    xc, xk = x[is_case], x[is_ctrl]
    n1, n2 = len(xc), len(xk)
    mean_c, mean_k = xc.mean(axis=0), xk.mean(axis=0)
    u_stat, mw_p = mann_whitney(xc, xk)
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant groups: handled below
        welch = sst.ttest_ind(xc, xk, axis=0, equal_var=False)
    const = (np.ptp(np.vstack([xc, xk]), axis=0) == 0)
    p = np.where(const | np.isnan(mw_p), 1.0, mw_p)
    # both groups with zero variance: the t statistic is ±inf or 0/0 and has no null distribution,
    # so the Welch p is undefined (NaN; scipy says 0). Equal values everywhere: untested, p = 1
    flat = (np.ptp(xc, axis=0) == 0) & (np.ptp(xk, axis=0) == 0)
    welch_p = np.where(const, 1.0, np.where(flat, np.nan, welch.pvalue))
    auroc = u_stat / (n1 * n2)
    sel = is_case | is_ctrl
    cov = covariate_frame(adata.obs.loc[sel], covariates)
    coef, p_adj = _ols_condition(x[sel], is_case[sel], cov)
    df = pd.DataFrame({
        "feature": adata.var_names.to_numpy(),
        "mean_case": mean_c,
        "mean_control": mean_k,
        "mean_diff": mean_c - mean_k,
        "log2fc": np.log2((mean_c + pseudocount) / (mean_k + pseudocount)),
        "cliffs_delta": 2 * auroc - 1,
        "auroc": auroc,
        "u_stat": u_stat,
        "p": p,
        "q": benjamini_hochberg(p, tested=~const, nan="one"),
        "welch_p": welch_p,
        "welch_q": benjamini_hochberg(welch_p, tested=~const, nan="one"),
        "coef_adjusted": coef,
        "p_adjusted": p_adj,
        "q_adjusted": benjamini_hochberg(p_adj, tested=~const, nan="one"),
        "n_case": n1,
        "n_control": n2,
    })
    df["welch_q"] = np.where(np.isnan(welch_p), np.nan, df["welch_q"])
    df["q_adjusted"] = np.where(np.isnan(p_adj), np.nan, df["q_adjusted"])
    df["direction"] = auroc_direction(auroc)
    df.attrs["covariates_used"] = list(cov.columns)
    return df[list(STAT_COLUMNS)]


def auroc_direction(auroc: np.ndarray) -> np.ndarray:
    """``"up"`` where AUROC > ½ (cases tend higher), ``"down"`` where < ½, ``"none"`` at ½ or NaN.

    The direction of the Mann-Whitney statistic that gives ``p`` and the rank, not of the mean
    difference (a few large control values can make the means disagree with the ranks).
    """
    a = np.asarray(auroc, dtype=np.float64)
    return np.where(a > 0.5, "up", np.where(a < 0.5, "down", "none"))


def rank_features(table: pd.DataFrame) -> pd.DataFrame:
    """Sort a statistics table: smallest q, then smallest p, then largest |Cliff's delta|, then
    largest |log2 fold change| (ties in the rank statistics are common with small groups)."""
    key = table.assign(_abs=-table["cliffs_delta"].abs(), _fc=-table["log2fc"].abs())
    order = key.sort_values(["q", "p", "_abs", "_fc", "feature"], kind="stable").index
    return table.loc[order].reset_index(drop=True)


test_features.__test__ = False  # not a pytest test when imported into a test module
