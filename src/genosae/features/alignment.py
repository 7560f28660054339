"""Align every feature to every concept at once: calibration-chosen thresholds, held-out F1, MCC,
window-level enrichment and BH q-values.

The whole computation is a handful of sparse matrix products. Each stored activation gets a *level*
(how many of the ascending thresholds it exceeds) and a *half* (calibration or held-out, by window);
one product ``B^T @ M`` of a ``[n_tokens, 2 * n_features * n_thresholds]`` indicator matrix with the
``[n_tokens, n_concepts]`` membership matrix then gives the true positives of every feature ×
threshold × concept × half, after a reversed cumulative sum over levels (thresholds are nested).

Selection and scoring use different data: the threshold of each feature × concept, the best feature
of each concept (:func:`best_per_concept`) and the best concept of each feature
(:func:`best_per_feature`) are chosen by calibration F1; every reported metric is computed on the
held-out tokens. The enrichment test takes *windows* as its independent units (adjacent tokens of one
window are not independent): per held-out window ``w`` the token-level association
``s_w = Σ_{t∈w} (x_t - x̄)(y_t - ȳ)`` of firing ``x`` and concept ``y``, and the score statistic
``z = Σ_w s_w / sqrt(Σ_w s_w²)`` (cluster-robust variance, windows as clusters), one-sided against
Student's t with ``n_windows - 1`` degrees of freedom. ``|z| ≤ sqrt(number of windows that carry
the signal)``, so one long run inside one window cannot give a small p. The sums of ``s_w²`` are
expanded into moments that :class:`AlignmentCounts` accumulates chunk by chunk, so the baselines can
stream a store of any size through the same code.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats

from genosae.multitest import benjamini_hochberg

__all__ = [
    "ALIGNMENT_COLUMNS",
    "AlignmentCounts",
    "align_concepts",
    "align_source",
    "align_store",
    "best_per_concept",
    "best_per_feature",
    "calibration_maxima",
    "threshold_matrix",
    "token_concepts",
    "trivial_f1",
    "window_instances",
]

ALIGNMENT_COLUMNS = (
    "feature", "concept", "threshold", "threshold_abs", "f1_calibration", "n_fire", "tp", "precision",
    "recall", "f1", "mcc", "prevalence", "trivial_f1", "domain_recall", "n_instances", "odds_ratio",
    "n_windows", "n_windows_hit", "z", "p", "q", "captured",
)

#: A concept covering more than this share of a chunk's tokens is counted by a dense product (BLAS).
_DENSE_CONCEPT_SHARE = 0.02
#: Dense cells of one per-window block (windows × features × thresholds × concepts) in the moments.
_BLOCK_CELLS = 1 << 22


def trivial_f1(prevalence: np.ndarray | float) -> np.ndarray | float:
    """F1 of a unit that fires on every token: ``2p / (1 + p)`` for concept prevalence ``p``."""
    p = np.asarray(prevalence, dtype=np.float64)
    out = 2 * p / (1 + p)
    return float(out) if out.ndim == 0 else out


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


def _check_thresholds(thresholds: Sequence[float]) -> np.ndarray:
    thr = np.sort(np.asarray(thresholds, dtype=np.float64))
    if thr.size == 0 or thr.min() < 0 or thr.max() > 1:
        msg = f"thresholds must be fractions of the max in [0, 1], got {list(thresholds)}"
        raise ValueError(msg)
    return thr


def threshold_matrix(max_F: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """Absolute thresholds ``[n_features, n_thresholds]``: each fraction (ascending) times each max.

    ``max_F`` is each feature's largest activation on the calibration tokens (negative values count
    as 0).
    """
    thr = _check_thresholds(thresholds)
    max_F = np.maximum(np.asarray(max_F, dtype=np.float32), 0)
    return max_F[:, None] * thr[None, :].astype(np.float32)


def threshold_levels(codes: sp.csr_matrix, thr_abs_FK: np.ndarray) -> np.ndarray:
    """For each stored value, how many of the feature's (ascending) thresholds it exceeds."""
    cols = codes.indices
    level = np.zeros(codes.nnz, dtype=np.int8)
    for k in range(thr_abs_FK.shape[1]):  # K is a handful of thresholds
        level += codes.data > thr_abs_FK[cols, k]
    return level


def _level_matrix(codes: sp.csr_matrix, level: np.ndarray, group: np.ndarray, n_groups: int,
                  n_levels: int) -> sp.csr_matrix:
    """Indicator ``[n_tokens, n_groups * F * K]``: column ``(group * F + feature) * K + (level - 1)``."""
    n_tok, n_feat = codes.shape
    rows = np.repeat(np.arange(n_tok, dtype=np.int64), np.diff(codes.indptr))
    keep = level > 0
    rows = rows[keep]
    cols = (group[rows].astype(np.int64) * n_feat + codes.indices[keep]) * n_levels + (level[keep] - 1)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n_tok))])
    data = np.ones(len(cols), dtype=np.int32)
    return sp.csr_matrix((data, cols, indptr), shape=(n_tok, n_groups * n_feat * n_levels))


def reverse_cumsum(x: np.ndarray, axis: int) -> np.ndarray:
    """Cumulative sum from the end along ``axis`` (counts at level ≥ k from counts at level k)."""
    return np.flip(np.cumsum(np.flip(x, axis), axis), axis)


def safe_divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a / b`` broadcast, 0 where ``b`` is 0 (float64)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return np.divide(a, b, out=np.zeros(np.broadcast_shapes(a.shape, b.shape)), where=b > 0)


def domain_hits(
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


class AlignmentCounts:
    """The sufficient statistics of :func:`align_concepts`, accumulated over chunks of tokens.

    Memory is ``O(n_features × n_thresholds × n_concepts)`` whatever the number of tokens, so a store
    can be streamed through :meth:`add` shard by shard (the neuron and random-direction baselines do).
    Every held-out window must arrive within one :meth:`add` call (it is the unit of the enrichment
    test); :meth:`add` refuses a held-out window seen in an earlier call.

    Parameters
    ----------
    thr_abs_FK
        Absolute thresholds per feature, ascending (:func:`threshold_matrix` of the calibration maxima).
    n_concepts
        Membership columns.
    thresholds
        The fractions behind ``thr_abs_FK`` (reported in the ``threshold`` column).
    """

    def __init__(self, thr_abs_FK: np.ndarray, n_concepts: int, *, thresholds: Sequence[float]) -> None:
        self.thr_abs_FK = np.asarray(thr_abs_FK, dtype=np.float32)
        self.thresholds = _check_thresholds(thresholds)
        n_feat, n_lev = self.thr_abs_FK.shape
        if n_lev != self.thresholds.size:
            msg = f"thr_abs_FK has {n_lev} columns for {self.thresholds.size} thresholds"
            raise ValueError(msg)
        self.n_features, self.n_levels, self.n_concepts = n_feat, n_lev, int(n_concepts)
        shape = (n_feat, n_lev, self.n_concepts)
        self.tp = np.zeros((2, *shape), np.int64)  # per level bin; cumulated in result()
        self.fire = np.zeros((2, n_feat, n_lev), np.int64)
        self.pos = np.zeros((2, self.n_concepts), np.int64)
        self.n_half = np.zeros(2, np.int64)
        # moments of the held-out windows (cumulative over thresholds), float64 sums of integers
        self.n_windows = 0
        self.m_tt, self.m_tf, self.m_tp, self.m_tn, self.m_fp, self.hit = (np.zeros(shape) for _ in range(6))
        self.m_ff, self.m_fn = np.zeros((n_feat, n_lev)), np.zeros((n_feat, n_lev))
        self.m_pp, self.m_pn = np.zeros(self.n_concepts), np.zeros(self.n_concepts)
        self.m_nn = 0.0
        self.windowed: bool | None = None
        self._seen: set[int] = set()

    def add(self, codes: sp.spmatrix | np.ndarray, membership: sp.spmatrix | np.ndarray, *,
            calibration_mask: np.ndarray, window_index: np.ndarray | None = None) -> None:
        """Count one chunk of tokens (``codes [n, F]``, ``membership [n, C]``, both one row per token).

        ``window_index`` (one id per token) enables the window-level test; without it ``p`` is NaN.
        It must be given in every call or in none.
        """
        dense = isinstance(codes, np.ndarray)
        if dense:  # dense units (baselines): BLAS products instead of a half-full sparse matrix
            codes = np.asarray(codes, dtype=np.float32)
        else:
            codes = sp.csr_matrix(codes, dtype=np.float32)
            codes.sort_indices()
        membership = sp.csr_matrix(membership, dtype=bool)
        n_tok = codes.shape[0]
        cal = np.asarray(calibration_mask, dtype=bool)
        if codes.shape[1] != self.n_features or membership.shape[1] != self.n_concepts:
            msg = (f"chunk has {codes.shape[1]} features and {membership.shape[1]} concepts, expected "
                   f"{self.n_features} and {self.n_concepts}")
            raise ValueError(msg)
        if membership.shape[0] != n_tok or cal.shape != (n_tok,):
            msg = (f"codes ({n_tok} tokens), membership ({membership.shape[0]}) and calibration_mask "
                   f"({cal.shape[0]}) must have one row per token")
            raise ValueError(msg)
        windowed = window_index is not None
        if self.windowed is not None and windowed != self.windowed:
            msg = "window_index must be given for every chunk or for none"
            raise ValueError(msg)
        self.windowed = windowed
        test = ~cal
        F, K, C = self.n_features, self.n_levels, self.n_concepts
        M = membership.astype(np.int32)
        if dense:
            self._add_dense(codes, M, cal)
        else:
            level = threshold_levels(codes, self.thr_abs_FK)
            B = _level_matrix(codes, level, test.astype(np.int8), 2, K)  # half 0 = calibration, 1 = held-out
            self.tp += (B.T.tocsr() @ M).toarray().reshape(2, F, K, C)
            self.fire += np.bincount(B.indices, minlength=B.shape[1]).reshape(2, F, K)
        self.pos[0] += np.asarray(M[cal].sum(0)).ravel()
        self.pos[1] += np.asarray(M[test].sum(0)).ravel()
        self.n_half += [int(cal.sum()), int(test.sum())]
        if windowed:
            win = np.asarray(window_index, dtype=np.int64)
            if win.shape != (n_tok,):
                msg = f"window_index has {win.shape[0]} entries for {n_tok} tokens"
                raise ValueError(msg)
            if dense:
                held = np.flatnonzero(test)
                self._add_window_moments(sp.csr_matrix(codes[held]), M[held], win[held], np.ones(held.size, bool))
            else:
                self._add_window_moments(codes, M, win, test)

    def _add_dense(self, codes: np.ndarray, M: sp.csr_matrix, cal: np.ndarray) -> None:
        """Counts of dense codes: per half and level bin, ``indicator^T @ membership`` (float32, exact)."""
        thr = self.thr_abs_FK
        for h, rows in ((0, np.flatnonzero(cal)), (1, np.flatnonzero(~cal))):
            for lo in range(0, rows.size, 1 << 20):  # float32 sums stay exact below 2^24
                idx = rows[lo:lo + (1 << 20)]
                whole = idx.size == codes.shape[0]  # one half only: no copies
                x = codes if whole else codes[idx]
                Mi = sp.csr_matrix(M if whole else M[idx], dtype=np.float32)
                # frequent concepts (codon positions, CDS, ...) by BLAS, rare ones (motif sites) sparse:
                # the same exact integer counts at a fraction of the dense product's work
                freq = np.flatnonzero(Mi.getnnz(axis=0) > _DENSE_CONCEPT_SHARE * max(len(idx), 1))
                rare = np.setdiff1d(np.arange(self.n_concepts), freq)
                m_freq = Mi[:, freq].toarray()
                m_rare_T = Mi[:, rare].T.tocsr()
                cum_tp = np.zeros((self.n_levels + 1, self.n_features, self.n_concepts), np.int64)
                cum_fire = np.empty((self.n_levels + 1, self.n_features), np.int64)
                cum_fire[-1] = 0
                for k in range(self.n_levels):  # fires at threshold k (cumulative), then bins by difference
                    ind = (x > thr[None, :, k]).astype(np.float32)
                    cum_tp[k][:, freq] = np.rint(ind.T @ m_freq).astype(np.int64)
                    cum_tp[k][:, rare] = np.rint(m_rare_T @ ind).T.astype(np.int64)
                    cum_fire[k] = ind.sum(0, dtype=np.int64)
                self.tp[h] += np.moveaxis(cum_tp[:-1] - cum_tp[1:], 0, 1)
                self.fire[h] += (cum_fire[:-1] - cum_fire[1:]).T

    def _add_window_moments(self, codes: sp.csr_matrix, M: sp.csr_matrix, win: np.ndarray,
                            test: np.ndarray) -> None:
        rows = np.flatnonzero(test)
        if rows.size == 0:
            return
        uniq, local = np.unique(win[rows], return_inverse=True)
        again = self._seen.intersection(uniq.tolist())
        if again:
            msg = (f"held-out window(s) {sorted(again)[:5]} arrived in two chunks; pass each window's "
                   "tokens in one AlignmentCounts.add call")
            raise ValueError(msg)
        self._seen.update(uniq.tolist())
        self.n_windows += uniq.size
        F, K, C = self.n_features, self.n_levels, self.n_concepts
        per = max(1, _BLOCK_CELLS // max(F * K * C, 1))  # windows per dense block
        order = np.argsort(local, kind="stable")
        rows, local = rows[order], local[order]
        bounds = np.searchsorted(local, np.arange(0, uniq.size + per, per))
        for a, b in itertools.pairwise(bounds):
            if a >= b:
                continue
            r, g = rows[a:b], local[a:b] - local[a]
            n_g = int(g[-1]) + 1
            sub = codes[r]
            Bg = _level_matrix(sub, threshold_levels(sub, self.thr_abs_FK), g, n_g, K)
            Mg = M[r]
            tp = reverse_cumsum((Bg.T.tocsr() @ Mg).toarray().reshape(n_g, F, K, C).astype(np.float64), 2)
            fw = reverse_cumsum(np.bincount(Bg.indices, minlength=Bg.shape[1]).reshape(n_g, F, K)
                             .astype(np.float64), 2)
            mc = Mg.tocoo()
            pw = np.bincount(g[mc.row] * C + mc.col, minlength=n_g * C).reshape(n_g, C).astype(np.float64)
            nw = np.bincount(g, minlength=n_g).astype(np.float64)
            self.m_tt += np.einsum("gfkc,gfkc->fkc", tp, tp)
            self.m_tf += np.einsum("gfkc,gfk->fkc", tp, fw)
            self.m_tp += np.einsum("gfkc,gc->fkc", tp, pw)
            self.m_tn += np.einsum("gfkc,g->fkc", tp, nw)
            self.m_fp += np.einsum("gfk,gc->fkc", fw, pw)
            self.hit += (tp > 0).sum(0)
            self.m_ff += np.einsum("gfk,gfk->fk", fw, fw)
            self.m_fn += np.einsum("gfk,g->fk", fw, nw)
            self.m_pp += np.einsum("gc,gc->c", pw, pw)
            self.m_pn += pw.T @ nw
            self.m_nn += float(nw @ nw)

    def result(
        self,
        *,
        concept_names: Sequence[str],
        feature_names: Sequence[str] | None = None,
        domain: tuple[np.ndarray, np.ndarray] | None = None,
        min_f1: float = 0.5,
        min_mcc: float = 0.3,
        min_margin: float = 0.1,
        fdr: float = 0.05,
    ) -> pd.DataFrame:
        """The alignment table (see :func:`align_concepts`); ``domain`` = ``(hits_KFC, n_inst_C)``."""
        F, C = self.n_features, self.n_concepts
        if len(concept_names) != C:
            msg = f"{len(concept_names)} concept names for {C} membership columns"
            raise ValueError(msg)
        names_f = list(feature_names) if feature_names is not None else [f"f{i}" for i in range(F)]
        if len(names_f) != F:
            msg = f"{len(names_f)} feature names for {F} features"
            raise ValueError(msg)
        tp = reverse_cumsum(self.tp, axis=2)
        fire = reverse_cumsum(self.fire, axis=2)
        pos, n_half, thr = self.pos, self.n_half, self.thresholds

        # choose the threshold on the calibration half
        f1_cal_FKC = safe_divide(2 * tp[0], fire[0][:, :, None] + pos[0][None, None, :])
        best_FC = np.argmax(f1_cal_FKC, axis=1)
        fi, ci = np.meshgrid(np.arange(F), np.arange(C), indexing="ij")
        f1_cal = f1_cal_FKC[fi, best_FC, ci]

        # held-out metrics at the chosen threshold
        TP = tp[1][fi, best_FC, ci].astype(np.float64)
        n_fire = fire[1][fi, best_FC].astype(np.float64)
        P = np.broadcast_to(pos[1][None, :], TP.shape).astype(np.float64)
        N = float(n_half[1])
        FP, FN = n_fire - TP, P - TP
        TN = N - TP - FP - FN
        precision = safe_divide(TP, n_fire)
        recall = safe_divide(TP, P)
        f1 = safe_divide(2 * TP, n_fire + P)
        denom = np.sqrt((TP + FP) * (TP + FN) * (TN + FP) * (TN + FN))
        mcc = safe_divide(TP * TN - FP * FN, denom)
        prevalence = P / N if N > 0 else np.zeros_like(P)
        triv = trivial_f1(prevalence)
        odds = ((TP + 0.5) * (TN + 0.5)) / ((FP + 0.5) * (FN + 0.5))
        z, pval, n_hit = self._window_test(TP, n_fire, P, N, fi, best_FC, ci)

        if domain is not None:
            hits_KFC, n_inst_C = domain
            dom = safe_divide(hits_KFC[best_FC, fi, ci], np.broadcast_to(n_inst_C[None, :], TP.shape))
            dom = np.where(n_inst_C[None, :] > 0, dom, np.nan)
            n_inst = np.broadcast_to(n_inst_C[None, :], TP.shape)
        else:
            dom = np.full(TP.shape, np.nan)
            n_inst = np.zeros(TP.shape, dtype=np.int64)

        df = pd.DataFrame({
            "feature": np.repeat(np.asarray(names_f, dtype=object), C),
            "concept": np.tile(np.asarray(list(concept_names), dtype=object), F),
            "threshold": thr[best_FC].ravel(),
            "threshold_abs": self.thr_abs_FK[fi, best_FC].ravel().astype(np.float64),
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
            "n_windows": np.full(F * C, self.n_windows if self.windowed else 0, dtype=np.int64),
            "n_windows_hit": n_hit.ravel(),
            "z": z.ravel(),
            "p": pval.ravel(),
        })
        df["q"] = benjamini_hochberg(df["p"].to_numpy())
        df["captured"] = ((df["f1"] >= min_f1) & (df["mcc"] >= min_mcc)
                          & (df["f1"] > df["trivial_f1"] + min_margin) & (df["q"] <= fdr))
        return df

    def _window_test(self, TP: np.ndarray, X: np.ndarray, Y: np.ndarray, N: float, fi: np.ndarray,
                     k: np.ndarray, ci: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Window-clustered score test of firing × concept at the chosen thresholds: ``z``, ``p``, hits."""
        if not self.windowed:
            nan = np.full(TP.shape, np.nan)
            return nan, nan.copy(), np.zeros(TP.shape, np.int64)
        xb = X / N if N > 0 else np.zeros_like(X)
        yb = Y / N if N > 0 else np.zeros_like(Y)
        S = TP - X * yb  # Σ_w s_w = TP - X Y / N
        g = (fi, k, ci)
        tt, tf, tpp, tn, fp = self.m_tt[g], self.m_tf[g], self.m_tp[g], self.m_tn[g], self.m_fp[g]
        ff, fn = self.m_ff[fi, k], self.m_fn[fi, k]
        pp, pn = self.m_pp[ci], self.m_pn[ci]
        scale = tt + yb**2 * ff + xb**2 * pp + (xb * yb) ** 2 * self.m_nn
        V = (scale - 2 * yb * tf - 2 * xb * tpp + 2 * xb * yb * tn + 2 * xb * yb * fp
             - 2 * xb * yb**2 * fn - 2 * xb**2 * yb * pn)
        m = self.n_windows
        ok = (V > 1e-9 * (1.0 + scale)) & (X > 0) & (m >= 2)
        z = np.where(ok, S / np.sqrt(np.where(ok, V, 1.0)), 0.0)
        z = np.clip(z, -np.sqrt(max(m, 1)), np.sqrt(max(m, 1)))  # Cauchy–Schwarz bound (rounding only)
        p = np.where(ok, stats.t.sf(z, df=max(m - 1, 1)), 1.0)
        return z, p, self.hit[g].astype(np.int64)


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
    window_index: np.ndarray | None = None,
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
    window_index
        Window id of each token: the independent unit of the enrichment test. Without it there is
        no valid test (adjacent tokens are not independent): ``p``, ``q`` and ``z`` are NaN and
        nothing is ``captured``.

    Returns
    -------
    DataFrame with one row per feature × concept and columns :data:`ALIGNMENT_COLUMNS`: ``threshold``
    (chosen fraction), ``threshold_abs``, ``f1_calibration``, held-out ``n_fire, tp, precision, recall,
    f1, mcc, prevalence, trivial_f1``, ``domain_recall`` (fraction of held-out concept instances with
    ≥ 1 firing held-out token; NaN without ``instances``), ``n_instances``, ``odds_ratio``
    (token-level, Haldane-corrected; descriptive, not a test), ``n_windows`` (held-out windows = test
    units), ``n_windows_hit`` (held-out windows with ≥ 1 firing concept token), ``z`` and one-sided
    ``p`` of the window-clustered enrichment test (module docstring), BH ``q`` over all rows and
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
    thr = _check_thresholds(thresholds)
    max_F = np.zeros(n_feat, np.float32)
    if cal.any():
        max_F = codes[cal].max(axis=0).toarray().ravel()
    thr_abs_FK = threshold_matrix(max_F, thr)
    counts = AlignmentCounts(thr_abs_FK, n_conc, thresholds=thr)
    counts.add(codes, membership, calibration_mask=cal, window_index=window_index)
    domain = None
    if instances is not None:
        level = threshold_levels(codes, thr_abs_FK)
        domain = domain_hits(level, codes, ~cal, sp.csr_matrix(instances), thr.size)
    return counts.result(concept_names=concept_names, feature_names=feature_names, domain=domain,
                         min_f1=min_f1, min_mcc=min_mcc, min_margin=min_margin, fdr=fdr)


def align_store(
    store: Any,
    units: Mapping[str, Callable[[np.ndarray], np.ndarray]],
    concepts: pd.DataFrame,
    *,
    concept_names: Sequence[str],
    calibration_windows: np.ndarray,
    thresholds: Sequence[float] = (0.0, 0.15, 0.5, 0.6, 0.8),
    batch_size: int = 4096,
    max_tokens: int | None = None,
    exclude_special: bool = True,
    min_f1: float = 0.5,
    min_mcc: float = 0.3,
    min_margin: float = 0.1,
    fdr: float = 0.05,
) -> dict[str, pd.DataFrame]:
    """:func:`align_concepts` for unit sets computed on the fly, streamed over every token of a store.

    Two passes over ``store.iter_shards()`` in batches of whole windows
    (:func:`~genosae.features.activations.iter_token_batches`): the calibration maximum of each unit,
    then the counts (:class:`AlignmentCounts`). Memory is one shard plus
    ``O(n_units × n_thresholds × n_concepts)`` per unit set, whatever the number of tokens, so the
    neuron and random-direction baselines cover the whole atlas.

    Parameters
    ----------
    units
        ``{name: unit set}``; each maps dense activations ``[B, d_model]`` to dense codes ``[B, U]``
        and has ``feature_names`` (e.g. :class:`~genosae.features.activations.LinearUnits`).
    concepts, concept_names
        Concepts table and the membership columns (as :func:`token_concepts`).
    calibration_windows
        Bool per window of ``store.windows``: ``True`` = calibration.

    Returns
    -------
    ``{name: alignment table}`` as :func:`align_concepts` with the window-level test
    (``domain_recall`` is NaN: instances may span batches).
    """
    from genosae.features.activations import iter_token_batches
    from genosae.genome.concepts import ConceptIndex

    cal_w = np.asarray(calibration_windows, dtype=bool)
    thr = _check_thresholds(thresholds)

    def batches():
        return iter_token_batches(store, batch_size=batch_size, exclude_special=exclude_special,
                                  max_tokens=max_tokens)

    max_U = {k: np.zeros(len(u.feature_names), np.float32) for k, u in units.items()}  # type: ignore[attr-defined]
    for acts, tokens in batches():
        cal = cal_w[tokens["window_index"].to_numpy()]
        if cal.any():
            for k, u in units.items():
                max_U[k] = np.maximum(max_U[k], u(acts[cal]).max(axis=0))
    index = ConceptIndex(concepts, list(concept_names))
    counts = {k: AlignmentCounts(threshold_matrix(max_U[k], thr), len(concept_names), thresholds=thr)
              for k in units}
    for acts, tokens in batches():
        win = tokens["window_index"].to_numpy()
        memb, _ = index.label(tokens["chrom"].to_numpy(), tokens["bp_start"].to_numpy(np.int64))
        for k, u in units.items():
            counts[k].add(np.asarray(u(acts)), memb, calibration_mask=cal_w[win], window_index=win)
    return {k: counts[k].result(concept_names=concept_names, feature_names=units[k].feature_names,  # type: ignore[attr-defined]
                                min_f1=min_f1, min_mcc=min_mcc, min_margin=min_margin, fdr=fdr)
            for k in units}


def window_instances(instances: sp.spmatrix, window_index: np.ndarray, n_windows: int) -> sp.csr_matrix:
    """Instance ids made per window: an instance seen in two windows (overlapping windows, both strands)
    counts once in each, so every instance lies in one window and whole-window chunks count exactly."""
    inst = sp.csr_matrix(instances, dtype=np.int64, copy=True)
    rows = np.repeat(np.arange(inst.shape[0]), np.diff(inst.indptr))
    w = np.asarray(window_index, dtype=np.int64)[rows]
    inst.data = np.where(inst.data > 0, (inst.data - 1) * n_windows + w + 1, 0)
    return inst


def calibration_maxima(source: Any, calibration_windows: np.ndarray, *, batch_size: int = 65_536,
                       select: Callable[[pd.DataFrame], np.ndarray] | None = None) -> np.ndarray:
    """Each feature's largest activation on the calibration tokens of a feature source (streamed)."""
    cal_w = np.asarray(calibration_windows, dtype=bool)
    out = np.zeros(len(source.feature_names), np.float32)
    for batch in source.iter_batches(batch_size):
        cal = cal_w[batch.tokens["window_index"].to_numpy()]
        if select is not None:
            cal &= np.asarray(select(batch.tokens), dtype=bool)
        if cal.any():
            out = np.maximum(out, batch.codes[cal].max(axis=0).toarray().ravel())
    return out


def align_source(
    source: Any,
    concepts: pd.DataFrame,
    *,
    concept_names: Sequence[str],
    calibration_windows: np.ndarray,
    thresholds: Sequence[float] = (0.0, 0.15, 0.5, 0.6, 0.8),
    domains: bool = True,
    windowed: bool = True,
    select: Callable[[pd.DataFrame], np.ndarray] | None = None,
    batch_size: int = 65_536,
    min_f1: float = 0.5,
    min_mcc: float = 0.3,
    min_margin: float = 0.1,
    fdr: float = 0.05,
) -> pd.DataFrame:
    """:func:`align_concepts` of a feature source (:class:`~genosae.features.activations.FeatureSource`),
    streamed in whole-window batches: flat memory whatever the number of tokens.

    Two passes: the calibration maxima (:func:`calibration_maxima`), then the counts
    (:class:`AlignmentCounts`) and the domain hits (:func:`domain_hits`, instances made per window by
    :func:`window_instances`). ``select`` (tokens → bool) restricts both passes to some tokens (e.g.
    one strand); ``windowed=False`` skips the window-level test (``p`` NaN).
    """
    from genosae.genome.concepts import ConceptIndex

    cal_w = np.asarray(calibration_windows, dtype=bool)
    thr = _check_thresholds(thresholds)
    names = list(concept_names)
    thr_abs = threshold_matrix(calibration_maxima(source, cal_w, batch_size=batch_size, select=select), thr)
    counts = AlignmentCounts(thr_abs, len(names), thresholds=thr)
    index = ConceptIndex(concepts, names)
    n_win = len(cal_w)
    hits = np.zeros((thr.size, len(source.feature_names), len(names)), np.int64)
    n_inst = np.zeros(len(names), np.int64)
    for batch in source.iter_batches(batch_size):
        codes, tokens = batch.codes, batch.tokens
        if select is not None:
            keep = np.asarray(select(tokens), dtype=bool)
            codes, tokens = codes[keep], tokens.loc[keep].reset_index(drop=True)
        if codes.shape[0] == 0:
            continue
        win = tokens["window_index"].to_numpy(np.int64)
        cal = cal_w[win]
        memb, inst = index.label(tokens["chrom"].to_numpy(), tokens["bp_start"].to_numpy(np.int64))
        counts.add(codes, memb, calibration_mask=cal, window_index=win if windowed else None)
        if domains:
            level = threshold_levels(codes, thr_abs)
            h, n = domain_hits(level, codes, ~cal, window_instances(inst, win, n_win), thr.size)
            hits += h
            n_inst += n
    return counts.result(concept_names=names, feature_names=source.feature_names,
                         domain=(hits, n_inst) if domains else None, min_f1=min_f1, min_mcc=min_mcc,
                         min_margin=min_margin, fdr=fdr)


def best_per_feature(alignment: pd.DataFrame, *, fdr: float = 0.05) -> pd.DataFrame:
    """Each feature's best concept, chosen by calibration F1; its held-out metrics are reported.

    Ties in ``f1_calibration`` go to the first concept in table order. The held-out columns (``f1``,
    ``q``, ``captured``, ...) never take part in the choice, so they are an unbiased score of it.
    ``n_candidates`` is the number of concepts the choice was made among. ``fdr`` is kept for
    backward compatibility and no longer used (significance is a held-out quantity).
    """
    del fdr
    return _best_by_calibration(alignment, "feature")


def best_per_concept(alignment: pd.DataFrame) -> pd.DataFrame:
    """Each concept's best feature, chosen by calibration F1; its held-out metrics are reported.

    Ties in ``f1_calibration`` go to the first feature in table order. ``n_candidates`` is the number
    of features the choice was made among: compare feature sets only with it in view.
    """
    return _best_by_calibration(alignment, "concept")


def _best_by_calibration(alignment: pd.DataFrame, key: str) -> pd.DataFrame:
    """Per ``key`` value, the row with the highest ``f1_calibration`` (first in table order on ties),
    indexed by ``key``, with ``n_candidates`` = the rows it was chosen among."""
    a = alignment.assign(_order=np.arange(len(alignment)))
    a = a.sort_values([key, "f1_calibration", "_order"], ascending=[True, False, True], kind="mergesort")
    n = alignment.groupby(key, sort=False).size()
    out = a.drop_duplicates(key).drop(columns="_order").set_index(key)
    out["n_candidates"] = n.reindex(out.index).to_numpy()
    return out
