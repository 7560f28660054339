"""Motif capture: does a unit fire where a motif's FIMO sites are? (InterPLM-style site F1.)

For each motif with enough FIMO sites in the atlas and each unit (SAE feature, neuron, random
direction, a control model's feature — any number of named unit sets), at each threshold ``t × max``
(``max`` = the unit's largest activation on calibration tokens):

* **precision** = share of the unit's firing tokens that lie inside a site of the motif;
* **recall** = share of the motif's sites with ≥ 1 firing token (a site is a domain, not its bases);
* **F1** = their harmonic mean.

The unit and the threshold are chosen per motif on the calibration windows; precision, recall and F1
are reported on the held-out windows (the held-out chromosome where there is one). The counting
reuses :mod:`genosae.features.alignment`'s sparse level matrices and domain hits (FIMO sites are
concepts whose instances are the sites).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp

from genosae.errors import InputError
from genosae.features.activations import FeatureSource, iter_token_batches
from genosae.features.alignment import (
    AlignmentCounts,
    calibration_maxima,
    domain_hits,
    reverse_cumsum,
    safe_divide,
    threshold_levels,
    threshold_matrix,
    window_instances,
)
from genosae.genome.concepts import ConceptIndex

__all__ = ["MOTIF_CAPTURE_COLUMNS", "SET_COLUMNS", "SiteCounts", "motif_capture", "motif_sites"]

#: Leading columns of :func:`motif_capture`; then :data:`SET_COLUMNS` once per unit set, prefixed ``{set}_``.
MOTIF_CAPTURE_COLUMNS = ("motif", "motif_id", "motif_name", "n_sites_calibration", "n_sites_heldout",
                         "captured", "margin")
#: Per unit set: chosen unit and threshold, calibration F1, held-out F1/precision/recall, candidates.
SET_COLUMNS = ("unit", "threshold", "f1_calibration", "f1", "precision", "recall", "n_sites_heldout",
               "n_units")


def motif_sites(concepts: pd.DataFrame) -> pd.DataFrame:
    """FIMO sites from the concepts table (``motif:<id> <name>`` rows), one site per merged cluster.

    Overlapping hits of one motif (a palindrome on both strands, shifted repeats) become one site.

    Returns
    -------
    DataFrame ``chrom, start, end, strand, concept, name, motif_id, motif_name``: ``concept`` is the
    motif's concept name, ``name`` a site id.
    """
    need = {"chrom", "start", "end", "concept"}
    if not need <= set(concepts.columns):
        raise InputError(f"concepts table lacks {sorted(need - set(concepts.columns))}; rebuild it with "
                         "`genosae prepare-reference`", record="concepts")
    m = concepts[concepts["concept"].astype(str).str.startswith("motif:")]
    cols = ["chrom", "start", "end", "strand", "concept", "name", "motif_id", "motif_name"]
    if m.empty:
        return pd.DataFrame(columns=cols)
    m = m.sort_values(["concept", "chrom", "start"], kind="mergesort")
    key = (m["concept"].astype(str) + "\t" + m["chrom"].astype(str)).to_numpy()
    start, end = m["start"].to_numpy(np.int64), m["end"].to_numpy(np.int64)
    same = np.r_[False, key[1:] == key[:-1]]
    # a hit opens a new site unless it starts before the furthest end reached so far in its group
    reach = pd.Series(end).groupby(np.cumsum(~same)).cummax().to_numpy()
    new = ~same | (start >= np.r_[0, reach[:-1]])
    out = pd.DataFrame({"chrom": m["chrom"].to_numpy(), "start": start, "end": end,
                        "concept": m["concept"].astype(str).to_numpy(), "cluster": np.cumsum(new)})
    out = out.groupby("cluster", sort=True).agg(chrom=("chrom", "first"), start=("start", "min"),
                                                end=("end", "max"), concept=("concept", "first"))
    out = out.reset_index(drop=True)
    ident = out["concept"].str.slice(len("motif:")).str.split(" ", n=1, expand=True)
    out["motif_id"] = ident[0]
    out["motif_name"] = ident[1].fillna(ident[0]) if ident.shape[1] > 1 else ident[0]
    out["strand"] = "."
    out["name"] = "site" + pd.Series(np.arange(len(out))).astype(str)
    return out[cols]


class SiteCounts:
    """Token precision and site recall counts of one unit set, accumulated chunk by chunk.

    Token counts (firing tokens, firing tokens inside a site, per half × unit × threshold × motif)
    are :class:`~genosae.features.alignment.AlignmentCounts`; site hits per chunk are
    :func:`~genosae.features.alignment.domain_hits` (a site's tokens must arrive in one chunk: give
    site ids per window, as :func:`motif_capture` does).

    Parameters
    ----------
    thr_abs_UK
        Absolute thresholds per unit, ascending (:func:`~genosae.features.alignment.threshold_matrix`
        of the calibration maxima).
    n_motifs
        Membership columns.
    thresholds
        The fractions behind ``thr_abs_UK``.
    """

    def __init__(self, thr_abs_UK: np.ndarray, n_motifs: int, *, thresholds: Sequence[float]) -> None:
        self.tokens = AlignmentCounts(thr_abs_UK, n_motifs, thresholds=thresholds)
        n_units, n_lev = self.tokens.thr_abs_FK.shape
        self.hits = np.zeros((2, n_units, n_lev, n_motifs), np.int64)
        self.n_sites = np.zeros((2, n_motifs), np.int64)

    def add(self, codes: sp.spmatrix | np.ndarray, membership: sp.spmatrix, instances: sp.spmatrix,
            half: np.ndarray) -> None:
        """Count one chunk: ``codes [n, U]``, ``membership``/``instances [n, C]``, ``half`` 0/1/-1 per token."""
        half = np.asarray(half, dtype=np.int8)
        use = np.flatnonzero(half >= 0)
        if not use.size:
            return
        if isinstance(codes, np.ndarray):  # dense units: BLAS token counts
            codes = np.asarray(codes, dtype=np.float32)[use]
        else:
            codes = sp.csr_matrix(codes, dtype=np.float32)[use]
            codes.sort_indices()
        memb = sp.csr_matrix(membership, dtype=bool)[use]
        inst = sp.csr_matrix(instances)[use]
        half = half[use]
        self.tokens.add(codes, memb, calibration_mask=half == 0)
        in_site = np.flatnonzero(inst.getnnz(axis=1) > 0)  # site hits need only the tokens inside sites
        sub = sp.csr_matrix(codes[in_site], dtype=np.float32)
        sub.sort_indices()
        level = threshold_levels(sub, self.tokens.thr_abs_FK)
        for h in (0, 1):
            hit_KUC, n_C = domain_hits(level, sub, half[in_site] == h, inst[in_site], self.tokens.n_levels)
            self.hits[h] += np.transpose(hit_KUC, (1, 0, 2))
            self.n_sites[h] += n_C

    def result(self) -> dict[str, np.ndarray]:
        """``precision``, ``recall``, ``f1`` ``[2, U, K, C]`` (calibration, held-out) and ``n_sites [2, C]``."""
        tp = reverse_cumsum(self.tokens.tp, axis=2)
        fire = reverse_cumsum(self.tokens.fire, axis=2)
        precision = safe_divide(tp, fire[..., None])
        recall = safe_divide(self.hits, self.n_sites[:, None, None, :])
        f1 = safe_divide(2 * precision * recall, precision + recall)
        return {"precision": precision, "recall": recall, "f1": f1, "n_sites": self.n_sites.copy()}


class UnitsLike(Protocol):
    """Units computed on the fly: dense activations ``[B, d_model]`` → dense codes ``[B, U]``."""

    feature_names: list[str]

    def __call__(self, acts_BD: np.ndarray) -> np.ndarray: ...


def _site_labels(index: ConceptIndex, tokens: pd.DataFrame, n_windows: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Membership and per-window site ids (a site cut by a window edge is one site on each side)."""
    memb, inst = index.label(tokens["chrom"].to_numpy(), tokens["bp_start"].to_numpy(np.int64))
    return sp.csr_matrix(memb, dtype=bool), window_instances(inst, tokens["window_index"].to_numpy(), n_windows)


def _is_source(units: Any) -> bool:
    """A feature source (:class:`~genosae.features.activations.FeatureSource`), not units computed on the fly."""
    return hasattr(units, "iter_batches")


def _halves(tokens: pd.DataFrame, cal_w: np.ndarray, held_w: np.ndarray) -> np.ndarray:
    w = tokens["window_index"].to_numpy(np.int64)
    return np.where(cal_w[w], 0, np.where(held_w[w], 1, -1)).astype(np.int8)


def _set_counts(
    unit_sets: Mapping[str, FeatureSource | UnitsLike],
    index: ConceptIndex,
    n_motifs: int,
    cal_w: np.ndarray,
    held_w: np.ndarray,
    thr: np.ndarray,
    store: Any,
    batch_size: int,
    max_tokens: int | None,
    source_batch: int = 65_536,
) -> dict[str, dict[str, np.ndarray]]:
    """:class:`SiteCounts` results of every set: in-memory sets at once, the others streamed (two passes)."""
    n_win = len(cal_w)
    out: dict[str, dict[str, np.ndarray]] = {}
    streamed = {k: u for k, u in unit_sets.items() if not _is_source(u)}
    for k, source in unit_sets.items():  # feature sources: two streamed passes each
        if not _is_source(source):
            continue
        max_u = calibration_maxima(source, cal_w, batch_size=source_batch)
        counts = SiteCounts(threshold_matrix(max_u, thr), n_motifs, thresholds=thr)
        for batch in source.iter_batches(source_batch):
            memb, inst = _site_labels(index, batch.tokens, n_win)
            counts.add(batch.codes, memb, inst, _halves(batch.tokens, cal_w, held_w))
        out[k] = counts.result()
    if streamed:
        if store is None:
            raise InputError(f"unit set(s) {sorted(streamed)} are computed from the activation store; pass "
                             "store= (or give their activations as FeatureActs)", record="motif_capture")

        def batches():
            return iter_token_batches(store, batch_size=batch_size, max_tokens=max_tokens)

        max_u = {k: np.zeros(len(u.feature_names), np.float32) for k, u in streamed.items()}
        for acts_BD, tokens in batches():  # pass 1: calibration maxima
            cal = _halves(tokens, cal_w, held_w) == 0
            if cal.any():
                for k, u in streamed.items():
                    max_u[k] = np.maximum(max_u[k], u(acts_BD[cal]).max(axis=0))
        counts_s = {k: SiteCounts(threshold_matrix(max_u[k], thr), n_motifs, thresholds=thr) for k in streamed}
        for acts_BD, tokens in batches():  # pass 2: counts (batches hold whole windows)
            half = _halves(tokens, cal_w, held_w)
            memb, inst = _site_labels(index, tokens, n_win)
            for k, u in streamed.items():
                counts_s[k].add(np.asarray(u(acts_BD), dtype=np.float32), memb, inst, half)
        out.update({k: c.result() for k, c in counts_s.items()})
    return {k: out[k] for k in unit_sets}


def motif_capture(
    unit_sets: Mapping[str, FeatureSource | UnitsLike],
    sites: pd.DataFrame,
    calibration_windows: np.ndarray,
    heldout_windows: np.ndarray,
    *,
    store: Any | None = None,
    thresholds: Sequence[float] = (0.0, 0.15, 0.5, 0.6, 0.8),
    min_sites: int = 10,
    min_f1: float = 0.5,
    min_margin: float = 0.1,
    null_sets: Sequence[str] = ("random",),
    batch_size: int = 4096,
    max_tokens: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Best unit of each set for each motif's FIMO sites: chosen on calibration, scored on held-out.

    Parameters
    ----------
    unit_sets
        ``{set name: units}``, the first being the primary set (the SAE). Units are a
        :class:`~genosae.features.activations.FeatureSource` (a code store, an SAE encoding the store,
        or :class:`~genosae.features.activations.FeatureActs` in memory) or a callable with ``feature_names`` that maps
        store activations to codes (e.g. :class:`~genosae.features.activations.LinearUnits`,
        streamed over ``store``). A control model's SAE is one more set.
    sites
        :func:`motif_sites` output.
    calibration_windows, heldout_windows
        Bool per window of the store (disjoint).
    store
        The activation store, for callable unit sets.
    min_sites
        A motif is scored when the primary set sees ≥ this many of its sites in each half.
    min_f1, min_margin, null_sets
        ``captured`` = the primary set's held-out F1 ≥ ``min_f1`` and > every null set's held-out F1
        + ``min_margin`` (null sets absent from ``unit_sets`` are skipped); ``margin`` = the primary
        F1 minus the best null set's F1 (NaN without a null set).

    Returns
    -------
    table, feature_f1
        The capture table: one row per scored motif, :data:`MOTIF_CAPTURE_COLUMNS` then
        ``{set}_{column}`` for each set and each of :data:`SET_COLUMNS` (``unit`` and ``threshold``
        maximise calibration F1 over the set's ``n_units`` × thresholds; ``f1``, ``precision``,
        ``recall`` and ``n_sites_heldout`` are held-out), sorted by the primary set's F1. And for
        the primary set the held-out site F1 of every unit × scored motif (each unit's threshold
        chosen on calibration), indexed by unit name, one column per ``motif_id``.
    """
    if not unit_sets:
        raise InputError("motif_capture needs at least one unit set (e.g. {'sae': acts})", record="unit_sets")
    cal_w = np.asarray(calibration_windows, dtype=bool)
    held_w = np.asarray(heldout_windows, dtype=bool)
    if cal_w.shape != held_w.shape or (cal_w & held_w).any():
        raise InputError("calibration and held-out window masks must have one value per window and not "
                         "overlap", record="motif_capture")
    set_cols = [f"{s}_{c}" for s in unit_sets for c in SET_COLUMNS]
    names = sorted(sites["concept"].unique()) if len(sites) else []
    if not names:
        return pd.DataFrame(columns=[*MOTIF_CAPTURE_COLUMNS, *set_cols]), pd.DataFrame()
    thr = np.sort(np.asarray(thresholds, dtype=np.float64))
    index = ConceptIndex(sites[["chrom", "start", "end", "strand", "concept", "name"]], names)
    results = _set_counts(unit_sets, index, len(names), cal_w, held_w, thr, store, batch_size, max_tokens)
    ident = sites.drop_duplicates("concept").set_index("concept").loc[names, ["motif_id", "motif_name"]]
    primary = next(iter(unit_sets))
    n0 = results[primary]["n_sites"]
    table = pd.DataFrame({"motif": names, "motif_id": ident["motif_id"].to_numpy(),
                          "motif_name": ident["motif_name"].to_numpy(),
                          "n_sites_calibration": n0[0], "n_sites_heldout": n0[1]})
    c = np.arange(len(names))
    for set_name, r in results.items():
        n_units, n_lev = r["f1"].shape[1:3]
        best = np.argmax(r["f1"][0].reshape(n_units * n_lev, -1), axis=0)  # ties → first unit, lowest t
        u, t = np.divmod(best, n_lev)
        u_names = unit_sets[set_name].feature_names
        part = {"unit": np.asarray(u_names, dtype=object)[u], "threshold": thr[t],
                "f1_calibration": r["f1"][0][u, t, c], "f1": r["f1"][1][u, t, c],
                "precision": r["precision"][1][u, t, c], "recall": r["recall"][1][u, t, c],
                "n_sites_heldout": r["n_sites"][1], "n_units": np.full(len(names), n_units)}
        for col in SET_COLUMNS:
            table[f"{set_name}_{col}"] = part[col]
    keep = (n0[0] >= min_sites) & (n0[1] >= min_sites)
    r0 = results[primary]
    t_UC = np.argmax(r0["f1"][0], axis=1)  # per unit × motif, threshold chosen on calibration
    f1_ho = np.take_along_axis(r0["f1"][1], t_UC[:, None, :], axis=1)[:, 0, :]
    feature_f1 = pd.DataFrame(f1_ho[:, keep], index=pd.Index(unit_sets[primary].feature_names,
                                                             name="feature"),
                              columns=table.loc[keep, "motif_id"].to_numpy())
    nulls = [f"{n}_f1" for n in null_sets if n in unit_sets and n != primary]
    best_null = table[nulls].max(axis=1) if nulls else pd.Series(np.nan, index=table.index)
    table["margin"] = table[f"{primary}_f1"] - best_null
    table["captured"] = (table[f"{primary}_f1"] >= min_f1) & (table["margin"].fillna(np.inf) > min_margin)
    table = table[keep].sort_values(f"{primary}_f1", ascending=False, kind="mergesort")
    return table[[*MOTIF_CAPTURE_COLUMNS, *set_cols]].reset_index(drop=True), feature_f1
