"""Per-unit feature profiles: aggregate per-token SAE codes into regions or samples (AnnData).

The AnnData written by :func:`region_profiles` follows this layout

``obs`` (one row per unit: a region or a sample)
    index = unit id; ``condition`` (categorical, from the windows' ``condition`` or ``group``),
    ``n_windows``, ``n_tokens``; for regions also ``chrom``, ``start``, ``end``, ``strand`` and,
    when sequences are known, ``gc_fraction``, ``cpg_ratio``, ``length``; plus any ``obs`` columns
    given (a sample sheet: ``age``, ...).
``var`` (one row per SAE feature)
    index = feature id as a string; catalogue columns (``label``, ``best_concept``, ``f1``,
    ``best_motif``, ``motif_q``) when a catalogue is given.
``X`` / ``layers``
    ``X`` = ``layers["mean"]`` (mean activation over the unit's tokens), ``layers["max"]`` (max),
    ``layers["frac_active"]`` (fraction of tokens with activation > ``threshold``); float32.
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
from typing import Any, Literal, get_args

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from genosae._io import atomic_path
from genosae.errors import InputError
from genosae.features.activations import WindowActs

log = logging.getLogger(__name__)

Unit = Literal["region_id", "sample_id"]
REFERENCE_SAMPLE = "__reference__"
CATALOG_COLUMNS = ("label", "best_concept", "f1", "best_motif", "motif_q")


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


def _aggregate(
    acts: WindowActs, win_unit: np.ndarray, n_units: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean, max and fraction active per unit × feature, plus tokens per unit (from window sums)."""
    ind = sp.csr_matrix((np.ones(win_unit.size, np.float64), (win_unit, np.arange(win_unit.size))),
                        shape=(n_units, win_unit.size))
    counts = np.asarray(ind @ acts.n_tokens.astype(np.float64)).ravel()
    denom = np.maximum(counts, 1)[:, None]
    mean = np.asarray(ind @ acts.sum.astype(np.float64)) / denom
    frac = np.asarray(ind @ acts.n_active.astype(np.float64)) / denom
    order = np.argsort(win_unit, kind="stable")
    starts = np.flatnonzero(np.r_[True, win_unit[order][1:] != win_unit[order][:-1]])
    mx = np.zeros((n_units, acts.max.shape[1]), dtype=np.float32)
    if order.size:
        mx[win_unit[order][starts]] = np.maximum.reduceat(acts.max[order], starts, axis=0)
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


def _unit_sequences(windows: pd.DataFrame, sequences: Sequence[str] | None,
                    unit_codes: np.ndarray, n_units: int) -> list[str] | None:
    """Per unit: its windows' sequences merged on their coordinates (overlaps counted once)."""
    if sequences is None:
        if "sequence" not in windows.columns:
            return None
        sequences = windows["sequence"].astype(str).tolist()
    if len(sequences) != len(windows):
        raise InputError(f"{len(sequences)} sequences for {len(windows)} windows", record="sequences")
    out: list[list[tuple[int, str]]] = [[] for _ in range(n_units)]
    starts = windows["start"].to_numpy() if "start" in windows.columns else np.zeros(len(windows), int)
    for u, s, seq in zip(unit_codes, starts, sequences):
        out[u].append((int(s), str(seq)))
    merged = []
    for parts in out:  # loop over units (not tokens); stitches overlapping windows
        parts.sort()
        if not parts:
            merged.append("")
            continue
        text, end = parts[0][1], parts[0][0] + len(parts[0][1])
        for s, seq in parts[1:]:
            if s + len(seq) > end:
                text += seq[max(0, end - s):]
                end = s + len(seq)
        merged.append(text)
    return merged


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
        Feature catalogue (``feature`` + label columns) copied into ``var``.
    sequences
        Window sequences (aligned with ``windows``) for the composition covariates of regions;
        defaults to the ``sequence`` column when present.
    threshold
        Activation above which a token counts as active for ``frac_active``.
    config
        Workflow config recorded in ``uns["genosae"]``.
    feature_names
        Column names (``FeatureActs.feature_names``); default ``"0"``, ``"1"``, ...

    Returns
    -------
    AnnData with the layout described in the module docstring.
    """
    if unit not in get_args(Unit):
        raise InputError(f"unit must be one of {get_args(Unit)}, got {unit!r}", record="unit")
    wa = as_window_acts(acts, tokens, windows, feature_names, threshold)
    win_unit, units = _window_units(windows, [unit])
    n_units = len(units)
    mean, mx, frac, counts = _aggregate(wa, win_unit, n_units)
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
        seqs = _unit_sequences(windows, sequences, win_unit, n_units)
        if seqs is not None:
            cov = sequence_covariates(seqs)
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
        var = _catalog_var(var, catalog)
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


def _catalog_var(var: pd.DataFrame, catalog: pd.DataFrame) -> pd.DataFrame:
    if "feature" not in catalog.columns:
        raise InputError("feature catalogue lacks a 'feature' column", record="catalog")
    cat = catalog.copy()
    cat["feature"] = catalog_feature_ids(catalog, list(var.index))
    cat = cat.drop_duplicates("feature").set_index("feature")
    cols = [c for c in cat.columns if c in CATALOG_COLUMNS] or list(cat.columns)
    out = var.join(cat[cols], how="left")
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
    mean_u, max_u, _, _ = _aggregate(wa, win_unit, len(units))
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
