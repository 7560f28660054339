"""Calibration: label-permutation null for the per-feature tests, and a cross-validated classifier."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

import anndata as ad
import numpy as np
import pandas as pd
from scipy import stats as sst

from genosae.biomarkers.stats import (
    case_control_masks,
    layer_matrix,
    mwu_exact_columns,
    mwu_exact_pvalues,
)
from genosae.errors import InputError
from genosae.multitest import benjamini_hochberg

Penalty = Literal["l1", "l2"]


#: ``pvalues(x, labelings)`` hook of :func:`permutation_null`: ``x`` ``[n_units, n_features]``,
#: ``labelings`` ``[n_labelings, n_units]`` bool (True = case) → p ``[n_labelings, n_features]``.
PValueFunction = Callable[[np.ndarray, np.ndarray], np.ndarray]
CI_LEVEL = 0.95


def clopper_pearson(k: int, n: int, level: float = CI_LEVEL) -> tuple[float, float]:
    """Exact (Clopper-Pearson) binomial interval for ``k`` successes in ``n`` trials."""
    if n < 1 or not 0 <= k <= n:
        msg = f"need 0 ≤ k ≤ n and n ≥ 1, got k={k}, n={n}"
        raise ValueError(msg)
    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(sst.beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(sst.beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


@dataclass
class PermutationResult:
    """Outcome of :func:`permutation_null`.

    Every permuted labelling is a dataset in which no feature is associated with the labels (the
    complete null). BH at level ``alpha`` bounds the false discovery rate, and under the complete
    null every rejection is false, so the chance of *any* rejection is at most ``alpha`` (for
    independent or positively dependent p-values). :attr:`familywise_rate` estimates that chance
    on these data with the same test as the observed p-values; a rate clearly above ``alpha``
    (:attr:`familywise_ci` above it) says the per-feature test is anti-conservative here.

    Attributes
    ----------
    features
        Feature ids (``var`` order).
    empirical_p
        Per-feature permutation p: (1 + #perms with |AUROC−½| ≥ observed) / (n + 1).
    empirical_p_maxstat
        Family-wise p: observed |AUROC−½| against each permutation's maximum over features.
    rejections
        ``[n_permutations]`` number of features with BH q ≤ ``alpha`` under each permuted labelling.
    n_tested
        Features in the BH family (those whose values are not all equal).
    n_exact
        Features whose p uses the exact Mann-Whitney null (the rest: asymptotic), as for the
        observed p-values (``None`` when a custom ``pvalues`` function was used).
    """

    features: np.ndarray
    empirical_p: np.ndarray
    empirical_p_maxstat: np.ndarray
    rejections: np.ndarray
    n_tested: int
    n_exact: int | None
    alpha: float
    n_permutations: int
    seed: int

    @property
    def n_with_rejection(self) -> int:
        """Permutations with at least one feature at q ≤ ``alpha``."""
        return int((self.rejections > 0).sum())

    @property
    def familywise_rate(self) -> float:
        """Share of permutations with any rejection: estimates P(any false discovery) under the
        complete null, which BH keeps ≤ ``alpha``."""
        return self.n_with_rejection / self.n_permutations

    @property
    def familywise_ci(self) -> tuple[float, float]:
        """Clopper-Pearson 95 % interval of :attr:`familywise_rate` (binomial over permutations)."""
        return clopper_pearson(self.n_with_rejection, self.n_permutations)

    @property
    def mean_rejections(self) -> float:
        """Mean number of features rejected per permutation (all of them false discoveries)."""
        return float(self.rejections.mean())

    def table(self) -> pd.DataFrame:
        """``feature, empirical_p, empirical_p_maxstat``."""
        return pd.DataFrame({"feature": self.features, "empirical_p": self.empirical_p,
                             "empirical_p_maxstat": self.empirical_p_maxstat})

    def summary(self) -> dict:
        """JSON-able summary (no per-feature arrays); the keys ``calibration.json`` holds."""
        lo, hi = self.familywise_ci
        return {"n_permutations": self.n_permutations, "alpha": self.alpha, "seed": self.seed,
                "n_features": len(self.features), "n_tested_features": self.n_tested,
                "n_exact_features": self.n_exact,
                "familywise_rate": self.familywise_rate, "familywise_ci_low": lo,
                "familywise_ci_high": hi, "ci_level": CI_LEVEL,
                "n_permutations_with_rejection": self.n_with_rejection,
                "mean_rejections": self.mean_rejections,
                "max_rejections": int(self.rejections.max(initial=0)),
                "rejections_per_permutation": self.rejections.astype(int).tolist()}


def calibration_text(summary: Mapping[str, Any]) -> str:
    """One paragraph saying what the permutation figure measured, what it bounds and what it found.

    ``summary`` is :meth:`PermutationResult.summary` (the contents of ``calibration.json``).
    """
    n, alpha = int(summary["n_permutations"]), float(summary["alpha"])
    rate, lo, hi = (float(summary[k]) for k in ("familywise_rate", "familywise_ci_low",
                                                "familywise_ci_high"))
    level = round(100 * float(summary.get("ci_level", CI_LEVEL)))
    if lo > alpha:
        verdict = (f"The whole interval lies above α = {alpha:g}: the per-feature test rejects more "
                   "often than BH allows on these data (anti-conservative), so its q-values "
                   "overstate the evidence.")
    elif rate <= alpha:
        verdict = f"This is within α = {alpha:g}, as BH promises for a calibrated test."
    else:
        verdict = (f"This is above α = {alpha:g} but the interval includes it: not distinguishable "
                   "from a calibrated test with this many permutations.")
    return (f"Labels were permuted {n} times and every feature re-tested with the same test as the "
            f"observed p-values (Mann-Whitney U, exact or asymptotic per feature as scipy picks), "
            f"BH over the {summary.get('n_tested_features', '?')} tested features. "
            f"{summary.get('n_permutations_with_rejection', '?')} of {n} permutations had at least "
            f"one feature with q ≤ {alpha:g}: family-wise rate {rate:.3f} ({level} % Clopper-Pearson "
            f"interval {lo:.3f}–{hi:.3f}); {float(summary['mean_rejections']):.3g} features were "
            "rejected per permutation on average. Under permuted labels no feature is associated, "
            "so any rejection is false: BH bounds the false discovery rate by α and, when no "
            "feature is associated, the chance of any rejection by α; this figure checks that "
            f"second bound on these data. {verdict}")


def permutation_null(
    adata: ad.AnnData,
    *,
    layer: str | None = "mean",
    condition: str = "condition",
    case: str = "case",
    control: str = "control",
    n_permutations: int = 200,
    alpha: float = 0.05,
    seed: int = 0,
    pvalues: PValueFunction | None = None,
    chunk_cells: int = 4_000_000,
) -> PermutationResult:
    """Shuffle case/control labels ``n_permutations`` times and recompute every feature's test.

    Parameters
    ----------
    adata, layer, condition, case, control
        As :func:`~genosae.biomarkers.stats.test_features`.
    n_permutations, seed
        Number of label permutations (group sizes kept) and their seed.
    alpha
        BH level whose rejections are counted.
    pvalues
        P-value function ``(x [units, features], labelings [n, units] bool) → p [n, features]``;
        default :func:`mann_whitney_null`, the same per-feature exact/asymptotic Mann-Whitney
        rule as the observed ``p`` (:func:`~genosae.biomarkers.stats.mann_whitney`). Another
        function lets a test check the figure on a deliberately miscalibrated p.
    chunk_cells
        Permutations are processed in blocks of about this many permutation × feature cells.

    Ranks are computed once per feature (they do not depend on the labels), so each block of
    permutations is one matrix product U = (case indicators) · ranks; exact p-values are read from
    the exact null of U (:func:`~genosae.biomarkers.stats.mwu_exact_pvalues`).
    """
    if n_permutations < 1:
        raise InputError("n_permutations must be ≥ 1", record="biomarkers.permutations")
    x = layer_matrix(adata, layer)
    is_case, is_ctrl = case_control_masks(adata.obs, case, control, condition=condition)
    sel = is_case | is_ctrl
    x, lab = x[sel], is_case[sel]
    n, n1 = len(lab), int(lab.sum())
    null = _MWUNull(x, n1)
    rng = np.random.default_rng(seed)
    u_obs, _ = null(lab[None, :])
    half = n1 * (n - n1) / 2
    stat_obs = np.abs(u_obs[0] - half)
    eps = 1e-9 * max(half, 1)
    tested = np.ptp(x, axis=0) > 0
    n_ge = np.zeros(x.shape[1], dtype=np.int64)
    max_perm = np.empty(n_permutations)
    rejections = np.empty(n_permutations, dtype=np.int64)
    block = max(1, int(chunk_cells) // max(x.shape[1], 1))
    for lo in range(0, n_permutations, block):  # blocks of permutations, vectorised within
        k = min(block, n_permutations - lo)
        perms = rng.permuted(np.broadcast_to(lab, (k, n)), axis=1)
        u_perm, p_perm = null(perms)
        if pvalues is not None:
            p_perm = np.asarray(pvalues(x, perms), dtype=np.float64)
            if p_perm.shape != u_perm.shape:
                msg = f"pvalues returned shape {p_perm.shape}, expected {u_perm.shape}"
                raise ValueError(msg)
        stat_perm = np.abs(u_perm - half)
        n_ge += (stat_perm >= stat_obs[None, :] - eps).sum(axis=0)
        max_perm[lo:lo + k] = stat_perm.max(axis=1)
        q_perm = benjamini_hochberg(p_perm, axis=1, tested=tested[None, :], nan="one")
        rejections[lo:lo + k] = (q_perm <= alpha).sum(axis=1)
    emp = (1 + n_ge) / (n_permutations + 1)
    emp_max = (1 + (max_perm[:, None] >= stat_obs[None, :] - eps).sum(axis=0)) / (n_permutations + 1)
    return PermutationResult(
        features=adata.var_names.to_numpy(), empirical_p=emp, empirical_p_maxstat=emp_max,
        rejections=rejections, n_tested=int(tested.sum()),
        n_exact=None if pvalues is not None else int((null.exact & tested).sum()),
        alpha=float(alpha), n_permutations=int(n_permutations), seed=int(seed),
    )


class _MWUNull:
    """Mann-Whitney U and p of many labelings of one unit × feature matrix (ranks computed once)."""

    def __init__(self, x: np.ndarray, n1: int) -> None:
        self.ranks = sst.rankdata(x, axis=0)
        self.tie_term = _tie_term(self.ranks)
        self.n1, self.n2 = int(n1), int(x.shape[0] - n1)
        self.exact = mwu_exact_columns(self.n1, self.n2, self.tie_term > 0)
        self.table = mwu_exact_pvalues(self.n1, self.n2) if self.exact.any() else None

    def __call__(self, labelings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        labelings = np.asarray(labelings, dtype=bool)
        if (labelings.sum(axis=1) != self.n1).any():
            msg = f"every labeling must have {self.n1} cases"
            raise ValueError(msg)
        u, p = _mwu_from_ranks(self.ranks, labelings.astype(np.float64), self.tie_term)
        if self.table is not None:
            cols = np.flatnonzero(self.exact)
            p[:, cols] = self.table[np.rint(u[:, cols]).astype(np.int64)]
        return u, p


def mann_whitney_null(x: np.ndarray, labelings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided Mann-Whitney U (of the cases) and p of every feature under every labeling.

    ``x`` is ``[n_units, n_features]``, ``labelings`` ``[n_labelings, n_units]`` bool (True = case,
    the same number of cases in each). Each feature gets the method
    :func:`~genosae.biomarkers.stats.mann_whitney` gives it (exact null when a group has ≤ 8 units
    and the feature has no tie, else asymptotic with tie and continuity correction), so for the
    observed labeling the result equals the observed test. Returns ``(U, p)``, each
    ``[n_labelings, n_features]``.
    """
    labelings = np.atleast_2d(np.asarray(labelings, dtype=bool))
    return _MWUNull(np.asarray(x, dtype=np.float64), int(labelings[0].sum()))(labelings)


def _mwu_from_ranks(ranks: np.ndarray, case_sets: np.ndarray, tie_term: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """U of the case group and its asymptotic two-sided p (tie + continuity corrected, as scipy).

    ``case_sets`` is ``[n_labelings, n_units]`` 0/1; ranks ``[n_units, n_features]``.
    """
    n = ranks.shape[0]
    n1 = case_sets.sum(axis=1, keepdims=True)
    n2 = n - n1
    u = case_sets @ ranks - n1 * (n1 + 1) / 2
    mu = n1 * n2 / 2
    sigma = np.sqrt(n1 * n2 / 12 * ((n + 1) - tie_term[None, :] / (n * (n - 1))))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (np.abs(u - mu) - 0.5) / sigma
    p = np.where(sigma > 0, np.clip(2 * sst.norm.sf(z), 0, 1), 1.0)
    return u, p


def _tie_term(ranks: np.ndarray) -> np.ndarray:
    """Σ(t³ − t) over tie groups, per column, from average ranks (vectorised via sorting)."""
    r = np.sort(ranks, axis=0)
    n, f = r.shape
    out = np.zeros(f)
    if n < 2:
        return out
    new_group = np.vstack([np.ones((1, f), bool), r[1:] != r[:-1]])
    group_id = np.cumsum(new_group, axis=0) - 1 + np.arange(f)[None, :] * n
    sizes = np.bincount(group_id.ravel(order="F"), minlength=n * f).reshape(f, n)
    return (sizes**3 - sizes).sum(axis=1).astype(float)


@dataclass
class ClassifierResult:
    """Cross-validated logistic regression: AUROC and the features it uses.

    Attributes
    ----------
    auroc
        AUROC of the pooled out-of-fold scores (every unit scored once, by the model that did not
        see it): one ranking over all units, not the mean of per-fold AUROCs.
    auroc_folds
        AUROC within each test fold (their spread; not averaged into ``auroc``).
    oof_scores
        The out-of-fold case probability of each unit (input order).
    selected, coef
        Features with non-zero coefficients in a refit on all units and their coefficients.
    """

    auroc: float
    auroc_folds: list[float]
    oof_scores: list[float]
    selected: list[str]
    coef: list[float]
    penalty: str
    folds: int
    n_features: int
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def cv_classifier(
    X: np.ndarray,
    y: np.ndarray,
    folds: int = 5,
    *,
    penalty: Penalty = "l1",
    feature_names: list[str] | None = None,
    seed: int = 0,
    n_cs: int = 6,
) -> ClassifierResult:
    """Stratified k-fold, out-of-fold AUROC of a standardised, penalised logistic regression.

    The penalty strength (``n_cs`` values of C, 1e-2..10 for L1, 1e-3..10 for L2, on standardised
    features) is chosen inside each training fold (nested ``LogisticRegressionCV``, AUROC
    scoring), so the outer AUROC is not tuned on the test fold. ``auroc`` is the AUROC of the
    pooled out-of-fold scores (a mean of per-fold AUROCs over folds of 2–4 units is noisy and
    not an AUROC of any ranking). ``selected`` lists the features with
    non-zero coefficients in a refit on all units (for ``l2``, the 20 largest |coef|).
    """
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if penalty not in get_args(Penalty):
        raise InputError(f"penalty must be one of {get_args(Penalty)}", record="penalty")
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y).astype(int)
    if X.ndim != 2 or len(X) != len(y):
        raise InputError(f"X {X.shape} and y {y.shape} do not match", record="cv_classifier")
    min_class = int(min((y == 0).sum(), (y == 1).sum()))
    if min_class < 2:
        raise InputError("each class needs at least 2 units for cross-validation", record="y")
    k = int(min(folds, min_class))
    names = feature_names if feature_names is not None else [str(i) for i in range(X.shape[1])]

    def model(n_train_min: int):
        inner = int(max(2, min(3, n_train_min)))
        grid = np.logspace(-2, 1, n_cs) if penalty == "l1" else np.logspace(-3, 1, n_cs)
        lr = LogisticRegressionCV(
            Cs=grid, l1_ratios=(1.0 if penalty == "l1" else 0.0,),
            solver="liblinear", cv=inner, scoring="roc_auc",
            max_iter=2000, use_legacy_attributes=False, random_state=seed,
        )
        return make_pipeline(StandardScaler(), lr)

    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    oof = np.zeros(len(y))
    fold_auc = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence/constant-feature chatter on tiny folds
        for train, test in skf.split(X, y):
            m = model(int(np.bincount(y[train]).min())).fit(X[train], y[train])
            s = m.predict_proba(X[test])[:, 1]
            oof[test] = s
            fold_auc.append(float(roc_auc_score(y[test], s)))
        full = model(min_class).fit(X, y)
    coef = full[-1].coef_.ravel()
    if penalty == "l1":
        idx = np.flatnonzero(coef != 0)
    else:
        idx = np.argsort(-np.abs(coef))[:20]
    idx = idx[np.argsort(-np.abs(coef[idx]))]
    return ClassifierResult(
        auroc=float(roc_auc_score(y, oof)), auroc_folds=fold_auc, oof_scores=oof.tolist(),
        selected=[names[i] for i in idx], coef=[float(coef[i]) for i in idx], penalty=penalty,
        folds=k, n_features=int(X.shape[1]),
    )
