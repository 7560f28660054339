"""Calibration: label-permutation null for the per-feature tests, and a cross-validated classifier."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Literal, get_args

import anndata as ad
import numpy as np
import pandas as pd
from scipy import stats as sst

from genosae.biomarkers.stats import bh, case_control_masks, layer_matrix
from genosae.errors import InputError

Penalty = Literal["l1", "l2"]


@dataclass
class PermutationResult:
    """Outcome of :func:`permutation_null`.

    Attributes
    ----------
    features
        Feature ids (``var`` order).
    empirical_p
        Per-feature permutation p: (1 + #perms with |AUROC−½| ≥ observed) / (n + 1).
    empirical_p_maxstat
        Family-wise p: observed |AUROC−½| against each permutation's maximum over features.
    fpr_per_permutation
        Fraction of features with BH q ≤ ``alpha`` under each permuted labelling.
    observed_fpr
        Mean of ``fpr_per_permutation`` (should be ≤ ``alpha``: no feature is truly associated).
    any_rejection_rate
        Fraction of permutations with at least one q ≤ ``alpha`` (family-wise error, ≈ ≤ ``alpha``).
    """

    features: np.ndarray
    empirical_p: np.ndarray
    empirical_p_maxstat: np.ndarray
    fpr_per_permutation: np.ndarray
    observed_fpr: float
    any_rejection_rate: float
    alpha: float
    n_permutations: int
    seed: int

    def table(self) -> pd.DataFrame:
        """``feature, empirical_p, empirical_p_maxstat``."""
        return pd.DataFrame({"feature": self.features, "empirical_p": self.empirical_p,
                             "empirical_p_maxstat": self.empirical_p_maxstat})

    def summary(self) -> dict:
        """JSON-able summary (no per-feature arrays)."""
        return {"n_permutations": self.n_permutations, "alpha": self.alpha, "seed": self.seed,
                "observed_fpr": self.observed_fpr, "any_rejection_rate": self.any_rejection_rate,
                "fpr_per_permutation": self.fpr_per_permutation.tolist()}


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
) -> PermutationResult:
    """Shuffle case/control labels ``n_permutations`` times and recompute every feature's test.

    Ranks are computed once per feature (they do not depend on the labels), so each permutation is
    one matrix product: U = (case indicator) · ranks. P-values under permutation are the asymptotic
    Mann-Whitney ones (tie and continuity corrected, as ``scipy.stats.mannwhitneyu``).
    """
    if n_permutations < 1:
        raise InputError("n_permutations must be ≥ 1", record="biomarkers.permutations")
    x = layer_matrix(adata, layer)
    is_case, is_ctrl = case_control_masks(adata.obs, condition, case, control)
    sel = is_case | is_ctrl
    x, lab = x[sel], is_case[sel].astype(float)
    n, n1 = len(lab), int(lab.sum())
    ranks = sst.rankdata(x, axis=0)
    tie_term = _tie_term(ranks)
    rng = np.random.default_rng(seed)
    perms = np.array([rng.permutation(lab) for _ in range(n_permutations)])
    u_obs, _ = _mwu_from_ranks(ranks, lab[None, :], tie_term)
    u_perm, p_perm = _mwu_from_ranks(ranks, perms, tie_term)
    half = n1 * (n - n1) / 2
    stat_obs = np.abs(u_obs[0] - half)
    stat_perm = np.abs(u_perm - half)
    eps = 1e-9 * max(half, 1)
    emp = (1 + (stat_perm >= stat_obs[None, :] - eps).sum(axis=0)) / (n_permutations + 1)
    max_perm = stat_perm.max(axis=1)
    emp_max = (1 + (max_perm[:, None] >= stat_obs[None, :] - eps).sum(axis=0)) / (n_permutations + 1)
    q_perm = bh(p_perm, axis=1, tested=(np.ptp(x, axis=0) > 0)[None, :])
    rejected = q_perm <= alpha
    fpr = rejected.mean(axis=1)
    return PermutationResult(
        features=adata.var_names.to_numpy(), empirical_p=emp, empirical_p_maxstat=emp_max,
        fpr_per_permutation=fpr, observed_fpr=float(fpr.mean()),
        any_rejection_rate=float(rejected.any(axis=1).mean()), alpha=float(alpha),
        n_permutations=int(n_permutations), seed=int(seed),
    )


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
    """Cross-validated logistic regression: AUROC and the features it uses."""

    auroc: float
    auroc_folds: list[float]
    auroc_oof: float
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
    """Stratified k-fold AUROC of a standardised, penalised logistic regression.

    The penalty strength (``n_cs`` values of C, 1e-2..10 for L1, 1e-3..10 for L2, on standardised
    features) is chosen inside each training fold (nested ``LogisticRegressionCV``, AUROC
    scoring), so the outer AUROC is not tuned on the test fold. ``selected`` lists the features with
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
        auroc=float(np.mean(fold_auc)), auroc_folds=fold_auc, auroc_oof=float(roc_auc_score(y, oof)),
        selected=[names[i] for i in idx], coef=[float(coef[i]) for i in idx], penalty=penalty,
        folds=k, n_features=int(X.shape[1]),
    )
