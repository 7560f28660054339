"""Align every feature to every concept at once: held-out F1, MCC, enrichment and BH q-values.

The whole computation is a handful of sparse matrix products. Each stored activation gets a *level*
(how many of the ascending thresholds it exceeds) and a *half* (calibration or held-out, by window);
one product ``B^T @ M`` of a ``[n_tokens, 2 * n_features * n_thresholds]`` indicator matrix with the
``[n_tokens, n_concepts]`` membership matrix then gives the true positives of every feature ×
threshold × concept × half, after a reversed cumulative sum over levels (thresholds are nested).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats

__all__ = [
    "ALIGNMENT_COLUMNS",
    "align_concepts",
    "benjamini_hochberg",
    "best_per_concept",
    "best_per_feature",
    "token_concepts",
    "trivial_f1",
]

ALIGNMENT_COLUMNS = (
    "feature", "concept", "threshold", "threshold_abs", "f1_calibration", "n_fire", "tp", "precision",
    "recall", "f1", "mcc", "prevalence", "trivial_f1", "domain_recall", "n_instances", "odds_ratio",
    "p", "q", "captured",
)


def trivial_f1(prevalence: np.ndarray | float) -> np.ndarray | float:
    """F1 of a unit that fires on every token: ``2p / (1 + p)`` for concept prevalence ``p``."""
    p = np.asarray(prevalence, dtype=np.float64)
    out = 2 * p / (1 + p)
    return float(out) if out.ndim == 0 else out


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q), same as statsmodels ``multipletests(method="fdr_bh")``.

    NaN p-values are ignored (their q is NaN) and do not count as tests.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    pv = p[ok]
    m = pv.size
    if m == 0:
        return q
    order = np.argsort(pv, kind="mergesort")
    ranked = pv[order] * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(ranked, 1.0)
    q[ok] = out
    return q


def token_concepts(
    tokens: pd.DataFrame,
    concepts: pd.DataFrame,
    concept_names: Sequence[str] | None = None,
) -> tuple[sp.csr_matrix, sp.csr_matrix, list[str]]:
    """Label each token by the concepts covering its first base (``bp_start``).

    For single-nucleotide tokens this is the token's base; for k-mer/BPE tokens the first base.

    Returns
    -------
    membership, instances, concept_names
        As :func:`genosae.genome.concepts.label_positions`, plus the column names used.
    """
    from genosae.genome.concepts import label_positions

    names = list(concept_names) if concept_names is not None else sorted(concepts["concept"].unique())
    chroms = tokens["chrom"].to_numpy()
    positions = tokens["bp_start"].to_numpy(np.int64)
    membership, instances = label_positions(concepts, chroms, positions, names)
    return sp.csr_matrix(membership, dtype=bool), sp.csr_matrix(instances), names


def _levels(codes: sp.csr_matrix, thr_abs_FK: np.ndarray) -> np.ndarray:
    """For each stored value, how many of the feature's (ascending) thresholds it exceeds."""
    cols = codes.indices
    level = np.zeros(codes.nnz, dtype=np.int8)
    for k in range(thr_abs_FK.shape[1]):  # K is a handful of thresholds
        level += codes.data > thr_abs_FK[cols, k]
    return level


def _level_matrix(codes: sp.csr_matrix, level: np.ndarray, half: np.ndarray, n_levels: int) -> sp.csr_matrix:
    """Indicator ``[n_tokens, 2 * F * K]``: column ``(half * F + feature) * K + (level - 1)``."""
    n_tok, n_feat = codes.shape
    rows = np.repeat(np.arange(n_tok, dtype=np.int64), np.diff(codes.indptr))
    keep = level > 0
    rows = rows[keep]
    cols = (half[rows].astype(np.int64) * n_feat + codes.indices[keep]) * n_levels + (level[keep] - 1)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n_tok))])
    data = np.ones(len(cols), dtype=np.int32)
    return sp.csr_matrix((data, cols, indptr), shape=(n_tok, 2 * n_feat * n_levels))


def _rev_cumsum(x: np.ndarray, axis: int) -> np.ndarray:
    return np.flip(np.cumsum(np.flip(x, axis), axis), axis)


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return np.divide(a, b, out=np.zeros(np.broadcast_shapes(a.shape, b.shape)), where=b > 0)


def _domain_hits(
    level: np.ndarray,
    codes: sp.csr_matrix,
    test: np.ndarray,
    instances: sp.csr_matrix,
    n_levels: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Held-out instances hit (≥1 firing token) per threshold × feature × concept, and instances per concept.

    Returns ``hits_KFC`` and ``n_inst_C``.
    """
    n_tok, n_feat = codes.shape
    n_conc = instances.shape[1]
    inst = instances.tocoo()
    ok = (inst.data > 0) & test[inst.row]
    ids, rows, conc = inst.data[ok].astype(np.int64), inst.row[ok], inst.col[ok]
    uniq, compact = np.unique(ids, return_inverse=True)
    first = np.zeros(len(uniq), dtype=np.int64)
    first[compact] = conc  # an id belongs to one concept row of the table
    n_inst_C = np.bincount(first, minlength=n_conc)
    hits_KFC = np.zeros((n_levels, n_feat, n_conc), dtype=np.int64)
    if len(uniq) == 0:
        return hits_KFC, n_inst_C
    tok_inst = sp.csr_matrix((np.ones(len(rows), np.int32), (rows, compact)), shape=(n_tok, len(uniq)))
    inst_conc = sp.csr_matrix((np.ones(len(uniq), np.int32), (np.arange(len(uniq)), first)),
                              shape=(len(uniq), n_conc))
    row_of = np.repeat(np.arange(n_tok), np.diff(codes.indptr))
    on_test = test[row_of]
    for k in range(n_levels):
        sel = on_test & (level > k)
        fire = sp.csr_matrix((np.ones(int(sel.sum()), np.int32), (row_of[sel], codes.indices[sel])),
                             shape=(n_tok, n_feat))
        hit_FI = (fire.T.tocsr() @ tok_inst).tocsr()
        hit_FI.data[:] = 1
        hits_KFC[k] = (hit_FI @ inst_conc).toarray()
    return hits_KFC, n_inst_C


def align_concepts(
    codes: sp.spmatrix | np.ndarray,
    membership: sp.spmatrix | np.ndarray,
    instances: sp.spmatrix | np.ndarray | None = None,
    *,
    calibration_mask: np.ndarray,
    concept_names: Sequence[str],
    feature_names: Sequence[str] | None = None,
    thresholds: Sequence[float] = (0.0, 0.15, 0.5, 0.6, 0.8),
    min_f1: float = 0.5,
    min_mcc: float = 0.3,
    min_margin: float = 0.1,
    fdr: float = 0.05,
) -> pd.DataFrame:
    """Score every feature against every concept, choosing thresholds on the calibration tokens.

    A feature *fires* on a token when its activation exceeds ``t * max`` (``max`` = the feature's
    largest activation on the calibration tokens). For each feature × concept the threshold ``t``
    with the best calibration F1 is kept and every metric is reported on the held-out tokens.

    Parameters
    ----------
    codes
        ``[n_tokens, n_features]`` activations (CSR; dense arrays are converted).
    membership
        ``[n_tokens, n_concepts]`` bool, token covered by the concept.
    instances
        ``[n_tokens, n_concepts]`` int instance ids (0 = none) for domain-level recall, or ``None``.
    calibration_mask
        Bool per token: ``True`` for tokens of the calibration windows.
    concept_names, feature_names
        Column labels (features default to ``f0, f1, ...``).
    thresholds
        Fractions of each feature's max, in [0, 1].
    min_f1, min_mcc, min_margin, fdr
        ``captured`` = held-out F1 ≥ ``min_f1``, MCC ≥ ``min_mcc``, F1 > trivial F1 + ``min_margin``
        and q ≤ ``fdr``.

    Returns
    -------
    DataFrame with one row per feature × concept and columns :data:`ALIGNMENT_COLUMNS`: ``threshold``
    (chosen fraction), ``threshold_abs``, ``f1_calibration``, held-out ``n_fire, tp, precision, recall,
    f1, mcc, prevalence, trivial_f1``, ``domain_recall`` (fraction of held-out concept instances with
    ≥ 1 firing held-out token; NaN without ``instances``), ``n_instances``, ``odds_ratio``
    (Haldane-corrected), one-sided hypergeometric ``p`` of enrichment, BH ``q`` over all rows and
    ``captured``.
    """
    codes = sp.csr_matrix(codes, dtype=np.float32)
    codes.sort_indices()
    membership = sp.csr_matrix(membership, dtype=bool)
    n_tok, n_feat = codes.shape
    n_conc = membership.shape[1]
    cal = np.asarray(calibration_mask, dtype=bool)
    if membership.shape[0] != n_tok or cal.shape != (n_tok,):
        msg = (f"codes ({n_tok} tokens), membership ({membership.shape[0]}) and calibration_mask "
               f"({cal.shape[0]}) must have one row per token")
        raise ValueError(msg)
    if len(concept_names) != n_conc:
        msg = f"{len(concept_names)} concept names for {n_conc} membership columns"
        raise ValueError(msg)
    thr = np.sort(np.asarray(thresholds, dtype=np.float64))
    if thr.size == 0 or thr.min() < 0 or thr.max() > 1:
        msg = f"thresholds must be fractions of the max in [0, 1], got {list(thresholds)}"
        raise ValueError(msg)
    names_f = list(feature_names) if feature_names is not None else [f"f{i}" for i in range(n_feat)]
    n_lev = thr.size
    test = ~cal
    half = test.astype(np.int8)  # 0 = calibration, 1 = held-out

    max_F = np.zeros(n_feat, np.float32)
    if cal.any():
        max_F = np.maximum(codes[cal].max(axis=0).toarray().ravel(), 0)
    thr_abs_FK = max_F[:, None] * thr[None, :].astype(np.float32)
    level = _levels(codes, thr_abs_FK)

    # true positives and firing counts for half × feature × threshold (× concept)
    B = _level_matrix(codes, level, half, n_lev)
    M = membership.astype(np.int32)
    tp = (B.T.tocsr() @ M).toarray().reshape(2, n_feat, n_lev, n_conc).astype(np.int64)
    tp = _rev_cumsum(tp, axis=2)
    fire = np.bincount(B.indices, minlength=B.shape[1]).reshape(2, n_feat, n_lev).astype(np.int64)
    fire = _rev_cumsum(fire, axis=2)
    pos = np.stack([np.asarray(M[~test].sum(0)).ravel(), np.asarray(M[test].sum(0)).ravel()]).astype(np.int64)
    n_half = np.array([cal.sum(), test.sum()], dtype=np.int64)

    # choose the threshold on the calibration half
    f1_cal_FKC = _safe_div(2 * tp[0], fire[0][:, :, None] + pos[0][None, None, :])
    best_FC = np.argmax(f1_cal_FKC, axis=1)
    fi, ci = np.meshgrid(np.arange(n_feat), np.arange(n_conc), indexing="ij")
    f1_cal = f1_cal_FKC[fi, best_FC, ci]

    # held-out metrics at the chosen threshold
    TP = tp[1][fi, best_FC, ci].astype(np.float64)
    n_fire = fire[1][fi, best_FC].astype(np.float64)
    P = np.broadcast_to(pos[1][None, :], TP.shape).astype(np.float64)
    N = float(n_half[1])
    FP, FN = n_fire - TP, P - TP
    TN = N - TP - FP - FN
    precision = _safe_div(TP, n_fire)
    recall = _safe_div(TP, P)
    f1 = _safe_div(2 * TP, n_fire + P)
    denom = np.sqrt((TP + FP) * (TP + FN) * (TN + FP) * (TN + FN))
    mcc = _safe_div(TP * TN - FP * FN, denom)
    prevalence = P / N if N > 0 else np.zeros_like(P)
    triv = trivial_f1(prevalence)
    odds = ((TP + 0.5) * (TN + 0.5)) / ((FP + 0.5) * (FN + 0.5))
    pval = stats.hypergeom.sf(TP - 1, N, P, n_fire) if N > 0 else np.ones_like(TP)
    pval = np.where(n_fire > 0, np.clip(pval, 0, 1), 1.0)

    if instances is not None:
        hits_KFC, n_inst_C = _domain_hits(level, codes, test, sp.csr_matrix(instances), n_lev)
        dom = _safe_div(hits_KFC[best_FC, fi, ci], np.broadcast_to(n_inst_C[None, :], TP.shape))
        dom = np.where(n_inst_C[None, :] > 0, dom, np.nan)
        n_inst = np.broadcast_to(n_inst_C[None, :], TP.shape)
    else:
        dom = np.full(TP.shape, np.nan)
        n_inst = np.zeros(TP.shape, dtype=np.int64)

    df = pd.DataFrame({
        "feature": np.repeat(np.asarray(names_f, dtype=object), n_conc),
        "concept": np.tile(np.asarray(list(concept_names), dtype=object), n_feat),
        "threshold": thr[best_FC].ravel(),
        "threshold_abs": thr_abs_FK[fi, best_FC].ravel().astype(np.float64),
        "f1_calibration": f1_cal.ravel(),
        "n_fire": n_fire.ravel().astype(np.int64),
        "tp": TP.ravel().astype(np.int64),
        "precision": precision.ravel(),
        "recall": recall.ravel(),
        "f1": f1.ravel(),
        "mcc": mcc.ravel(),
        "prevalence": prevalence.ravel(),
        "trivial_f1": np.asarray(triv).ravel(),
        "domain_recall": dom.ravel(),
        "n_instances": n_inst.ravel().astype(np.int64),
        "odds_ratio": odds.ravel(),
        "p": pval.ravel(),
    })
    df["q"] = benjamini_hochberg(df["p"].to_numpy())
    df["captured"] = ((df["f1"] >= min_f1) & (df["mcc"] >= min_mcc)
                      & (df["f1"] > df["trivial_f1"] + min_margin) & (df["q"] <= fdr))
    return df


def best_per_feature(alignment: pd.DataFrame, *, fdr: float = 0.05) -> pd.DataFrame:
    """Each feature's best concept: highest held-out F1 among rows with q ≤ ``fdr`` (else overall)."""
    a = alignment.assign(_sig=alignment["q"] <= fdr)
    a = a.sort_values(["feature", "_sig", "f1", "mcc"], ascending=[True, False, False, False], kind="mergesort")
    return a.drop_duplicates("feature").drop(columns="_sig").set_index("feature")


def best_per_concept(alignment: pd.DataFrame) -> pd.DataFrame:
    """Each concept's best feature by held-out F1."""
    a = alignment.sort_values(["concept", "f1", "mcc"], ascending=[True, False, False], kind="mergesort")
    return a.drop_duplicates("concept").set_index("concept")
