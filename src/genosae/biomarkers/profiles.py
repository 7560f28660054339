"""Per-unit feature profiles: aggregate per-token SAE codes into regions or samples (AnnData).

The AnnData written by :func:`region_profiles` follows this layout

``obs`` (one row per unit: a region or a sample)
    index = unit id; ``condition`` (categorical, from the windows' ``condition`` or ``group``),
    ``n_windows``, ``n_tokens``; for regions also ``chrom``, ``start``, ``end``, ``strand`` and,
    when sequences are known, ``gc_fraction``, ``cpg_ratio``, ``length`` (of the region's sequence
    stitched from its windows, :func:`merged_unit_sequences`); plus any ``obs`` columns
    given (a sample sheet: ``age``, ...).
``var`` (one row per SAE feature)
    index = feature id as a string; catalogue columns (``label``, ``best_concept``, ``f1``,
    ``best_motif``, ``motif_q``) when a catalogue is given, a concept or motif only where it passed
    its test (:func:`catalog_claims`; blank otherwise).
``X`` / ``layers``
    ``X`` = ``layers["mean"]`` (mean activation over the unit's tokens, every base counted once
    where windows overlap: :func:`window_base_weights`), ``layers["max"]`` (max),
    ``layers["frac_active"]`` (fraction of tokens with activation > ``threshold``, weighted the
    same way); float32. ``n_tokens`` counts tokens as embedded (overlaps included).
``uns["genosae"]``
    ``{"step": "profiles", "unit", "threshold", "config_json", "versions"}`` (config as JSON text
    because h5ad cannot hold ``None``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from genosae._io import atomic_path
from genosae.errors import InputError
from genosae.features.activations import WindowActs, segment_max, segment_sum
from genosae.genome.designs import Unit
from genosae.genome.windows import REFERENCE_SAMPLE

log = logging.getLogger(__name__)



def versions() -> dict[str, str]:
    """Versions of genosae and the numerical libraries that shape the results."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("genosae", "numpy", "scipy", "pandas", "anndata", "scanpy", "statsmodels",
                 "scikit-learn", "torch"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def _condition_column(windows: pd.DataFrame) -> str | None:
    for col in ("condition", "group"):
        if col in windows.columns:
            return col
    return None


Acts = WindowActs | sp.spmatrix


def as_window_acts(acts: Acts, tokens: pd.DataFrame | None, windows: pd.DataFrame,
                 feature_names: Sequence[str] | None, threshold: float) -> WindowActs:
    """``acts`` as per-window aggregates (token-level codes are aggregated with their token table)."""
    if isinstance(acts, WindowActs):
        if acts.n_windows != len(windows):
            raise InputError(f"window activations cover {acts.n_windows} windows but the windows table "
                             f"has {len(windows)}; pass the table the store was embedded from",
                             record="windows")
        return acts
    if tokens is None:
        raise InputError("token-level codes need their token table", record="tokens")
    names = list(feature_names) if feature_names is not None else None
    return WindowActs.from_codes(acts, tokens, len(windows), feature_names=names, threshold=threshold)


def _window_units(windows: pd.DataFrame, keys: Sequence[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """Unit code of each window and the unit table (one row per unit: its first window)."""
    missing = [k for k in keys if k not in windows.columns]
    if missing:
        raise InputError(f"windows table lacks column(s) {missing}; add them or choose another unit",
                         record="windows")
    win_unit, _ = pd.MultiIndex.from_frame(windows[list(keys)].astype(str)).factorize()
    first = pd.Series(np.arange(len(windows))).groupby(win_unit).first().to_numpy()
    return win_unit.astype(np.int64), windows.iloc[first].reset_index(drop=True)


def _copy_codes(windows: pd.DataFrame, keys: Sequence[str], extra: Sequence[str] = ()) -> np.ndarray:
    """Code of each window's *copy* of the genome: ``keys`` + sample, haplotype, chromosome (+ extra).

    Bases of one copy are the same bases when windows overlap; different samples or haplotypes at
    the same coordinates are different sequences.
    """
    cols = [c for c in dict.fromkeys([*keys, "sample_id", "haplotype", "chrom", *extra])
            if c in windows.columns]
    if not cols or len(windows) == 0:
        return np.zeros(len(windows), dtype=np.int64)
    codes, _ = pd.MultiIndex.from_frame(windows[cols].astype(str)).factorize()
    return codes.astype(np.int64)


def window_base_weights(windows: pd.DataFrame, keys: Sequence[str]) -> np.ndarray:
    """Weight of each window in a unit mean so that every base of the unit counts once.

    A window's weight is the mean over its bases of 1 / (number of windows of the same copy —
    same ``keys``, sample, haplotype and chromosome — covering that base): 1 for a window that
    overlaps nothing, 0.5 for one wholly covered twice. Weighted by these, the windows' token
    counts add up to the number of distinct bases, so overlapping windows (stride < size) do not
    count the shared bases twice. Windows without ``start``/``end`` get weight 1. Vectorised over
    windows (one sort of all window ends).
    """
    n = len(windows)
    if n == 0 or not {"start", "end"} <= set(windows.columns):
        return np.ones(n)
    s = windows["start"].to_numpy(np.int64)
    e = windows["end"].to_numpy(np.int64)
    length = e - s
    lo = int(min(s.min(), e.min()))
    span = int(max(s.max(), e.max())) - lo + 1
    shift = _copy_codes(windows, keys) * span - lo  # copies on disjoint stretches of one axis
    start, end = s + shift, e + shift
    pts = np.unique(np.r_[start, end])
    i_s, i_e = np.searchsorted(pts, start), np.searchsorted(pts, end)
    delta = np.bincount(i_s, minlength=pts.size) - np.bincount(i_e, minlength=pts.size)
    cover = np.cumsum(delta)[:-1]  # windows covering each elementary segment [pts[i], pts[i+1])
    per_base = np.where(cover > 0, np.diff(pts) / np.maximum(cover, 1), 0.0)
    integral = np.r_[0.0, np.cumsum(per_base)]
    return np.where(length > 0, (integral[i_e] - integral[i_s]) / np.maximum(length, 1), 1.0)


def _aggregate(
    acts: WindowActs, win_unit: np.ndarray, n_units: int, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean, max and fraction active per unit × feature, plus tokens per unit (from window sums).

    ``weights`` (per window, :func:`window_base_weights`) weight each window's sums and token
    count, so a unit's mean counts every base once; the token count returned is unweighted.
    """
    w = np.ones(win_unit.size) if weights is None else np.asarray(weights, dtype=np.float64)
    wcounts = segment_sum(acts.n_tokens.astype(np.float64), win_unit, n_units, weights=w)
    denom = np.where(wcounts > 0, wcounts, 1.0)[:, None]
    mean = segment_sum(acts.sum.astype(np.float64), win_unit, n_units, weights=w) / denom
    frac = segment_sum(acts.n_active.astype(np.float64), win_unit, n_units, weights=w) / denom
    counts = segment_sum(acts.n_tokens.astype(np.int64), win_unit, n_units)
    mx = segment_max(acts.max, win_unit, n_units).astype(np.float32)
    return (mean.astype(np.float32), mx, frac.astype(np.float32), counts.astype(np.int64))


def sequence_covariates(sequences: Sequence[str]) -> pd.DataFrame:
    """GC fraction, CpG observed/expected ratio and length of each sequence (N bases excluded)."""
    rows = []
    for seq in sequences:
        arr = np.frombuffer(str(seq).upper().encode(), dtype=np.uint8)
        c, g = int((arr == ord("C")).sum()), int((arr == ord("G")).sum())
        acgt = int(np.isin(arr, np.frombuffer(b"ACGT", dtype=np.uint8)).sum())
        cg = int(((arr[:-1] == ord("C")) & (arr[1:] == ord("G"))).sum()) if arr.size > 1 else 0
        rows.append({
            "gc_fraction": (c + g) / acgt if acgt else np.nan,
            "cpg_ratio": cg * acgt / (c * g) if c and g else 0.0,
            "length": int(arr.size),
        })
    return pd.DataFrame(rows, columns=["gc_fraction", "cpg_ratio", "length"])


def merged_unit_sequences(
    windows: pd.DataFrame,
    sequences: Sequence[str],
    unit_codes: np.ndarray,
    n_units: int,
    keys: Sequence[str] = (),
) -> tuple[list[str], np.ndarray]:
    """Per unit: its windows' sequences stitched on their reference coordinates, each base once.

    Windows of one copy (same ``keys``, sample, haplotype, chromosome and strand) are merged along
    the reference: an overlap is kept once, a gap becomes one ``N``. ``-`` windows hold the reverse
    complement of ``[start, end)``; they are merged on the + strand and the result is
    reverse-complemented, so the text reads 5'→3' on the region's strand. A unit's copies are
    joined with ``N`` (no k-mer spans two). Without ``start`` the windows are joined with ``N``.
    Exact for SNVs; an indel inside an overlap shifts the joint by its length.

    Returns the texts (``n_units``, in code order) and the mean length of a copy per unit.
    """
    from genosae.genome.reference import reverse_complement

    if len(sequences) != len(windows):
        raise InputError(f"{len(sequences)} sequences for {len(windows)} windows", record="sequences")
    seqs = [str(x) for x in sequences]
    has_coords = {"start", "end"} <= set(windows.columns)
    copy = _copy_codes(windows, keys, extra=("strand",))
    starts = windows["start"].to_numpy(np.int64) if has_coords else np.arange(len(windows))
    ends = windows["end"].to_numpy(np.int64) if has_coords else starts
    minus = (windows["strand"].astype(str).to_numpy() == "-") if "strand" in windows.columns \
        else np.zeros(len(windows), dtype=bool)
    order = np.lexsort((starts, copy, unit_codes))
    texts: list[list[str]] = [[] for _ in range(n_units)]
    parts: list[str] = []
    end = 0
    for pos, i in enumerate(order):  # loop over windows (string work), not tokens
        fwd = reverse_complement(seqs[i]) if minus[i] else seqs[i]
        first = pos == 0 or copy[order[pos - 1]] != copy[i] or unit_codes[order[pos - 1]] != unit_codes[i]
        if first:
            parts, end = [fwd], int(ends[i])
        elif not has_coords or starts[i] > end:  # a gap (or unknown coordinates)
            parts += ["N", fwd]
            end = int(ends[i])
        elif ends[i] > end:
            parts.append(fwd[int(end - starts[i]):])
            end = int(ends[i])
        last = pos == len(order) - 1 or copy[order[pos + 1]] != copy[i] or \
            unit_codes[order[pos + 1]] != unit_codes[i]
        if last:
            text = "".join(parts)
            texts[unit_codes[i]].append(reverse_complement(text) if minus[i] else text)
    mean_len = np.array([np.mean([len(t) for t in ts]) if ts else 0.0 for ts in texts])
    return ["N".join(ts) for ts in texts], mean_len


def region_profiles(
    acts: Acts,
    tokens: pd.DataFrame | None,
    windows: pd.DataFrame,
    *,
    unit: Unit = "region_id",
    obs: pd.DataFrame | None = None,
    catalog: pd.DataFrame | None = None,
    sequences: Sequence[str] | None = None,
    threshold: float = 0.0,
    config: dict[str, Any] | None = None,
    feature_names: Sequence[str] | None = None,
    motif_q_max: float = 0.05,
) -> ad.AnnData:
    """Aggregate per-token feature activations into one profile per region or sample.

    Parameters
    ----------
    acts
        Per-window aggregates (:class:`~genosae.features.activations.WindowActs`, what
        ``genosae window-acts`` streams from a store), or sparse token-level codes
        ``[n_tokens, n_features]`` (``FeatureActs.codes``) with their ``tokens``.
    tokens
        Token table of token-level codes, with ``window_index`` (row of ``windows``);
        ``is_special`` or ``bp_start < 0`` tokens are ignored. ``None`` with ``WindowActs``.
    windows
        Windows table (``window_id, chrom, start, end, strand, region_id`` + ``group``/``condition``,
        ``sample_id``, ``sequence``).
    unit
        ``"region_id"`` (region design) or ``"sample_id"`` (cohort: one profile per sample).
    obs
        Extra per-unit columns (e.g. the sample sheet), indexed by unit id or with a ``unit`` column.
    catalog
        Feature catalogue (``feature`` + label columns) copied into ``var``; concept and motif
        names only where they passed their test (:func:`catalog_claims`).
    sequences
        Window sequences (aligned with ``windows``) for the composition covariates of regions;
        defaults to the ``sequence`` column when present.
    threshold
        Activation above which a token counts as active for ``frac_active``.
    config
        Workflow config recorded in ``uns["genosae"]``.
    feature_names
        Column names (``FeatureActs.feature_names``); default ``"0"``, ``"1"``, ...
    motif_q_max
        Tomtom q a catalogue motif needs when the catalogue has no ``motif_name`` column.

    Returns
    -------
    AnnData with the layout described in the module docstring.
    """
    if unit not in get_args(Unit):
        raise InputError(f"unit must be one of {get_args(Unit)}, got {unit!r}", record="unit")
    wa = as_window_acts(acts, tokens, windows, feature_names, threshold)
    win_unit, units = _window_units(windows, [unit])
    n_units = len(units)
    mean, mx, frac, counts = _aggregate(wa, win_unit, n_units, window_base_weights(windows, [unit]))
    obs_df = pd.DataFrame(index=pd.Index(units[unit].astype(str), name=unit))
    cond_col = _condition_column(windows)
    if cond_col is not None:
        n_cond = windows.groupby(win_unit)[cond_col].nunique()
        if (n_cond > 1).any():
            bad = units[unit].iloc[int(n_cond.index[np.argmax(n_cond.to_numpy() > 1)])]
            raise InputError(f"unit {bad!r} has windows with different '{cond_col}' values; each "
                             f"{unit} needs one condition", record="windows")
        obs_df["condition"] = units[cond_col].astype(str).to_numpy()
    obs_df["n_windows"] = np.bincount(win_unit, minlength=n_units)
    obs_df["n_tokens"] = counts
    if unit == "region_id":
        if {"chrom", "start", "end"} <= set(windows.columns):
            g = windows.groupby(win_unit)
            obs_df["chrom"] = units["chrom"].astype(str).to_numpy()
            obs_df["start"] = g["start"].min().to_numpy()
            obs_df["end"] = g["end"].max().to_numpy()
            if "strand" in windows.columns:
                obs_df["strand"] = units["strand"].astype(str).to_numpy()
        if sequences is None and "sequence" in windows.columns:
            sequences = windows["sequence"].astype(str).tolist()
        if sequences is not None:
            seqs, copy_len = merged_unit_sequences(windows, sequences, win_unit, n_units, [unit])
            cov = sequence_covariates(seqs).assign(length=np.rint(copy_len).astype(np.int64))
            for col in cov.columns:
                obs_df[col] = cov[col].to_numpy()
        elif "start" in obs_df.columns:
            obs_df["length"] = (obs_df["end"] - obs_df["start"]).to_numpy()
    if obs is not None:
        extra = obs.set_index("unit") if "unit" in obs.columns else obs
        if unit in extra.columns:
            extra = extra.set_index(unit)
        extra = extra.copy()
        extra.index = extra.index.astype(str)
        extra = extra.drop(columns=[c for c in extra.columns if c in obs_df.columns and c != "condition"])
        if "condition" in extra.columns and "condition" in obs_df.columns:
            extra = extra.drop(columns="condition")
        obs_df = obs_df.join(extra, how="left")
    if "condition" in obs_df.columns:
        obs_df["condition"] = pd.Categorical(obs_df["condition"].astype(str))
    n_feat = wa.sum.shape[1]
    names = feature_names if feature_names is not None else wa.feature_names
    var = pd.DataFrame(index=pd.Index(_feature_names(names, n_feat), name="feature"))
    if catalog is not None:
        var = _catalog_var(var, catalog, motif_q_max)
    adata = ad.AnnData(X=mean.copy(), obs=obs_df, var=var,
                       layers={"mean": mean, "max": mx, "frac_active": frac})
    adata.uns["genosae"] = {
        "step": "profiles",
        "unit": unit,
        "threshold": float(wa.threshold),
        "config_json": json.dumps(config or {}, default=str),
        "versions": versions(),
    }
    return adata


def _feature_names(names: Sequence[str] | None, n: int) -> list[str]:
    if names is None:
        return [str(i) for i in range(n)]
    if len(names) != n:
        raise InputError(f"{len(names)} feature names for {n} columns", record="feature_names")
    return [str(x) for x in names]


def catalog_feature_ids(catalog: pd.DataFrame, names: Sequence[str]) -> pd.Series:
    """Catalogue ``feature`` values as strings matching ``names`` (integers map onto ``"f<i>"``)."""
    ids = catalog["feature"].astype(str)
    if not ids.isin(list(names)).any() and pd.api.types.is_integer_dtype(catalog["feature"]):
        prefixed = "f" + ids
        if prefixed.isin(list(names)).any():
            return prefixed
    return ids


def catalog_claims(catalog: pd.DataFrame, *, motif_q_max: float = 0.05) -> pd.DataFrame:
    """The concept and motif names of a feature catalogue that passed their tests; others blank.

    ``best_concept``/``concept_f1`` are kept where the catalogue's ``captured`` is true (held-out
    F1, MCC, margin over the trivial F1 and the enrichment q, as
    :func:`~genosae.features.alignment.align_concepts` decides); without a ``captured`` column no
    concept is claimed. The motif name is, in this order: the catalogue's ``motif_label`` (the
    name that passed Tomtom + its null and/or held-out site F1; ``motif_label_source`` says
    which), else a non-empty ``motif_name`` (null-controlled Tomtom name), else — for a catalogue
    with neither column — ``best_motif`` where ``motif_q ≤ motif_q_max``. ``motif_q`` (the Tomtom
    q-value) is kept only where it is the q of the name shown (the name is the raw best match).

    Returns
    -------
    ``feature`` + those of ``label, best_concept, concept_f1, best_motif, motif_q, motif_source``
    the catalogue can fill, one row per feature; ``motif_source`` = ``motif_label_source``,
    ``"tomtom"`` (``motif_name``) or ``"tomtom_q"`` (the q threshold).
    """
    cat = catalog.drop_duplicates("feature").reset_index(drop=True)
    out = cat[["feature"]].copy()
    if "label" in cat.columns:
        out["label"] = cat["label"]
    if "best_concept" in cat.columns:
        ok = (cat["captured"].fillna(False).astype(bool) if "captured" in cat.columns
              else pd.Series(False, index=cat.index))
        out["best_concept"] = cat["best_concept"].where(ok, "")
        if "f1" in cat.columns:
            out["concept_f1"] = cat["f1"].where(ok)
    raw = cat["best_motif"].fillna("").astype(str) if "best_motif" in cat.columns else None
    if "motif_label" in cat.columns:
        name = cat["motif_label"].fillna("").astype(str)
        source = (cat["motif_label_source"].fillna("").astype(str)
                  if "motif_label_source" in cat.columns else pd.Series("motif_label", index=cat.index))
    elif "motif_name" in cat.columns:
        name = cat["motif_name"].fillna("").astype(str)
        source = pd.Series("tomtom", index=cat.index)
    elif raw is not None and "motif_q" in cat.columns:
        name = raw.where(cat["motif_q"].le(motif_q_max), "")
        source = pd.Series("tomtom_q", index=cat.index)
    else:
        return out
    named = name.str.len() > 0
    out["best_motif"] = name.where(named, "")
    if "motif_q" in cat.columns:
        same = named & (raw == name) if raw is not None else named
        out["motif_q"] = cat["motif_q"].where(same)
    out["motif_source"] = source.where(named, "")
    return out


def _catalog_var(var: pd.DataFrame, catalog: pd.DataFrame, motif_q_max: float) -> pd.DataFrame:
    if "feature" not in catalog.columns:
        raise InputError("feature catalogue lacks a 'feature' column", record="catalog")
    cat = catalog.copy()
    cat["feature"] = catalog_feature_ids(catalog, list(var.index))
    claims = catalog_claims(cat, motif_q_max=motif_q_max).rename(columns={"concept_f1": "f1"})
    out = var.join(claims.set_index("feature"), how="left")
    for col in out.columns:
        if out[col].dtype == object:
            out[col] = out[col].fillna("").astype(str)
    return out


@dataclass
class LocusProfiles:
    """Per sample × region × feature activations of a cohort.

    Attributes
    ----------
    samples
        Sample ids (axis 0), with ``conditions`` aligned.
    features
        Feature names (axis 2).
    regions
        Region table (axis 1): ``region_id`` + ``chrom, start, end, strand`` when known.
    mean, max
        ``[n_samples, n_regions, n_features]`` float32 (NaN where a sample lacks the region).
    delta
        ``mean`` minus the baseline sample's ``mean`` at the same region (``delta_baseline`` says
        which: the ``__reference__`` sample, or the median over samples when there is none).
    """

    samples: np.ndarray
    conditions: np.ndarray
    features: list[str]
    regions: pd.DataFrame
    mean: np.ndarray
    max: np.ndarray
    delta: np.ndarray
    delta_baseline: str

    def to_anndata(self, obs: pd.DataFrame | None = None) -> ad.AnnData:
        """One observation per sample × locus (``"sample|region"``), features as ``var``.

        ``obs`` columns: ``sample_id, region_id, condition`` + the region's ``chrom, start, end,
        strand`` + per-sample columns of ``obs`` (a sample sheet indexed by sample id); ``X`` =
        ``layers["mean"]``, plus ``layers["max"]`` and ``layers["delta"]`` (vs ``delta_baseline``).
        Sample × locus pairs without windows (all-NaN) are left out.
        """
        n_s, n_r, n_f = self.mean.shape
        s_idx, r_idx = np.meshgrid(np.arange(n_s), np.arange(n_r), indexing="ij")
        s_idx, r_idx = s_idx.ravel(), r_idx.ravel()
        mean = self.mean.reshape(n_s * n_r, n_f)
        keep = ~np.isnan(mean).all(axis=1)
        regions = self.regions.reset_index(drop=True)
        table = pd.DataFrame({"sample_id": self.samples[s_idx], "region_id":
                              regions["region_id"].astype(str).to_numpy()[r_idx],
                              "condition": self.conditions[s_idx]})
        for col in ("chrom", "start", "end", "strand"):
            if col in regions.columns:
                table[col] = regions[col].to_numpy()[r_idx]
        if obs is not None:
            extra = obs.drop(columns=[c for c in obs.columns if c in table.columns], errors="ignore")
            extra.index = extra.index.astype(str)
            table = table.join(extra, on="sample_id")
        table.index = table["sample_id"].astype(str) + "|" + table["region_id"]
        table = table[keep]
        table["condition"] = pd.Categorical(table["condition"].astype(str))
        layers = {"mean": mean[keep], "max": self.max.reshape(n_s * n_r, n_f)[keep],
                  "delta": self.delta.reshape(n_s * n_r, n_f)[keep]}
        out = ad.AnnData(X=layers["mean"].copy(), obs=table,
                         var=pd.DataFrame(index=pd.Index(self.features, name="feature")), layers=layers)
        out.uns["genosae"] = {"step": "locus_profiles", "delta_baseline": self.delta_baseline,
                              "versions": versions()}
        return out

    def to_long(self, features: Sequence[int] | None = None) -> pd.DataFrame:
        """Long table ``sample_id, condition, region_id, feature, mean, max, delta``."""
        feats = np.arange(self.mean.shape[2]) if features is None else np.asarray(features)
        s, r, f = np.meshgrid(np.arange(len(self.samples)), np.arange(len(self.regions)),
                              np.arange(feats.size), indexing="ij")
        s, r, f = s.ravel(), r.ravel(), f.ravel()
        return pd.DataFrame({
            "sample_id": self.samples[s], "condition": self.conditions[s],
            "region_id": self.regions["region_id"].to_numpy()[r],
            "feature": np.asarray(self.features)[feats][f],
            "mean": self.mean[:, :, feats].ravel(), "max": self.max[:, :, feats].ravel(),
            "delta": self.delta[:, :, feats].ravel(),
        })


def locus_profiles(
    acts: Acts,
    tokens: pd.DataFrame | None,
    windows: pd.DataFrame,
    *,
    reference_sample: str = REFERENCE_SAMPLE,
    threshold: float = 0.0,
    feature_names: Sequence[str] | None = None,
) -> LocusProfiles:
    """Cohort profiles per sample × region × feature, with the delta against the reference sample.

    Windows need ``sample_id`` and ``region_id``; the condition comes from ``condition``/``group``.
    """
    wa = as_window_acts(acts, tokens, windows, feature_names, threshold)
    win_unit, units = _window_units(windows, ["sample_id", "region_id"])
    mean_u, max_u, _, _ = _aggregate(wa, win_unit, len(units),
                                     window_base_weights(windows, ["sample_id", "region_id"]))
    samples, s_idx = np.unique(units["sample_id"].astype(str).to_numpy(), return_inverse=True)
    region_ids = units["region_id"].astype(str).to_numpy()
    regions_u, r_idx = np.unique(region_ids, return_inverse=True)
    n_s, n_r, n_f = len(samples), len(regions_u), wa.sum.shape[1]
    if feature_names is None:
        feature_names = wa.feature_names
    mean = np.full((n_s, n_r, n_f), np.nan, dtype=np.float32)
    mx = np.full((n_s, n_r, n_f), np.nan, dtype=np.float32)
    mean[s_idx, r_idx] = mean_u
    mx[s_idx, r_idx] = max_u
    cond_col = _condition_column(windows)
    cond_by_sample = (units.groupby(units["sample_id"].astype(str))[cond_col].first()
                      if cond_col else pd.Series(dtype=str))
    conditions = np.array([str(cond_by_sample.get(s, "")) for s in samples], dtype=object)
    ref = np.flatnonzero(samples == reference_sample)
    if ref.size:
        baseline, how = mean[ref[0]], reference_sample
    else:
        baseline, how = np.nanmedian(mean, axis=0), "median"
    delta = mean - baseline[None]
    reg = pd.DataFrame({"region_id": regions_u})
    if {"chrom", "start", "end"} <= set(windows.columns):
        coords = (windows.assign(region_id=windows["region_id"].astype(str))
                  .groupby("region_id").agg(chrom=("chrom", "first"), start=("start", "min"),
                                            end=("end", "max")))
        if "strand" in windows.columns:
            coords["strand"] = windows.groupby(windows["region_id"].astype(str))["strand"].first()
        reg = reg.join(coords, on="region_id")
    return LocusProfiles(samples=samples, conditions=conditions,
                         features=_feature_names(feature_names, n_f), regions=reg, mean=mean, max=mx,
                         delta=delta.astype(np.float32), delta_baseline=how)


def write_profiles(adata: ad.AnnData, path: str | Path) -> Path:
    """Write profiles as ``.h5ad`` atomically (readable by ``anndata.read_h5ad`` / scanpy)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp)
    return path


def read_profiles(path: str | Path) -> ad.AnnData:
    """Read profiles written by :func:`write_profiles`."""
    path = Path(path)
    if not path.exists():
        raise InputError("profiles file not found; run `genosae profiles` first", path=path)
    return ad.read_h5ad(path)
