"""Known-motif enrichment: the baseline a user runs today (HOMER / AME style), beside the SAE features.

Every configured motif is scanned with FIMO (both strands, ``p < threshold``) on each unit's sequence
(a region, a given sequence, or a sample's haplotypes at one locus). A unit *has* the motif when it
holds at least one hit. Per motif (and per locus for cohorts):

- Fisher's exact test (two-sided) of has-motif vs case/control, with the fractions and the odds
  ratio (Haldane-corrected when a cell is 0);
- a logistic model ``case ~ has_motif + covariates`` (the biomarker covariates: composition for regions,
  sample-sheet columns for cohorts), Firth-penalised so that a motif seen in one group only still gets
  a finite coefficient and a test (:func:`firth_logit`), with its penalised likelihood-ratio p-value;
  ``NaN`` with a ``logit_note`` where there is nothing to fit (the motif in all or no units);
- BH q-values of each test over every motif (× locus) tested.

:func:`cross_reference` then says, per significant motif, which significant SAE biomarkers carry its
name or track it (within-group Spearman |rho| >= ``min_rho`` between the feature's unit profile and
the motif's presence, significant after BH over the biomarker x motif pairs), and per SAE
biomarker, which significant motifs explain it: what the SAE also found, and what it found that no
known motif explains.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sst

from genosae.biomarkers.stats import case_control_masks
from genosae.errors import InputError
from genosae.multitest import benjamini_hochberg

log = logging.getLogger(__name__)

__all__ = ["ENRICHMENT_COLUMNS", "cross_reference", "firth_logit", "known_motif_enrichment", "motif_hit_counts"]

#: Columns of ``known_motifs.csv``.
ENRICHMENT_COLUMNS = ("motif_id", "motif_name", "group", "n_case", "n_control", "n_case_with", "n_control_with",
                      "frac_case", "frac_control", "odds_ratio", "fisher_p", "fisher_q", "logit_coef", "logit_p",
                      "logit_q", "logit_note", "direction")


def motif_hit_counts(sequences: Mapping[str, str], motifs: Sequence[object], *, threshold: float = 1e-4
                     ) -> pd.DataFrame:
    """FIMO hits of every motif per sequence: ``int [n_sequences, n_motifs]`` with the sequence names as
    index and the motif ids as columns (motifs with no hit anywhere keep a column of zeros)."""
    from genosae.genome.motifs import scan_motifs

    names = list(sequences)
    ids = [str(m.id) for m in motifs]  # type: ignore[attr-defined]
    if len(set(ids)) != len(ids):
        raise InputError("two motifs share an id; motif ids must be unique", record="motifs")
    hits = scan_motifs(list(motifs), {n: sequences[n] for n in names}, threshold=threshold)  # type: ignore[arg-type]
    row = pd.Index(names).get_indexer(hits["chrom"].astype(str))
    col = pd.Index(ids).get_indexer(hits["motif_id"].astype(str))
    counts = np.zeros((len(names), len(ids)), dtype=np.int64)
    np.add.at(counts, (row, col), 1)
    return pd.DataFrame(counts, index=pd.Index(names, name="unit"), columns=pd.Index(ids, name="motif_id"))


def firth_logit(X: np.ndarray, y: np.ndarray, *, max_iter: int = 200, tol: float = 1e-7
                ) -> tuple[np.ndarray, float, bool]:
    """Firth-penalised logistic regression (Heinze & Schemper 2002): finite estimates under (quasi-)
    separation, as when a motif occurs in cases only. Returns ``(beta, penalised log-likelihood,
    converged)``; Newton steps on the modified score, halved while the penalised likelihood drops."""
    from scipy.special import expit

    k = X.shape[1]
    beta = np.zeros(k)

    def penalised(b: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        pi = np.clip(expit(X @ b), 1e-12, 1 - 1e-12)
        info = X.T @ (X * (pi * (1 - pi))[:, None])
        sign, logdet = np.linalg.slogdet(info)
        ll = float(np.sum(y * np.log(pi) + (1 - y) * np.log(1 - pi)) + 0.5 * logdet) if sign > 0 else -np.inf
        return ll, pi, info

    ll, pi, info = penalised(beta)
    for _ in range(max_iter):
        inv = np.linalg.pinv(info)
        h = (pi * (1 - pi)) * np.einsum("ij,jk,ik->i", X, inv, X)
        step = inv @ (X.T @ (y - pi + h * (0.5 - pi)))
        for _half in range(30):
            new_ll, new_pi, new_info = penalised(beta + step)
            if new_ll >= ll - 1e-12:
                break
            step = step / 2
        beta = beta + step
        done = float(np.max(np.abs(step))) < tol * (1 + float(np.max(np.abs(beta)))) or abs(new_ll - ll) < 1e-10
        ll, pi, info = new_ll, new_pi, new_info
        if done:
            return beta, ll, True
    return beta, ll, False


def _logit_lrt(y: np.ndarray, x: np.ndarray, cov: np.ndarray) -> tuple[float, float, str]:
    """Coefficient of ``x`` and its penalised likelihood-ratio p in Firth's ``logit(y) ~ 1 + x + cov``."""
    if x.min() == x.max():
        return np.nan, np.nan, "motif in all or no units"
    base = np.column_stack([np.ones(len(y)), cov]) if cov.size else np.ones((len(y), 1))
    b1, l1, ok1 = firth_logit(np.column_stack([base, x]), y)
    _, l0, ok0 = firth_logit(base, y)
    if not (ok1 and ok0):
        return np.nan, np.nan, "did not converge"
    return float(b1[-1]), float(sst.chi2.sf(max(0.0, 2.0 * (l1 - l0)), 1)), ""


def known_motif_enrichment(
    counts: pd.DataFrame,
    obs: pd.DataFrame,
    *,
    motif_names: Mapping[str, str] | None = None,
    case: str = "case",
    control: str = "control",
    condition: str = "condition",
    covariates: Sequence[str] = (),
    group: pd.Series | None = None,
) -> pd.DataFrame:
    """Fisher and logistic tests of every motif's presence vs condition (see the module docstring).

    Parameters
    ----------
    counts
        :func:`motif_hit_counts` (rows = units).
    obs
        Per-unit ``condition`` and covariates, aligned with ``counts``' rows (index = the same units).
    group
        Optional group of each row (cohorts: the locus); each group is tested on its own and BH runs
        over every motif × group.

    Returns
    -------
    DataFrame :data:`ENRICHMENT_COLUMNS`, sorted by ``fisher_p``; ``direction`` is ``case`` when the
    motif is more frequent in cases.
    """
    obs = obs.reindex(counts.index)
    if obs[condition].isna().any():
        raise InputError("some units have no condition; obs must cover every unit of the motif counts",
                         record=condition)
    is_case, is_ctrl = case_control_masks(obs, case, control, condition=condition)
    cov_cols = [c for c in covariates if c in obs.columns]
    cov_all = obs[cov_cols].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64) if cov_cols \
        else np.zeros((len(obs), 0))
    groups = (group.reindex(counts.index).astype(str) if group is not None
              else pd.Series("", index=counts.index))
    names = motif_names or {}
    rows = []
    present_all = counts.to_numpy() > 0
    for g in pd.unique(groups):
        in_g = (groups == g).to_numpy()
        case_g, ctrl_g = is_case & in_g, is_ctrl & in_g
        sel = case_g | ctrl_g
        n1, n0 = int(case_g.sum()), int(ctrl_g.sum())
        if n1 == 0 or n0 == 0:
            continue
        a = present_all[case_g].sum(0)
        c = present_all[ctrl_g].sum(0)
        y = case_g[sel].astype(np.float64)
        cov = cov_all[sel]
        cov = cov[:, np.nanstd(cov, axis=0) > 0] if cov.size else cov
        for j, mid in enumerate(counts.columns):
            table = np.array([[a[j], n1 - a[j]], [c[j], n0 - c[j]]])
            p = float(sst.fisher_exact(table).pvalue) if (a[j] + c[j]) > 0 else 1.0
            t = table + 0.5 if (table == 0).any() else table
            odds = float(t[0, 0] * t[1, 1] / (t[0, 1] * t[1, 0]))
            coef, lp, note = _logit_lrt(y, present_all[sel, j].astype(np.float64), cov)
            rows.append((str(mid), str(names.get(str(mid), "")), str(g), n1, n0, int(a[j]), int(c[j]),
                         a[j] / n1, c[j] / n0, odds, p, coef, lp, note,
                         "case" if a[j] / n1 > c[j] / n0 else ("control" if a[j] / n1 < c[j] / n0 else "none")))
    cols = [c for c in ENRICHMENT_COLUMNS if c not in ("fisher_q", "logit_q")]
    out = pd.DataFrame(rows, columns=cols)
    out["fisher_q"] = benjamini_hochberg(out["fisher_p"].to_numpy()) if len(out) else []
    lp = out["logit_p"].to_numpy(np.float64)
    q = np.full(len(out), np.nan)
    ok = np.isfinite(lp)
    if ok.any():
        q[ok] = benjamini_hochberg(lp[ok])
    out["logit_q"] = q
    out = out.sort_values(["fisher_p", "motif_id", "group"], kind="stable").reset_index(drop=True)
    return out[list(ENRICHMENT_COLUMNS)]


def _norm(name: str) -> str:
    return str(name).strip().upper()


def cross_reference(
    enrichment: pd.DataFrame,
    biomarkers: pd.DataFrame,
    profiles: pd.DataFrame,
    presence: pd.DataFrame,
    condition: pd.Series,
    *,
    alpha: float = 0.05,
    min_rho: float = 0.3,
    n_biomarkers: int = 20,
) -> tuple[pd.DataFrame, dict[str, object]]:
    """Which significant known motifs the SAE biomarkers also found, and which biomarkers no motif explains.

    Parameters
    ----------
    enrichment
        :func:`known_motif_enrichment` (motif-level, ``group`` ``""``).
    biomarkers
        The ranked biomarker table (``feature``, ``q``, optional ``motif_name``/``label``).
    profiles
        Per-unit feature profile (units × features, e.g. the ``mean`` layer).
    presence
        Per-unit motif presence (units × motif ids, >0 = has the motif), same units as ``profiles``.
    condition
        Per-unit group label. A feature *tracks* a motif when its within-group Spearman correlation
        with the motif's presence (groups where the motif varies, weighted by size) reaches ``min_rho``
        **and** is significant: the groups' p-values combined by Stouffer's method, BH over every
        biomarker × motif pair at ``alpha`` (so that in a small design a chance |rho| of 0.3 does not
        count). Within groups, so that a feature which merely follows the condition is not "explained" by
        every condition-enriched motif.

    Returns
    -------
    table
        One row per significant SAE biomarker (``q <= alpha``, best ``n_biomarkers``): ``feature``,
        ``motif_name`` (its null-controlled name, if any), ``explained_by`` (significant motifs that
        name it or that it tracks, with rho) and ``explained``.
    summary
        ``motifs_significant``, ``motifs_found_by_sae`` ({motif: [features]}), ``motifs_missed``,
        ``biomarkers_unexplained`` and the two one-line sentences ``line_found`` / ``line_unexplained``.
    """
    sig_m = enrichment[(enrichment["fisher_q"] <= alpha) & (enrichment["group"].astype(str) == "")]
    sig_m = sig_m.drop_duplicates("motif_id")
    bm = biomarkers[biomarkers["q"] <= alpha].head(n_biomarkers)
    units = profiles.index.intersection(presence.index)
    prof = profiles.loc[units]
    pres = (presence.loc[units] > 0).astype(np.float64)
    groups = condition.reindex(units).astype(str).to_numpy()

    def within(a: pd.Series, b: pd.Series) -> tuple[float, float]:
        """Size-weighted within-group Spearman rho and a Stouffer-combined two-sided p."""
        num = den = z = w2 = 0.0
        for g in np.unique(groups):
            m = groups == g
            if m.sum() >= 3 and a[m].nunique() > 1 and b[m].nunique() > 1:
                r = sst.spearmanr(a[m], b[m])
                n = float(m.sum())
                num, den = num + n * float(r.statistic), den + n
                z += np.sqrt(n) * np.sign(r.statistic) * sst.norm.isf(max(float(r.pvalue), 1e-300) / 2)
                w2 += n
        if not den:
            return np.nan, np.nan
        return num / den, float(2 * sst.norm.sf(abs(z) / np.sqrt(w2)))

    feats = bm["feature"].astype(str).tolist()
    fnames = bm.get("motif_name", pd.Series("", index=bm.index)).fillna("").astype(str).tolist()
    motifs = list(zip(sig_m["motif_id"].astype(str), sig_m["motif_name"].astype(str), strict=True))
    pairs = [(i, j, *(within(prof[f], pres[mid]) if f in prof.columns and mid in pres.columns else (np.nan, np.nan)))
             for i, f in enumerate(feats) for j, (mid, _) in enumerate(motifs)]
    p_pairs = np.array([pp for *_, pp in pairs], dtype=np.float64)
    q_pairs = np.full(len(pairs), np.nan)
    ok = np.isfinite(p_pairs)
    if ok.any():  # BH over every biomarker x enriched-motif pair tested
        q_pairs[ok] = benjamini_hochberg(p_pairs[ok])
    rows, found = [], {str(n): [] for n in sig_m["motif_name"]}
    hits: list[list[str]] = [[] for _ in feats]
    for (i, j, rho, _), q in zip(pairs, q_pairs, strict=True):
        mname = motifs[j][1]
        named = bool(fnames[i]) and _norm(fnames[i]) == _norm(mname)
        tracks = np.isfinite(rho) and abs(rho) >= min_rho and q <= alpha
        if named or tracks:
            hits[i].append(f"{mname} (rho {rho:+.2f}, q {q:.2g}{', named' if named else ''})")
            found[mname].append(feats[i])
    rows = [(f, name, "; ".join(h), bool(h)) for f, name, h in zip(feats, fnames, hits, strict=True)]
    table = pd.DataFrame(rows, columns=["feature", "motif_name", "explained_by", "explained"])
    found_by = {m: fs for m, fs in found.items() if fs}
    missed = [m for m, fs in found.items() if not fs]
    unexplained = table.loc[~table["explained"], "feature"].tolist() if len(table) else []
    line_found = (f"known motifs enriched (Fisher q <= {alpha:g}): {len(sig_m)}; found by SAE biomarkers: "
                  + (", ".join(f"{m} ({', '.join(fs)})" for m, fs in found_by.items()) or "none")
                  + (f"; missed: {', '.join(missed[:10])}" + (" ..." if len(missed) > 10 else "") if missed else ""))
    line_unexpl = (f"SAE biomarkers (q <= {alpha:g}) no enriched known motif explains: {len(unexplained)} of "
                   f"{len(table)}" + (f" ({', '.join(unexplained[:10])})" if unexplained else ""))
    summary = {"motifs_significant": sig_m["motif_name"].astype(str).tolist(), "motifs_found_by_sae": found_by,
               "motifs_missed": missed, "biomarkers_unexplained": unexplained,
               "line_found": line_found, "line_unexplained": line_unexpl, "min_rho": min_rho}
    return table, summary
