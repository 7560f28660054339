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


def _token_units(
    tokens: pd.DataFrame, windows: pd.DataFrame, keys: Sequence[str], n_tokens: int
) -> tuple[np.ndarray, pd.DataFrame]:
    """Unit code per token (-1 = dropped) and the unit table (one row per unit, first window)."""
    if len(tokens) != n_tokens:
        raise InputError(f"token table has {len(tokens)} rows but codes have {n_tokens}; "
                         "pass the token table that belongs to these codes", record="tokens")
    if "window_index" not in tokens.columns:
        raise InputError("token table lacks 'window_index'; use FeatureActs.tokens", record="tokens")
    missing = [k for k in keys if k not in windows.columns]
    if missing:
        raise InputError(f"windows table lacks column(s) {missing}; add them or choose another unit",
                         record="windows")
    win_idx = tokens["window_index"].to_numpy(dtype=np.int64)
    if win_idx.size and (win_idx.min() < 0 or win_idx.max() >= len(windows)):
        raise InputError(f"token window_index out of range 0..{len(windows) - 1}; the windows table "
                         "does not match the activations", record="tokens")
    keep = np.ones(n_tokens, dtype=bool)
    if "is_special" in tokens.columns:
        keep &= ~tokens["is_special"].to_numpy(dtype=bool)
    elif "bp_start" in tokens.columns:
        keep &= tokens["bp_start"].to_numpy() >= 0
    key_frame = windows[list(keys)].astype(str)
    win_unit, _ = pd.MultiIndex.from_frame(key_frame).factorize()
    unit_of_token = np.where(keep, win_unit[win_idx], -1)
    first = pd.Series(np.arange(len(windows))).groupby(win_unit).first().to_numpy()
    units = windows.iloc[first].reset_index(drop=True)
    return unit_of_token.astype(np.int64), units


def _aggregate(
    codes: sp.csr_matrix, unit_of_token: np.ndarray, n_units: int, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean, max and fraction active per unit × feature, plus tokens per unit (vectorised)."""
    codes = sp.csr_matrix(codes, dtype=np.float32)
    if codes.data.size and codes.data.min() < 0:
        raise InputError("feature activations must be non-negative (SAE codes after the "
                         "activation function)", record="codes")
    n_tok, n_feat = codes.shape
    keep = unit_of_token >= 0
    rows = unit_of_token[keep]
    tok = np.flatnonzero(keep)
    indicator = sp.csr_matrix((np.ones(rows.size, dtype=np.float32), (rows, tok)),
                              shape=(n_units, n_tok))
    counts = np.asarray(indicator.sum(axis=1)).ravel()
    denom = np.maximum(counts, 1)[:, None]
    mean = np.asarray((indicator @ codes).todense(), dtype=np.float64) / denom
    active = codes.copy()
    active.data = (active.data > threshold).astype(np.float32)
    frac = np.asarray((indicator @ active).todense(), dtype=np.float64) / denom
    # max: one key per (unit, feature) among stored entries, then a segmented maximum
    coo = codes.tocoo()
    entry_unit = unit_of_token[coo.row]
    ok = entry_unit >= 0
    flat = entry_unit[ok] * n_feat + coo.col[ok].astype(np.int64)
    vals = coo.data[ok]
    mx = np.zeros(n_units * n_feat, dtype=np.float32)
    if flat.size:
        order = np.argsort(flat, kind="stable")
        flat, vals = flat[order], vals[order]
        starts = np.flatnonzero(np.r_[True, flat[1:] != flat[:-1]])
        mx[flat[starts]] = np.maximum.reduceat(vals, starts)
    return (mean.astype(np.float32), mx.reshape(n_units, n_feat), frac.astype(np.float32),
            counts.astype(np.int64))


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
    codes: sp.spmatrix,
    tokens: pd.DataFrame,
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
    codes
        Sparse ``[n_tokens, n_features]`` non-negative activations (``FeatureActs.codes``).
    tokens
        Token table with ``window_index`` (row of ``windows``); ``is_special`` or ``bp_start < 0``
        tokens are ignored.
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
    codes = sp.csr_matrix(codes)
    unit_of_token, units = _token_units(tokens, windows, [unit], codes.shape[0])
    n_units = len(units)
    mean, mx, frac, counts = _aggregate(codes, unit_of_token, n_units, threshold)
    win_unit = pd.Index(units[unit].astype(str)).get_indexer(windows[unit].astype(str))
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
    n_feat = codes.shape[1]
    var = pd.DataFrame(index=pd.Index(_feature_names(feature_names, n_feat), name="feature"))
    if catalog is not None:
        var = _catalog_var(var, catalog)
    adata = ad.AnnData(X=mean.copy(), obs=obs_df, var=var,
                       layers={"mean": mean, "max": mx, "frac_active": frac})
    adata.uns["genosae"] = {
        "step": "profiles",
        "unit": unit,
        "threshold": float(threshold),
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
    codes: sp.spmatrix,
    tokens: pd.DataFrame,
    windows: pd.DataFrame,
    *,
    reference_sample: str = REFERENCE_SAMPLE,
    threshold: float = 0.0,
    feature_names: Sequence[str] | None = None,
) -> LocusProfiles:
    """Cohort profiles per sample × region × feature, with the delta against the reference sample.

    Windows need ``sample_id`` and ``region_id``; the condition comes from ``condition``/``group``.
    """
    codes = sp.csr_matrix(codes)
    unit_of_token, units = _token_units(tokens, windows, ["sample_id", "region_id"], codes.shape[0])
    mean_u, max_u, _, _ = _aggregate(codes, unit_of_token, len(units), threshold)
    samples, s_idx = np.unique(units["sample_id"].astype(str).to_numpy(), return_inverse=True)
    region_ids = units["region_id"].astype(str).to_numpy()
    regions_u, r_idx = np.unique(region_ids, return_inverse=True)
    n_s, n_r, n_f = len(samples), len(regions_u), codes.shape[1]
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
