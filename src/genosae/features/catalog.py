"""The feature catalogue: one row per feature with its best concept, motif, loci and a short label.

Also the baseline summary (best SAE feature vs best neuron vs best random direction per concept),
replicate matching between two SAEs, forward/reverse-strand alignment and the AnnData export.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from genosae._io import atomic_path
from genosae.features.activations import FeatureSource, segment_max, segment_sum
from genosae.features.alignment import align_source, best_per_concept, best_per_feature

__all__ = [
    "MOTIF_LABEL_COLUMNS",
    "baseline_summary",
    "build_catalog",
    "clearly_captured",
    "feature_labels",
    "feature_statistics",
    "iter_window_feature_blocks",
    "match_saes",
    "motif_labels",
    "strand_alignment",
    "window_feature_matrix",
    "write_feature_anndata",
]

MatchMethod = Literal["hungarian", "max"]
_MATCH_METHODS: tuple[str, ...] = ("hungarian", "max")


#: Log-spaced bins per feature behind the catalogue's quantiles: from max × 1e-6 to max, so a
#: quantile is within 0.7 % (one bin) of the exact one.
QUANTILE_BINS = 2048
_QUANTILE_DECADES = 6.0


def _bin_of(values: np.ndarray, max_of: np.ndarray) -> np.ndarray:
    ratio = np.log10(np.maximum(values, 1e-30) / np.maximum(max_of, 1e-30))
    b = np.floor((ratio + _QUANTILE_DECADES) * QUANTILE_BINS / _QUANTILE_DECADES).astype(np.int64)
    return np.clip(b, 0, QUANTILE_BINS - 1)


def _hist_quantiles(hist_FB: np.ndarray, max_F: np.ndarray, qs: Sequence[float]) -> np.ndarray:
    """Quantiles ``[F, len(qs)]`` of each feature's positive activations from its log histogram: the
    two order statistics around ``q (n - 1)`` (each placed inside its bin) linearly interpolated, as
    :func:`numpy.quantile` does with the exact values."""
    n = hist_FB.sum(1)
    cum = np.cumsum(hist_FB, axis=1)
    step = _QUANTILE_DECADES / QUANTILE_BINS

    def order_stat(i: np.ndarray) -> np.ndarray:  # value of the i-th smallest (0-based), per feature
        b = np.minimum((cum <= i[:, None]).sum(1), QUANTILE_BINS - 1)
        inside = np.take_along_axis(hist_FB, b[:, None], 1)[:, 0]
        before = np.take_along_axis(cum, b[:, None], 1)[:, 0] - inside
        frac = np.clip(np.divide(i - before + 0.5, inside, out=np.zeros(len(i)), where=inside > 0), 0, 1)
        return np.minimum(max_F * 10.0 ** ((b + frac) * step - _QUANTILE_DECADES), max_F)

    out = np.full((hist_FB.shape[0], len(qs)), np.nan)
    for j, q in enumerate(qs):  # a handful of quantiles
        pos = q * np.maximum(n - 1, 0)
        lo = np.floor(pos)
        v_lo, v_hi = order_stat(lo), order_stat(np.minimum(lo + 1, np.maximum(n - 1, 0)))
        out[:, j] = np.where(n > 0, v_lo + (pos - lo) * (v_hi - v_lo), np.nan)
    return out


def feature_statistics(
    source: FeatureSource,
    *,
    quantiles: Sequence[float] = (0.5, 0.9, 0.99),
    gc_content: Callable[[pd.DataFrame], np.ndarray] | None = None,
    batch_size: int = 65_536,
) -> pd.DataFrame:
    """Per feature, streamed over the source (two passes, flat memory).

    Returns
    -------
    DataFrame indexed by feature: ``index, frequency`` (share of tokens with a nonzero activation),
    ``n_active, max_activation``, ``q50, q90, q99`` (of the positive activations; from a
    :data:`QUANTILE_BINS`-bin log histogram, within 0.7 %) and, with ``gc_content`` (tokens → GC
    fraction around each token), ``gc_corr`` (Pearson r of activation with GC over all tokens).
    """
    names = list(source.feature_names)
    F = len(names)
    n_tok, n_active, max_F = 0, np.zeros(F, np.int64), np.zeros(F, np.float32)
    sx, sxx, sxy, sy, syy = np.zeros(F), np.zeros(F), np.zeros(F), 0.0, 0.0
    for batch in source.iter_batches(batch_size):
        c = batch.codes
        n_tok += c.shape[0]
        n_active += np.bincount(c.indices, minlength=F)
        if c.nnz:
            max_F = np.maximum(max_F, c.max(axis=0).toarray().ravel())
        if gc_content is not None:
            y = np.asarray(gc_content(batch.tokens), dtype=np.float64)
            sx += np.bincount(c.indices, weights=c.data, minlength=F)
            sxx += np.bincount(c.indices, weights=c.data.astype(np.float64) ** 2, minlength=F)
            sxy += c.T @ y
            sy, syy = sy + y.sum(), syy + y @ y
    hist = np.zeros((F, QUANTILE_BINS), np.int64)
    for batch in source.iter_batches(batch_size):
        c = batch.codes
        pos = c.data > 0
        cols = c.indices[pos].astype(np.int64)
        hist += np.bincount(cols * QUANTILE_BINS + _bin_of(c.data[pos], max_F[cols]),
                            minlength=F * QUANTILE_BINS).reshape(F, QUANTILE_BINS)
    stats = pd.DataFrame({"index": np.arange(F), "frequency": n_active / max(n_tok, 1), "n_active": n_active,
                          "max_activation": max_F}, index=pd.Index(names, name="feature"))
    qv = _hist_quantiles(hist, max_F.astype(np.float64), quantiles)
    for j, q in enumerate(quantiles):
        stats[f"q{round(q * 100):d}"] = qv[:, j]
    if gc_content is not None:
        var_x = sxx - sx**2 / max(n_tok, 1)
        cov = sxy - sx * sy / max(n_tok, 1)
        var_y = syy - sy**2 / max(n_tok, 1)
        denom = np.sqrt(np.maximum(var_x, 0) * max(var_y, 0))
        stats["gc_corr"] = np.divide(cov, denom, out=np.zeros(F), where=denom > 0)
    return stats


def _top_loci(sites: pd.DataFrame, feature_names: Sequence[str], n: int, genes: pd.DataFrame | None) -> pd.Series:
    """``chrom:start-end`` of each feature's top ``n`` sites (:func:`~genosae.features.motifs.top_sites`,
    one per window), with nearest gene."""
    sites = sites[sites["rank"] < n].reset_index(drop=True) if len(sites) else sites
    if sites.empty:
        return pd.Series("", index=list(feature_names))
    locus = (sites["chrom"].astype(str) + ":" + sites["bp_start"].astype(str) + "-"
             + sites["bp_end"].astype(str))
    if genes is not None and len(genes):
        import bioframe

        q = pd.DataFrame({"chrom": sites["chrom"].astype(str), "start": sites["bp_start"].astype(np.int64),
                          "end": sites["bp_end"].astype(np.int64), "_i": np.arange(len(sites))})
        g = genes[["chrom", "start", "end", "name"]].copy()
        near = bioframe.closest(q, g, suffixes=("", "_g"))
        near = near.dropna(subset=["name_g"]).drop_duplicates("_i").set_index("_i")
        gene = pd.Series("", index=np.arange(len(sites)), dtype=object)
        gene.loc[near.index] = " (" + near["name_g"].astype(str) + ")"
        locus = locus + gene.to_numpy()
    sites = sites.assign(locus=locus.to_numpy())
    joined = sites.groupby("feature", sort=True)["locus"].agg("; ".join)
    names = np.asarray(list(feature_names), dtype=object)
    return pd.Series(joined.to_numpy(), index=names[joined.index.to_numpy()]).reindex(list(feature_names),
                                                                                      fill_value="")


#: Motif columns of the catalogue (:func:`motif_labels` and :func:`~genosae.features.motifs.name_features`).
MOTIF_LABEL_COLUMNS = ("motif_name_share", "motif_name_flagged", "motif_site_f1", "capture_motif",
                       "capture_f1", "motif_label", "motif_label_source")


def motif_labels(
    names: pd.DataFrame | None,
    capture: pd.DataFrame | None = None,
    site_f1: pd.DataFrame | None = None,
    *,
    index: pd.Index,
    min_f1: float = 0.5,
    max_share: float = 0.05,
    primary: str = "sae",
) -> pd.DataFrame:
    """Each feature's motif label from its Tomtom name and where it fires (FIMO site capture).

    The rule: ``motif_label = X`` when the feature is *named* X (``motif_name``: Tomtom q, column
    shuffles and the pseudo-feature null all passed, :func:`~genosae.features.motifs.name_features`)
    — source ``"tomtom+sites"`` when its held-out site F1 for X is ≥ ``min_f1``, else ``"tomtom"``;
    otherwise ``X`` when the feature is the calibration-chosen unit of the ``primary`` set for motif
    X in the capture table and X is ``captured`` there (held-out site F1 ≥ ``min_f1`` and beats the
    random directions by the margin) — source ``"sites"``; otherwise empty.

    Returns
    -------
    DataFrame on ``index`` with :data:`MOTIF_LABEL_COLUMNS`: ``motif_name_share`` (share of all
    features carrying this feature's motif name), ``motif_name_flagged`` (share > ``max_share``),
    ``motif_site_f1`` (held-out site F1 for the named motif; NaN when unnamed or the motif has too
    few sites), ``capture_motif``/``capture_f1`` (the captured motif this feature is chosen for, if
    any), ``motif_label`` and ``motif_label_source``.
    """
    out = pd.DataFrame(index=index)
    name = (names["motif_name"] if names is not None and "motif_name" in names else pd.Series(dtype=object))
    name = name.reindex(index)
    named = name.notna() & (name.astype(str) != "")
    share = name[named].map(name[named].value_counts() / max(len(index), 1))
    out["motif_name_share"] = share.reindex(index)
    out["motif_name_flagged"] = out["motif_name_share"].fillna(0) > max_share
    mid = names["motif_id"].reindex(index) if names is not None and "motif_id" in names else pd.Series(None, index=index)
    f1 = np.full(len(index), np.nan)
    if site_f1 is not None and len(site_f1):
        stacked = site_f1.stack()
        keys = list(zip(index, mid.to_numpy(), strict=True))
        f1 = np.array([stacked.get(k, np.nan) if isinstance(k[1], str) else np.nan for k in keys], dtype=np.float64)
    out["motif_site_f1"] = np.where(named.to_numpy(), f1, np.nan)
    out["capture_motif"] = pd.Series(None, index=index, dtype=object)
    out["capture_f1"] = np.nan
    if capture is not None and len(capture) and f"{primary}_unit" in capture:
        cap = capture[capture["captured"].astype(bool)].sort_values(f"{primary}_f1", ascending=False,
                                                                     kind="mergesort")
        cap = cap.drop_duplicates(f"{primary}_unit").set_index(f"{primary}_unit")
        cap = cap[cap.index.isin(index)]
        out.loc[cap.index, "capture_motif"] = cap["motif_name"].to_numpy()
        out.loc[cap.index, "capture_f1"] = cap[f"{primary}_f1"].to_numpy()
    by_sites = out["capture_motif"].notna() & ~named
    both = named & (out["motif_site_f1"] >= min_f1)
    out["motif_label"] = np.where(named, name.astype(object), np.where(by_sites, out["capture_motif"], ""))
    out["motif_label_source"] = np.select([both, named, by_sites], ["tomtom+sites", "tomtom", "sites"], "")
    return out


def feature_labels(catalog: pd.DataFrame, *, fdr: float = 0.05, gc_corr: float = 0.5) -> pd.Series:
    """Short labels: ``"tRNA (F1 0.82)"``, ``"motif REB1 (Tomtom q 1e-04, sites F1 0.71)"``,
    ``"GC-rich (composition)"``, ``"unassigned"`` (a captured concept wins over a motif label, which
    wins over composition).

    The motif part comes from ``motif_label`` (:func:`motif_labels`) only, never from the raw best
    Tomtom match (``best_motif``/``motif_q``). ``fdr`` is kept for backward compatibility.
    """
    del fdr
    labels = pd.Series("unassigned", index=catalog.index, dtype=object)
    if "gc_corr" in catalog:
        gc = catalog["gc_corr"].abs() >= gc_corr
        rich = np.where(catalog["gc_corr"] > 0, "GC-rich (composition)", "AT-rich (composition)")
        labels[gc] = rich[gc.to_numpy()]
    if "motif_label" in catalog:
        mot = catalog["motif_label"].fillna("").astype(str) != ""
        for f in catalog.index[mot]:  # labelled features only
            row = catalog.loc[f]
            src = str(row.get("motif_label_source", ""))
            why = []
            if src.startswith("tomtom"):
                why.append(f"Tomtom q {row['motif_q']:.0e}")
            f1 = row.get("motif_site_f1") if src == "tomtom+sites" else row.get("capture_f1")
            if "sites" in src and pd.notna(f1):
                why.append(f"sites F1 {f1:.2f}")
            labels[f] = f"motif {row['motif_label']} ({', '.join(why)})"
    cap = catalog["captured"].fillna(False).astype(bool)
    labels[cap] = [f"{c} (F1 {f:.2f})" for c, f in zip(catalog.loc[cap, "best_concept"], catalog.loc[cap, "f1"],
                                                          strict=True)]
    return labels


def build_catalog(
    stats: pd.DataFrame,
    alignment: pd.DataFrame,
    *,
    sites: pd.DataFrame | None = None,
    motif_names: pd.DataFrame | None = None,
    motif_capture: pd.DataFrame | None = None,
    motif_site_f1: pd.DataFrame | None = None,
    codon: pd.DataFrame | None = None,
    genes: pd.DataFrame | None = None,
    replicates: pd.DataFrame | None = None,
    strand: pd.DataFrame | None = None,
    n_loci: int = 3,
    fdr: float = 0.05,
    min_f1: float = 0.5,
    max_motif_share: float = 0.05,
) -> pd.DataFrame:
    """One row per feature.

    Parameters
    ----------
    stats
        :func:`feature_statistics` of the SAE's feature source (frequency, maximum, quantiles, GC
        correlation), indexed by feature name.
    alignment
        :func:`~genosae.features.alignment.align_source` output for the same features.
    sites
        :func:`~genosae.features.motifs.top_sites` of the features (≥ ``n_loci`` per feature): the
        ``top_loci`` column.
    motif_names
        :func:`~genosae.features.motifs.name_features` output (indexed by feature name): the raw best
        Tomtom match (``best_motif``, ``motif_q``, ...) and the null-controlled ``motif_name``.
    motif_capture, motif_site_f1
        :func:`~genosae.features.motif_capture.motif_capture` outputs; with ``motif_names`` they
        decide ``motif_label`` (:func:`motif_labels`, threshold ``min_f1``; a name shared by more
        than ``max_motif_share`` of the features is flagged).
    codon
        :func:`~genosae.features.motifs.codon_preference` output (indexed by feature name).
    genes
        ``chrom, start, end, name`` for the nearest gene of each top locus.
    replicates, strand
        :func:`match_saes` and :func:`strand_alignment` outputs, joined by feature.

    Returns
    -------
    DataFrame indexed by ``feature`` with ``index, frequency, n_active, max_activation, q50, q90, q99,
    best_concept, threshold, f1_calibration, f1, precision, recall, mcc, trivial_f1, domain_recall, q,
    captured, n_concept_candidates, n_captured`` (``best_concept`` chosen by calibration F1 among
    ``n_concept_candidates`` concepts, the other metrics held-out),
    the motif columns (:data:`~genosae.features.motifs.NAMING_COLUMNS` and :data:`MOTIF_LABEL_COLUMNS`),
    ``gc_corr`` when ``stats`` has it, ``top_loci``, optional codon/replicate/strand columns and ``label``.
    """
    cat = stats.drop(columns=[c for c in ("gc_corr",) if c in stats]).copy()
    cat.index.name = "feature"
    best = best_per_feature(alignment, fdr=fdr)
    cols = ["concept", "threshold", "f1_calibration", "f1", "precision", "recall", "mcc", "trivial_f1",
            "domain_recall", "q", "captured", "n_candidates"]
    cat = cat.join(best[[c for c in cols if c in best]]
                   .rename(columns={"concept": "best_concept", "n_candidates": "n_concept_candidates"}))
    cat["captured"] = cat["captured"].fillna(False).astype(bool)
    cat["n_captured"] = alignment.groupby("feature")["captured"].sum().reindex(cat.index, fill_value=0)
    from genosae.features.motifs import NAMING_COLUMNS

    naming_cols = [c for c in NAMING_COLUMNS if c != "feature"]
    if motif_names is not None and len(motif_names):
        cat = cat.join(motif_names[[c for c in naming_cols if c in motif_names]])
    for c in naming_cols:
        if c not in cat:
            cat[c] = np.nan if c.endswith(("_p", "_q", "_ic")) else None
    cat = cat.join(motif_labels(motif_names, motif_capture, motif_site_f1, index=cat.index, min_f1=min_f1,
                                max_share=max_motif_share))
    if "gc_corr" in stats:
        cat["gc_corr"] = stats["gc_corr"].reindex(cat.index)
    cat["top_loci"] = _top_loci(sites if sites is not None else pd.DataFrame(), list(cat.index), n_loci, genes)
    for extra in (codon, replicates, strand):
        if extra is not None and len(extra):
            cat = cat.join(extra)
    cat["label"] = feature_labels(cat, fdr=fdr)
    return cat


def baseline_summary(alignments: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per concept, each feature set's best unit under one rule (``{"sae": ..., "neuron": ..., "random": ...}``).

    The unit (and its threshold) is chosen by calibration F1 and scored on the held-out windows, the
    same rule for every set (:func:`~genosae.features.alignment.best_per_concept`); a set with more
    candidates has more chances, so each set's candidate count is reported beside its F1.

    Returns
    -------
    DataFrame indexed by concept with ``prevalence`` / ``trivial_f1`` (held-out, from the first set)
    and, for each set, ``best_{set}_f1`` (held-out), ``best_{set}_f1_calibration``,
    ``best_{set}_feature`` and ``n_{set}_candidates`` (units compared).
    """
    out = None
    for name, a in alignments.items():
        b = best_per_concept(a)
        part = b[["f1", "f1_calibration", "feature", "n_candidates"]].rename(columns={
            "f1": f"best_{name}_f1", "f1_calibration": f"best_{name}_f1_calibration",
            "feature": f"best_{name}_feature", "n_candidates": f"n_{name}_candidates"})
        if out is None:
            out = b[["prevalence", "trivial_f1"]].join(part)
        else:
            out = out.join(part, how="outer")
    return out if out is not None else pd.DataFrame()


def clearly_captured(summary: pd.DataFrame, col: str, f1: float, margin: float = 0.1) -> pd.Series:
    """Concepts of a :func:`baseline_summary` whose held-out ``col`` (e.g. ``best_sae_f1``) is at least
    ``f1`` and clears the trivial F1 (a unit firing everywhere) by more than ``margin``."""
    return (summary[col] >= f1) & (summary[col] > summary["trivial_f1"] + margin)


def _decoder(sae: Any) -> np.ndarray:
    w = sae.W_dec if hasattr(sae, "W_dec") else sae
    if hasattr(w, "detach"):
        w = w.detach().float().cpu().numpy()
    w = np.asarray(w, dtype=np.float64)
    return w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)


def match_saes(
    sae_a: Any,
    sae_b: Any,
    *,
    method: MatchMethod = "hungarian",
    best_concept_a: pd.Series | None = None,
    best_concept_b: pd.Series | None = None,
    min_cosine: float = 0.7,
) -> pd.DataFrame:
    """Match each feature of ``sae_a`` to one of ``sae_b`` by decoder cosine.

    Parameters
    ----------
    sae_a, sae_b
        SAEs with ``W_dec [d_sae, d_in]`` (or the matrices themselves).
    method
        ``"hungarian"`` (one-to-one, ``scipy.optimize.linear_sum_assignment``) or ``"max"`` (best
        cosine, many-to-one).
    best_concept_a, best_concept_b
        Captured best concept per feature (index ``f0..``; NaN/None when nothing is captured).
    min_cosine
        ``replicates`` needs at least this cosine (and the same captured concept when given).

    Returns
    -------
    DataFrame indexed by feature (``f{i}`` of ``sae_a``): ``match`` (``f{j}`` of ``sae_b``),
    ``match_cosine``, ``match_concept`` and ``replicates``.
    """
    if method not in _MATCH_METHODS:
        msg = f"method must be one of {_MATCH_METHODS}, got {method!r}"
        raise ValueError(msg)
    a, b = _decoder(sae_a), _decoder(sae_b)
    if a.shape[1] != b.shape[1]:
        msg = f"the SAEs read different widths ({a.shape[1]} vs {b.shape[1]}); match SAEs of one layer"
        raise ValueError(msg)
    cos = a @ b.T
    if method == "hungarian":
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(-cos)
        match = np.full(len(a), -1)
        match[rows] = cols
    else:
        match = cos.argmax(1)
    ok = match >= 0
    mc = np.where(ok, cos[np.arange(len(a)), np.maximum(match, 0)], np.nan)
    names_a = [f"f{i}" for i in range(len(a))]
    df = pd.DataFrame({"match": [f"f{j}" if j >= 0 else None for j in match], "match_cosine": mc},
                      index=pd.Index(names_a, name="feature"))
    rep = df["match_cosine"].to_numpy() >= min_cosine
    if best_concept_a is not None and best_concept_b is not None:
        ca = best_concept_a.reindex(df.index)
        cb = best_concept_b.reindex(df["match"]).to_numpy()
        df["match_concept"] = cb
        rep &= ca.notna().to_numpy() & (ca.to_numpy() == cb)
    df["replicates"] = rep
    return df


def strand_alignment(
    source: FeatureSource,
    windows: pd.DataFrame,
    concepts: pd.DataFrame,
    calibration_windows: np.ndarray,
    concept_names: Sequence[str],
    best_concept: pd.Series,
    *,
    thresholds: Sequence[float] = (0.0, 0.15, 0.5, 0.6, 0.8),
    batch_size: int = 65_536,
) -> pd.DataFrame:
    """Held-out F1 of each feature's best concept on ``+`` windows and on ``-`` windows separately
    (each strand aligned on its own, thresholds chosen on its calibration tokens; streamed).

    Returns an empty frame when the source holds one orientation only.

    Returns
    -------
    DataFrame indexed by feature with ``f1_forward`` and ``f1_reverse``.
    """
    strand_w = windows["strand"].to_numpy() if "strand" in windows else np.full(len(windows), "+")
    present = source.window_counts(len(windows)) > 0
    if not ((strand_w[present] == "+").any() and (strand_w[present] == "-").any()):
        return pd.DataFrame()
    out = pd.DataFrame(index=pd.Index(list(source.feature_names), name="feature"))
    for s, col in (("+", "f1_forward"), ("-", "f1_reverse")):
        a = align_source(source, concepts, concept_names=concept_names, calibration_windows=calibration_windows,
                         thresholds=thresholds, domains=False, windowed=False, batch_size=batch_size,
                         select=lambda t, s=s: strand_w[t["window_index"].to_numpy()] == s)
        f1 = a.set_index(["feature", "concept"])["f1"]
        keys = list(zip(out.index, best_concept.reindex(out.index), strict=True))
        out[col] = [f1.get(k, np.nan) for k in keys]
    return out


#: Elements per HDF5 chunk of the appended sparse arrays of ``feature_acts.h5ad``.
H5AD_CHUNK = 65_536


def iter_window_feature_blocks(source: FeatureSource, n_windows: int, *, batch_size: int = 65_536
                               ) -> Iterator[tuple[int, sp.csr_matrix, sp.csr_matrix]]:
    """Max and mean activation of each feature per window, as consecutive row blocks (streamed).

    Yields ``(first_window, max, mean)``: float32 CSR ``[n_rows, n_features]`` for windows
    ``first_window .. first_window + n_rows - 1``; the blocks cover ``0 .. n_windows - 1`` in order
    (windows without tokens are empty rows), so memory holds one batch's windows at a time.
    """
    n_feat = len(source.feature_names)

    def empty(n: int) -> sp.csr_matrix:
        return sp.csr_matrix((n, n_feat), dtype=np.float32)

    next_row = 0
    for batch in source.iter_batches(batch_size):
        win = batch.tokens["window_index"].to_numpy(np.int64)
        if win.size == 0:
            continue
        lo, hi = int(win.min()), int(win.max()) + 1
        if lo < next_row or hi > n_windows:
            msg = (f"feature batches must come in ascending window order within 0..{n_windows - 1}; "
                   f"got windows {lo}..{hi - 1} after {next_row - 1}")
            raise ValueError(msg)
        if lo > next_row:
            yield next_row, empty(lo - next_row), empty(lo - next_row)
        local = win - lo
        n_tok = np.bincount(local, minlength=hi - lo).astype(np.float64)
        mx = sp.csr_matrix(segment_max(batch.codes, local, hi - lo), dtype=np.float32)
        sums = segment_sum(batch.codes.astype(np.float64), local, hi - lo)
        inv = sp.diags(np.divide(1.0, n_tok, out=np.zeros_like(n_tok), where=n_tok > 0))
        yield lo, mx, sp.csr_matrix(inv @ sums, dtype=np.float32)
        next_row = hi
    if next_row < n_windows:
        yield next_row, empty(n_windows - next_row), empty(n_windows - next_row)


def window_feature_matrix(source: FeatureSource, n_windows: int, *, batch_size: int = 65_536
                          ) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Max and mean activation of each feature in each window (``[n_windows, n_features]``, sparse, in
    memory; :func:`write_feature_anndata` writes the same blocks to disk without holding them)."""
    blocks = list(iter_window_feature_blocks(source, n_windows, batch_size=batch_size))
    if not blocks:
        empty = sp.csr_matrix((0, len(source.feature_names)), dtype=np.float32)
        return empty, empty.copy()
    return (sp.csr_matrix(sp.vstack([b[1] for b in blocks], format="csr"), dtype=np.float32),
            sp.csr_matrix(sp.vstack([b[2] for b in blocks], format="csr"), dtype=np.float32))


def write_feature_anndata(
    acts: FeatureSource,
    windows: pd.DataFrame,
    catalog: pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    uns: dict | None = None,
    batch_size: int = 65_536,
) -> Path:
    """Write ``feature_acts.h5ad``: windows × features, streamed (one batch of windows in memory).

    Layout: ``X`` = max activation per window (sparse float32), ``layers["max"]`` (same) and
    ``layers["mean"]`` (mean over the window's tokens); ``obs`` = the windows table (index
    ``window_id``); ``var`` = the catalogue (index = feature name); ``uns["genosae"]`` = ``uns``.
    The matrices are appended block by block (:func:`iter_window_feature_blocks`) into the file,
    which appears at ``path`` only when complete.
    """
    import anndata as ad
    import h5py
    from anndata.io import sparse_dataset, write_elem

    obs = windows.copy()
    obs.index = pd.Index(obs["window_id"].astype(str).to_numpy(), name="window")
    obs = obs.drop(columns=[c for c in ("sequence",) if c in obs])
    for c in obs.columns:
        if obs[c].dtype == object:
            obs[c] = obs[c].astype(str)
    var = catalog.reindex(acts.feature_names).copy()
    var.index = var.index.astype(str)
    for c in var.columns:
        if var[c].dtype == object or var[c].dtype == bool:
            var[c] = var[c].astype(str)
    skeleton = ad.AnnData(obs=obs, var=var)
    skeleton.uns["genosae"] = uns or {}
    path = Path(path)
    empty = sp.csr_matrix((0, len(acts.feature_names)), dtype=np.float32)
    with atomic_path(path) as tmp:
        skeleton.write_h5ad(tmp)
        with h5py.File(tmp, "a") as f:
            chunks = {"chunks": (H5AD_CHUNK,)}  # h5py's guess for an empty dataset (1 to 1,024) bloats the index
            write_elem(f, "X", empty, dataset_kwargs=chunks)
            write_elem(f["layers"], "max", empty, dataset_kwargs=chunks)
            write_elem(f["layers"], "mean", empty, dataset_kwargs=chunks)
            x, layer_max, layer_mean = sparse_dataset(f["X"]), sparse_dataset(f["layers/max"]), \
                sparse_dataset(f["layers/mean"])
            for _, mx, mean in iter_window_feature_blocks(acts, len(windows), batch_size=batch_size):
                x.append(mx)
                layer_max.append(mx)
                layer_mean.append(mean)
    return path
