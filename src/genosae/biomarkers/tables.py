"""The biomarker tables: one ranked row per feature, and feature × locus rows."""

from __future__ import annotations

from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd

from genosae.biomarkers.calibration import PermutationResult
from genosae.biomarkers.profiles import LocusProfiles, catalog_claims, catalog_feature_ids
from genosae.biomarkers.stats import auroc_direction, layer_matrix, rank_features

BIOMARKER_COLUMNS = (
    "rank", "feature", "label", "direction", "mean_diff", "log2fc", "cliffs_delta", "auroc", "p", "q",
    "q_adjusted", "empirical_p", "empirical_p_maxstat", "welch_p", "coef_adjusted", "p_adjusted", "mean_case",
    "mean_control", "n_case", "n_control", "best_concept", "concept_f1", "best_motif", "motif_q",
    "motif_source",
    "top_loci", "n_sig_loci",
)
LOCI_COLUMNS = (
    "feature", "locus_rank", "region_id", "name", "chrom", "start", "end", "strand", "mean_case",
    "mean_control", "delta", "direction", "ref_delta_case", "ref_delta_control", "auroc", "p", "q",
    "variants", "peak_pos", "peak_diff", "peak_to_variant",
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
    locus_tests: pd.DataFrame | None = None,
    variants: pd.Series | None = None,
    layer: str = "mean",
    condition: str = "condition",
    case: str = "case",
    control: str = "control",
    n_loci: int = 10,
    region_names: pd.Series | None = None,
) -> pd.DataFrame:
    """Feature × locus rows: the loci that drive each feature's case/control difference.

    Cohorts (``loci`` given): per region, mean over case samples minus mean over control samples;
    with ``locus_tests`` (from :func:`~genosae.biomarkers.loci.test_loci`) loci are ranked by their
    locus-level p, then by the difference in the feature's direction, and the test columns are
    filled. Region designs (``adata`` with regions as units): each case region's value minus the
    control mean, ranked by that difference. ``variants`` maps region id → its case-enriched
    variants (:func:`~genosae.biomarkers.loci.variant_labels`). Columns :data:`LOCI_COLUMNS`.
    """
    feats = [str(f) for f in features]
    sign = pd.Series(np.where(np.asarray(directions) == "down", -1.0, 1.0), index=feats)
    if loci is not None:
        regions = loci.regions.reset_index(drop=True)
        if locus_tests is None:
            from genosae.biomarkers.loci import test_loci

            locus_tests = test_loci(loci, case=case, control=control, features=feats)
        t = locus_tests[locus_tests["feature"].astype(str).isin(feats)].copy()
        t["feature"] = t["feature"].astype(str)
        t["_score"] = -(t["delta"] * t["feature"].map(sign)).fillna(np.inf)
        t = t.sort_values(["feature", "p", "_score", "region_id"], kind="stable")
        t = t.groupby("feature", sort=False).head(n_loci)
        t["locus_rank"] = t.groupby("feature", sort=False).cumcount() + 1
        order = pd.Series(np.arange(len(feats)), index=feats)
        out = t.sort_values(["feature", "locus_rank"], key=lambda c: c.map(order)
                            if c.name == "feature" else c).reset_index(drop=True)
        out = out.merge(regions.assign(region_id=regions["region_id"].astype(str)), on="region_id",
                        how="left")
    elif adata is not None:
        x = layer_matrix(adata, layer)
        labels = adata.obs[condition].astype(str).to_numpy()
        col = adata.var_names.get_indexer(feats)
        cases = np.flatnonzero(labels == case)
        mean_case = x[cases][:, col]
        mean_ctrl = np.broadcast_to(x[labels == control][:, col].mean(axis=0), mean_case.shape)
        regions = adata.obs.iloc[cases].reset_index(names="region_id")
        delta = mean_case - mean_ctrl
        score = np.nan_to_num(delta * sign.to_numpy()[None, :], nan=-np.inf)
        n = min(n_loci, score.shape[0])
        top = np.argsort(-score, axis=0, kind="stable")[:n]  # [n, n_features]
        f_idx = np.repeat(np.arange(len(feats))[None, :], n, axis=0).T.ravel()
        r = top.T.ravel()
        out = pd.DataFrame({"feature": np.asarray(feats)[f_idx],
                            "locus_rank": np.tile(np.arange(1, n + 1), len(feats)),
                            "mean_case": mean_case[r, f_idx], "mean_control": mean_ctrl[r, f_idx],
                            "delta": delta[r, f_idx]})
        reg = regions.iloc[r].reset_index(drop=True)
        for c in ("region_id", "chrom", "start", "end", "strand", "name"):
            if c in reg.columns:
                out[c] = reg[c].to_numpy()
    else:
        msg = "biomarker_loci needs adata or loci"
        raise ValueError(msg)
    if region_names is not None:
        out["name"] = out["region_id"].astype(str).map(region_names).fillna(out["region_id"])
    elif "name" not in out.columns:
        out["name"] = out["region_id"]
    if "auroc" in out.columns and out["auroc"].notna().any():  # cohorts: the locus test's side
        out["direction"] = auroc_direction(out["auroc"].to_numpy(float))
    else:  # region designs: one case region against the control mean
        out["direction"] = np.where(out["delta"] > 0, "up", np.where(out["delta"] < 0, "down", "none"))
    if variants is not None:
        out["variants"] = out["region_id"].astype(str).map(variants).fillna("")
    return out.reindex(columns=list(LOCI_COLUMNS))


def add_peaks(loci: pd.DataFrame, peaks: pd.DataFrame, variants: pd.DataFrame | None = None
              ) -> pd.DataFrame:
    """Join base-pair peaks (:func:`~genosae.biomarkers.loci.locus_peaks`) onto feature × locus rows,
    with ``peak_to_variant``: bp from the peak to the nearest case-enriched variant of the locus
    (``case_enriched``: more frequent in cases at Fisher q ≤ α)."""
    out = loci.drop(columns=["peak_pos", "peak_diff", "peak_to_variant"], errors="ignore").merge(
        peaks[["feature", "region_id", "peak_pos", "peak_diff"]], on=["feature", "region_id"], how="left")
    out["peak_to_variant"] = np.nan
    if variants is not None and len(variants) and out["peak_pos"].notna().any():
        v = variants.loc[variants["case_enriched"].astype(bool), ["region_id", "pos"]]
        v = v.astype({"region_id": str})
        m = out.reset_index().dropna(subset=["peak_pos"]).merge(v, on="region_id")
        if len(m):
            dist = (m["peak_pos"] - m["pos"]).abs().groupby(m["index"]).min()
            out.loc[dist.index, "peak_to_variant"] = dist.to_numpy()
    return out.reindex(columns=list(LOCI_COLUMNS))


def biomarker_table(
    stats: pd.DataFrame,
    *,
    permutation: PermutationResult | None = None,
    catalog: pd.DataFrame | None = None,
    loci: pd.DataFrame | None = None,
    n_top_loci: int = 3,
    motif_q_max: float = 0.05,
) -> pd.DataFrame:
    """Ranked biomarker table (columns :data:`BIOMARKER_COLUMNS`, documented in docs/biomarkers.md).

    Catalogue names are copied only where they passed their test (:func:`catalog_claims`).
    """
    t = rank_features(stats).copy()
    t["feature"] = t["feature"].astype(str)
    t.insert(0, "rank", np.arange(1, len(t) + 1))
    if permutation is not None:
        t = t.merge(permutation.table().assign(feature=lambda d: d["feature"].astype(str)),
                    on="feature", how="left")
    if catalog is not None and "feature" in catalog.columns:
        cat = catalog.assign(feature=catalog_feature_ids(catalog, list(t["feature"])))
        t = t.merge(catalog_claims(cat, motif_q_max=motif_q_max), on="feature", how="left")
    if loci is not None and len(loci):
        lab = loci.sort_values(["feature", "locus_rank"])
        lab = lab[lab["locus_rank"] <= n_top_loci]
        text = lab.assign(t=lab.apply(_locus_label, axis=1)).groupby("feature")["t"].agg("; ".join)
        t["top_loci"] = t["feature"].map(text)
    return t.reindex(columns=list(BIOMARKER_COLUMNS))
