"""The biomarker tables: one ranked row per feature, and feature × locus rows."""

from __future__ import annotations

from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd

from genosae.biomarkers.calibration import PermutationResult
from genosae.biomarkers.profiles import LocusProfiles, catalog_feature_ids
from genosae.biomarkers.stats import layer_matrix, rank_features

BIOMARKER_COLUMNS = (
    "rank", "feature", "label", "direction", "mean_diff", "log2fc", "cliffs_delta", "auroc", "p", "q",
    "q_adjusted", "empirical_p", "empirical_p_maxstat", "welch_p", "p_adjusted", "mean_case",
    "mean_control", "n_case", "n_control", "best_concept", "concept_f1", "best_motif", "motif_score",
    "top_loci",
)
LOCI_COLUMNS = (
    "feature", "locus_rank", "region_id", "name", "chrom", "start", "end", "strand", "mean_case",
    "mean_control", "delta", "direction",
)


def _locus_label(row: pd.Series) -> str:
    name = row.get("name") or row.get("region_id")
    if pd.isna(row.get("chrom")) or pd.isna(row.get("start")):
        return str(name)
    return f"{row['chrom']}:{int(row['start'])}-{int(row['end'])} ({name})"


def biomarker_loci(
    features: Sequence[str],
    directions: Sequence[str],
    *,
    adata: ad.AnnData | None = None,
    loci: LocusProfiles | None = None,
    layer: str = "mean",
    condition: str = "condition",
    case: str = "case",
    control: str = "control",
    n_loci: int = 10,
    region_names: pd.Series | None = None,
) -> pd.DataFrame:
    """Feature × locus rows where the case/control difference is largest (in the feature's direction).

    Cohorts (``loci`` given): per region, mean over case samples minus mean over control samples.
    Region designs (``adata`` with regions as units): each case region's value minus the control
    mean. Columns :data:`LOCI_COLUMNS`; ``name`` is the gene name when ``region_names`` maps it.
    """
    feats = [str(f) for f in features]
    if loci is not None:
        is_case, is_ctrl = loci.conditions == case, loci.conditions == control
        mc = np.nanmean(loci.mean[is_case], axis=0)
        mk = np.nanmean(loci.mean[is_ctrl], axis=0)
        regions = loci.regions.reset_index(drop=True)
        col = pd.Index(loci.features).get_indexer(feats)
        mean_case, mean_ctrl = mc[:, col], np.broadcast_to(mk[:, col], mc[:, col].shape)
    elif adata is not None:
        x = layer_matrix(adata, layer)
        labels = adata.obs[condition].astype(str).to_numpy()
        col = adata.var_names.get_indexer(feats)
        cases = np.flatnonzero(labels == case)
        mean_case = x[cases][:, col]
        mean_ctrl = np.broadcast_to(x[labels == control][:, col].mean(axis=0), mean_case.shape)
        regions = adata.obs.iloc[cases].reset_index(names="region_id")
    else:
        msg = "biomarker_loci needs adata or loci"
        raise ValueError(msg)
    delta = mean_case - mean_ctrl
    sign = np.where(np.asarray(directions) == "down", -1.0, 1.0)
    score = np.nan_to_num(delta * sign[None, :], nan=-np.inf)
    n = min(n_loci, score.shape[0])
    top = np.argsort(-score, axis=0, kind="stable")[:n]  # [n, n_features]
    f_idx = np.repeat(np.arange(len(feats))[None, :], n, axis=0)
    out = pd.DataFrame({
        "feature": np.asarray(feats)[f_idx.T.ravel()],
        "locus_rank": np.tile(np.arange(1, n + 1), len(feats)),
        "r": top.T.ravel(),
    })
    out["mean_case"] = mean_case[out["r"], f_idx.T.ravel()]
    out["mean_control"] = mean_ctrl[out["r"], f_idx.T.ravel()]
    out["delta"] = delta[out["r"], f_idx.T.ravel()]
    reg = regions.iloc[out["r"].to_numpy()].reset_index(drop=True)
    for c in ("region_id", "chrom", "start", "end", "strand"):
        out[c] = reg[c].to_numpy() if c in reg.columns else None
    if region_names is not None:
        out["name"] = out["region_id"].astype(str).map(region_names).fillna(out["region_id"])
    elif "name" in reg.columns:
        out["name"] = reg["name"].to_numpy()
    else:
        out["name"] = out["region_id"]
    out["direction"] = np.where(out["delta"] > 0, "up", np.where(out["delta"] < 0, "down", "none"))
    return out.reindex(columns=list(LOCI_COLUMNS))


def biomarker_table(
    stats: pd.DataFrame,
    *,
    permutation: PermutationResult | None = None,
    catalog: pd.DataFrame | None = None,
    loci: pd.DataFrame | None = None,
    n_top_loci: int = 3,
) -> pd.DataFrame:
    """Ranked biomarker table (columns :data:`BIOMARKER_COLUMNS`, documented in docs/biomarkers.md)."""
    t = rank_features(stats).copy()
    t["feature"] = t["feature"].astype(str)
    t.insert(0, "rank", np.arange(1, len(t) + 1))
    if permutation is not None:
        t = t.merge(permutation.table().assign(feature=lambda d: d["feature"].astype(str)),
                    on="feature", how="left")
    if catalog is not None and "feature" in catalog.columns:
        cat = catalog.assign(feature=catalog_feature_ids(catalog, list(t["feature"])))
        cat = cat.drop_duplicates("feature")
        ren = {"f1": "concept_f1"}
        if "motif_score" not in cat.columns and "motif_q" in cat.columns:
            ren["motif_q"] = "motif_score"
        cat = cat.rename(columns=ren)
        keep = ["feature"] + [c for c in ("label", "best_concept", "concept_f1", "best_motif",
                                          "motif_score") if c in cat.columns]
        t = t.merge(cat[keep], on="feature", how="left")
    if loci is not None and len(loci):
        lab = loci.sort_values(["feature", "locus_rank"])
        lab = lab[lab["locus_rank"] <= n_top_loci]
        text = lab.assign(t=lab.apply(_locus_label, axis=1)).groupby("feature")["t"].agg("; ".join)
        t["top_loci"] = t["feature"].map(text)
    return t.reindex(columns=list(BIOMARKER_COLUMNS))
