"""Variant-aware, locus-level cohort analysis: feature × locus tests and the variants behind them.

A cohort feature that differs between cases and controls is only useful when it points to *where*:
:func:`test_loci` tests every feature at every locus (the per-sample mean activation over the
locus; since the reference activation is a constant per locus, this is the same test as on the
per-locus delta ``sample − reference``), and :func:`locus_variants` lists the variants each locus
carries in cases and in controls, read from the sample haplotypes against the reference windows.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats as sst

from genosae.biomarkers.profiles import LocusProfiles
from genosae.biomarkers.stats import case_control_masks, mann_whitney
from genosae.errors import InputError
from genosae.genome.reference import Reference, complement_codes, decode_bases, encode_bases
from genosae.genome.windows import REFERENCE_SAMPLE
from genosae.multitest import benjamini_hochberg

if TYPE_CHECKING:
    from genosae.features.activations import Encoder
    from genosae.model.store import ActivationStore

LOCUS_TEST_COLUMNS = (
    "feature", "region_id", "mean_case", "mean_control", "delta", "ref_delta_case",
    "ref_delta_control", "auroc", "p", "q",
)


def test_loci(
    loci: LocusProfiles,
    *,
    case: str = "case",
    control: str = "control",
    features: Sequence[str] | None = None,
    chunk_features: int = 256,
) -> pd.DataFrame:
    """Two-sided Mann-Whitney U of case vs control samples for every feature × locus.

    Parameters
    ----------
    loci
        Cohort profiles from :func:`~genosae.biomarkers.profiles.locus_profiles`.
    case, control
        Condition labels compared (other samples, e.g. the reference, are ignored).
    features
        Features tested (default all); BH runs over every feature × locus pair tested.
    chunk_features
        Features tested at once (bounds memory to ``n_samples × n_regions × chunk`` values).

    Returns
    -------
    Long table, columns :data:`LOCUS_TEST_COLUMNS`: group means of the locus mean activation,
    ``delta`` = their difference, ``ref_delta_*`` = group means of (sample − reference) at the
    locus, ``auroc`` = U/(n_case·n_control), ``p``, and ``q`` (BH over all pairs whose values
    are not all equal; constant pairs get ``p = q = 1``, see :func:`~genosae.multitest.benjamini_hochberg`). Loci a
    sample lacks count as missing for that sample (then every pair uses the asymptotic method;
    otherwise each pair gets the method scipy's ``"auto"`` picks for it alone, see
    :func:`~genosae.biomarkers.stats.mann_whitney`).
    """
    is_case, is_ctrl = case_control_masks(loci.conditions, case, control, units="samples")
    names = pd.Index(loci.features)
    cols = np.arange(len(names)) if features is None else names.get_indexer([str(f) for f in features])
    if (cols < 0).any():
        raise InputError("features not in the locus profiles", record="features")
    n1, n2 = int(is_case.sum()), int(is_ctrl.sum())
    parts = []
    for start in range(0, cols.size, chunk_features):
        c = cols[start:start + chunk_features]
        xc, xk = loci.mean[is_case][:, :, c], loci.mean[is_ctrl][:, :, c]  # [n, regions, chunk]
        has_nan = np.isnan(xc).any() or np.isnan(xk).any()
        if has_nan:  # one method for all columns so a column's p does not depend on the others
            with np.errstate(divide="ignore", invalid="ignore"):
                res = sst.mannwhitneyu(xc.astype(np.float64), xk.astype(np.float64), axis=0,
                                       alternative="two-sided", method="asymptotic", nan_policy="omit")
            u, p = np.asarray(res.statistic, dtype=float), np.asarray(res.pvalue, dtype=float)
        else:
            u, p = mann_whitney(xc, xk)
        with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices give NaN means
            both = np.concatenate([xc, xk], axis=0)
            const = (np.nanmax(both, axis=0) - np.nanmin(both, axis=0)) == 0
            mean_c, mean_k = np.nanmean(xc, axis=0), np.nanmean(xk, axis=0)
            dc = np.nanmean(loci.delta[is_case][:, :, c], axis=0)
            dk = np.nanmean(loci.delta[is_ctrl][:, :, c], axis=0)
        p = np.where(const | np.isnan(p), 1.0, p)
        n_c = (~np.isnan(xc)).sum(axis=0) if has_nan else n1
        n_k = (~np.isnan(xk)).sum(axis=0) if has_nan else n2
        auroc = u / np.maximum(n_c * n_k, 1)
        r_idx, f_idx = np.meshgrid(np.arange(len(loci.regions)), c, indexing="ij")
        parts.append(pd.DataFrame({
            "feature": names.to_numpy()[f_idx.T.ravel()],
            "region_id": loci.regions["region_id"].to_numpy()[r_idx.T.ravel()],
            "mean_case": mean_c.T.ravel(), "mean_control": mean_k.T.ravel(),
            "delta": (mean_c - mean_k).T.ravel(),
            "ref_delta_case": dc.T.ravel(), "ref_delta_control": dk.T.ravel(),
            "auroc": np.where(const, 0.5, auroc).T.ravel(), "p": p.T.ravel(),
            "tested": ~const.T.ravel(),
        }))
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=LOCUS_TEST_COLUMNS)
    out["q"] = (benjamini_hochberg(out["p"].to_numpy(), tested=out["tested"].to_numpy(), nan="one")
                if len(out) else [])
    return out.reindex(columns=list(LOCUS_TEST_COLUMNS))


test_loci.__test__ = False  # not a pytest test when imported into a test module


VARIANT_COLUMNS = (
    "region_id", "chrom", "pos", "ref", "alt", "carriers_case", "carriers_control", "freq_case",
    "freq_control", "freq_diff", "p", "q", "case_enriched",
)


def carrier_fisher_p(carriers_case: np.ndarray, carriers_control: np.ndarray, n_case: int,
                     n_control: int) -> np.ndarray:
    """Two-sided Fisher's exact p of carriers vs non-carriers, cases vs controls, per variant.

    Same as ``scipy.stats.fisher_exact`` on ``[[a, n_case − a], [b, n_control − b]]``; vectorised
    over the distinct ``(a, b)`` pairs (a p depends only on them): the hypergeometric probability
    of every table with the same margins, summed over those no more likely than the observed one.
    """
    a = np.asarray(carriers_case, dtype=np.int64)
    b = np.asarray(carriers_control, dtype=np.int64)
    if a.size == 0:
        return np.zeros(0)
    if n_case < 1 or n_control < 1:
        return np.ones(a.size)
    pairs, inv = np.unique(np.stack([a, b], axis=1), axis=0, return_inverse=True)
    total = n_case + n_control
    k = np.arange(n_case + 1)[None, :]
    carriers = pairs.sum(axis=1)[:, None]
    pmf = sst.hypergeom.pmf(k, total, carriers, n_case)  # [pairs, possible case carrier counts]
    obs = pmf[np.arange(len(pairs)), pairs[:, 0]][:, None]
    p = np.where(pmf <= obs * (1 + 1e-7), pmf, 0.0).sum(axis=1)
    return np.clip(p, 0.0, 1.0)[inv.ravel()]


def _carrier_table(calls: pd.DataFrame | None, case: str, control: str, n_case: int, n_ctrl: int,
                   alpha: float = 0.05) -> pd.DataFrame:
    """Per locus × variant: case/control samples carrying it (any haplotype), their frequencies and
    a Fisher's exact test of carrier counts (BH q over all variants; ``case_enriched`` = more
    frequent in cases with ``q ≤ alpha``).

    ``calls`` has one row per sample × haplotype × variant (``sample_id, condition, region_id, chrom,
    pos, ref, alt``); the same variant on two haplotypes of a sample counts once.
    """
    if calls is None or calls.empty:
        return pd.DataFrame(columns=list(VARIANT_COLUMNS))
    key = ["region_id", "chrom", "pos", "ref", "alt"]
    c = calls.drop_duplicates(["sample_id", *key])
    out = (c.assign(is_case=c["condition"] == case, is_ctrl=c["condition"] == control)
           .groupby(key, sort=False)
           .agg(carriers_case=("is_case", "sum"), carriers_control=("is_ctrl", "sum")).reset_index())
    out["freq_case"] = out["carriers_case"] / max(n_case, 1)
    out["freq_control"] = out["carriers_control"] / max(n_ctrl, 1)
    out["freq_diff"] = out["freq_case"] - out["freq_control"]
    out["p"] = carrier_fisher_p(out["carriers_case"].to_numpy(), out["carriers_control"].to_numpy(),
                                n_case, n_ctrl)
    out["q"] = benjamini_hochberg(out["p"].to_numpy(), nan="one")
    out["case_enriched"] = (out["freq_diff"] > 0) & (out["q"] <= alpha)
    return out.sort_values(["region_id", "freq_diff", "pos"], ascending=[True, False, True],
                           ignore_index=True)[list(VARIANT_COLUMNS)]


def locus_variants(
    windows: pd.DataFrame,
    *,
    case: str = "case",
    control: str = "control",
    reference_sample: str = REFERENCE_SAMPLE,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Single-base differences of every sample haplotype from the reference window, per locus.

    ``windows`` is a cohort windows table (``sample_id``, ``region_id``, ``condition``,
    ``sequence``, ``chrom``, ``start``, ``end``, ``strand``; ``haplotype`` optional) that includes
    the ``__reference__`` windows. Windows whose length differs from the reference window (an indel)
    contribute no SNVs and are counted in ``n_indel_windows`` of the result's ``attrs``.

    Returns
    -------
    One row per locus × variant: ``region_id, chrom, pos`` (1-based, forward strand), ``ref``,
    ``alt`` (forward strand), ``carriers_case``, ``carriers_control`` (samples carrying it on any
    haplotype), ``freq_case``, ``freq_control``, ``freq_diff`` = ``freq_case − freq_control``,
    ``p`` (two-sided Fisher's exact test of carriers in cases vs controls, :func:`carrier_fisher_p`),
    ``q`` (BH over all variants) and ``case_enriched`` (``freq_diff > 0`` and ``q ≤ alpha``).
    """
    need = {"sample_id", "region_id", "sequence", "chrom", "start", "end"}
    missing = need - set(windows.columns)
    if missing:
        raise InputError(f"windows table lacks column(s) {sorted(missing)} for variant calls",
                         record="windows")
    cond_col = "condition" if "condition" in windows.columns else "group"
    w = windows.assign(sample_id=windows["sample_id"].astype(str),
                       seq_len=windows["sequence"].astype(str).str.len())
    ref = w[w["sample_id"] == reference_sample].drop_duplicates(["chrom", "start", "end"])
    if ref.empty:
        raise InputError(f"no {reference_sample!r} windows; build the cohort windows with "
                         "genosae.genome.windows.cohort_windows", record="windows")
    samp = w[w["sample_id"] != reference_sample]
    n_case = samp.loc[samp[cond_col].astype(str) == case, "sample_id"].nunique()
    n_ctrl = samp.loc[samp[cond_col].astype(str) == control, "sample_id"].nunique()
    merged = samp.merge(ref[["chrom", "start", "end", "sequence", "seq_len"]],
                        on=["chrom", "start", "end"], suffixes=("", "_ref"))
    same = merged["seq_len"] == merged["seq_len_ref"]
    calls = []
    for _, grp in merged[same].groupby("seq_len"):  # one vectorised block per window length
        shape = (len(grp), -1)  # equal-length sequences: one [n, L] block of base codes
        a = encode_bases("".join(grp["sequence"].astype(str))).reshape(shape)
        b = encode_bases("".join(grp["sequence_ref"].astype(str))).reshape(shape)
        rows, offs = np.nonzero((a != b) & (a < 4) & (b < 4))
        minus = (grp["strand"].astype(str).to_numpy() == "-") if "strand" in grp else np.zeros(len(grp), bool)
        alt, refb = a[rows, offs], b[rows, offs]
        m = minus[rows]
        # '-' windows hold the reverse complement: map the offset and bases back to the + strand
        pos0 = np.where(m, grp["end"].to_numpy()[rows] - 1 - offs, grp["start"].to_numpy()[rows] + offs)
        alt = np.where(m, complement_codes(alt), alt)
        refb = np.where(m, complement_codes(refb), refb)
        calls.append(pd.DataFrame({
            "sample_id": grp["sample_id"].to_numpy()[rows],
            "condition": grp[cond_col].astype(str).to_numpy()[rows],
            "region_id": grp["region_id"].astype(str).to_numpy()[rows],
            "chrom": grp["chrom"].astype(str).to_numpy()[rows], "pos": pos0 + 1,
            "ref": decode_bases(refb), "alt": decode_bases(alt),
        }))
    out = _carrier_table(pd.concat(calls, ignore_index=True) if calls else None, case, control,
                         n_case, n_ctrl, alpha)
    out.attrs["n_indel_windows"] = int((~same).sum())
    return out


def vcf_locus_variants(
    samples: pd.DataFrame,
    regions: pd.DataFrame,
    reference: Reference,
    *,
    case: str = "case",
    control: str = "control",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Variants per locus read from the cohort's VCFs: SNVs, MNVs and indels, every ALT allele.

    ``samples`` is the sample sheet (``sample_id``, ``condition``, ``vcf``; the VCF must hold a
    sample of that name); ``regions`` has ``region_id, chrom, start, end`` (0-based half-open). A
    variant belongs to a locus when its first base lies inside it. Columns as
    :func:`locus_variants` (a sample carries an allele when either haplotype has it; missing
    genotypes count as not carrying).
    """
    from genosae.genome.variants import read_vcf

    need = {"sample_id", "condition", "vcf"}
    if not need <= set(samples.columns):
        raise InputError(f"sample sheet lacks column(s) {sorted(need - set(samples.columns))}",
                         record="samples")
    cond = samples["condition"].astype(str).to_numpy()
    n_case, n_ctrl = int((cond == case).sum()), int((cond == control).sum())
    cache: dict[str, object] = {}
    rows = []
    for sid, condition, path in samples[["sample_id", "condition", "vcf"]].itertuples(index=False):
        if str(path) not in cache:
            cache[str(path)] = read_vcf(path, reference)
        data = cache[str(path)]
        if str(sid) not in data.samples:
            raise InputError(f"sample '{sid}' is not in the VCF (samples: {', '.join(data.samples[:20])})",
                             path=data.path)
        gt = data.genotypes[:, data.samples.index(str(sid)), :]
        rec = data.records
        for allele in range(1, 1 + max((len(a) for a in rec["alts"]), default=0)):
            has = (gt == allele).any(axis=1)
            if not has.any():
                continue
            sub = rec[has]
            alt = [a[allele - 1] if len(a) >= allele else "" for a in sub["alts"]]
            rows.append(pd.DataFrame({"sample_id": str(sid), "condition": str(condition),
                                      "chrom": sub["chrom"].to_numpy(), "pos0": sub["pos"].to_numpy(),
                                      "ref": sub["ref"].to_numpy(), "alt": alt}))
    if not rows:
        return _carrier_table(None, case, control, n_case, n_ctrl, alpha)
    calls = pd.concat(rows, ignore_index=True)
    calls = calls[~calls["alt"].isin(["", "*", "."]) & ~calls["alt"].str.startswith("<")]
    calls = calls.assign(pos=calls["pos0"] + 1).sort_values(["chrom", "pos0"], ignore_index=True)
    by_chrom = {c: (g.index.to_numpy(), g["pos0"].to_numpy()) for c, g in calls.groupby("chrom")}
    parts = []
    for r in regions[["region_id", "chrom", "start", "end"]].itertuples(index=False):  # per locus
        idx, pos = by_chrom.get(reference.resolve(r.chrom), (np.zeros(0, int), np.zeros(0, int)))
        lo, hi = np.searchsorted(pos, [int(r.start), int(r.end)], side="left")
        if hi > lo:
            parts.append(calls.iloc[idx[lo:hi]].assign(region_id=str(r.region_id)))
    return _carrier_table(pd.concat(parts, ignore_index=True) if parts else None, case, control,
                          n_case, n_ctrl, alpha)


def variant_labels(variants: pd.DataFrame, *, n: int = 3) -> pd.Series:
    """Per region: its ``n`` most case-enriched variants (``case_enriched``: more frequent in cases,
    Fisher q ≤ α) as ``chrom:pos ref>alt (case f / control f)``; regions without one are absent."""
    if variants.empty:
        return pd.Series(dtype=str)
    if "case_enriched" not in variants.columns:
        msg = "variants lack 'case_enriched'; build them with locus_variants or vcf_locus_variants"
        raise ValueError(msg)
    v = variants[variants["case_enriched"].astype(bool)]
    v = v.sort_values(["region_id", "freq_diff", "pos"], ascending=[True, False, True])
    v = v.groupby("region_id", sort=False).head(n)
    text = (v["chrom"] + ":" + v["pos"].astype(str) + " " + v["ref"] + ">" + v["alt"] + " (case "
            + v["freq_case"].round(2).astype(str) + " / control " + v["freq_control"].round(2).astype(str)
            + ")")
    return text.groupby(v["region_id"], sort=False).agg("; ".join)


LOCUS_SUMMARY_COLUMNS = (
    "locus_rank", "region_id", "name", "chrom", "start", "end", "strand", "n_sig_features",
    "n_nominal_features", "min_q", "min_p", "top_features", "variants",
)


def locus_summary(
    tests: pd.DataFrame,
    regions: pd.DataFrame,
    *,
    alpha: float = 0.05,
    n_features: int = 5,
    names: pd.Series | None = None,
    variants: pd.Series | None = None,
) -> pd.DataFrame:
    """One row per locus, ranked by how many features change there: features with locus q ≤ α,
    then (for loci tied there, e.g. when nothing passes BH) features with nominal p ≤ 0.01, then
    the smallest p.

    ``top_features`` lists the ``n_features`` features with the smallest locus-level p, each with
    the sign of its case − control difference; ``variants`` (region id → text, from
    :func:`variant_labels`) names the case-enriched variants (Fisher q ≤ α). Columns :data:`LOCUS_SUMMARY_COLUMNS`.
    """
    t = tests.assign(sig=tests["q"] <= alpha, nominal=tests["p"] <= 0.01,
                     region_id=tests["region_id"].astype(str))
    g = t.groupby("region_id")
    out = pd.DataFrame({"n_sig_features": g["sig"].sum(), "n_nominal_features": g["nominal"].sum(),
                        "min_q": g["q"].min(), "min_p": g["p"].min()})
    best = t.sort_values(["p", "feature"]).groupby("region_id").head(n_features)
    best_text = (best["feature"].astype(str) + np.where(best["delta"] >= 0, "↑", "↓"))
    out["top_features"] = best_text.groupby(best["region_id"]).agg(", ".join)
    out = out.reset_index().merge(regions.assign(region_id=regions["region_id"].astype(str)),
                                  on="region_id", how="left")
    out["name"] = (out["region_id"].map(names).fillna(out["region_id"]) if names is not None
                   else out["region_id"])
    out["variants"] = out["region_id"].map(variants).fillna("") if variants is not None else ""
    out = out.sort_values(["n_sig_features", "n_nominal_features", "min_p", "region_id"],
                          ascending=[False, False, True, True], ignore_index=True)
    out["locus_rank"] = np.arange(1, len(out) + 1)
    return out.reindex(columns=list(LOCUS_SUMMARY_COLUMNS))


def locus_peaks(
    sae: Encoder,
    store: ActivationStore,
    windows: pd.DataFrame,
    pairs: pd.DataFrame,
    *,
    case: str = "case",
    control: str = "control",
    condition: str = "condition",
    batch_size: int = 4096,
) -> pd.DataFrame:
    """Base-pair resolution of feature × locus changes: where in the locus cases and controls differ.

    For each ``(feature, region_id)`` of ``pairs`` (e.g. the rows of ``biomarker_loci.csv``), the
    windows of the region are re-encoded from the activation ``store`` with ``sae`` (only those
    windows are read), the feature's activation is averaged per reference position over case and
    over control haplotypes, and the position with the largest difference is reported.

    Returns
    -------
    ``feature, region_id, peak_chrom, peak_pos`` (1-based reference position), ``peak_diff`` (case
    minus control mean activation there; its sign is the direction).
    """
    from genosae.features.activations import numpy_encoder

    cols = ["feature", "region_id", "peak_chrom", "peak_pos", "peak_diff"]
    if pairs.empty:
        return pd.DataFrame(columns=cols)
    labels = windows[condition].astype(str).to_numpy()
    region_of_window = windows["region_id"].astype(str).to_numpy()
    shard_ranges = np.array([s["window_range"] for s in store.shards], dtype=np.int64)
    encode = numpy_encoder(sae)
    names = pairs["feature"].astype(str)
    if not names.str.fullmatch(r"f\d+").all():
        raise InputError("locus peaks need SAE feature names f<index> (FeatureActs naming)",
                         record="features")
    rows = []
    for region, grp in pairs.assign(region_id=pairs["region_id"].astype(str)).groupby("region_id"):
        feats = np.array(sorted({int(str(f)[1:]) for f in grp["feature"]}))
        wins = np.flatnonzero((region_of_window == region) & np.isin(labels, [case, control]))
        if wins.size == 0:
            continue
        need = np.flatnonzero((shard_ranges[:, 0] <= wins.max()) & (shard_ranges[:, 1] > wins.min()))
        pos, chrom, grp_case, codes = [], [], [], []
        for i in need:  # the shards that hold this locus (locus-major cohorts: one or two)
            sh = store.load_shard(int(i), columns=["acts", "window_index", "bp_start", "is_special"])
            keep = np.isin(sh["window_index"], wins) & ~sh["is_special"].astype(bool) & (sh["bp_start"] >= 0)
            idx = np.flatnonzero(keep)
            for lo in range(0, idx.size, batch_size):
                codes.append(encode(sh["acts"][idx[lo:lo + batch_size]])[:, feats])
            pos.append(sh["bp_start"][idx])
            grp_case.append(labels[sh["window_index"][idx]] == case)
            chrom.append(windows["chrom"].astype(str).to_numpy()[sh["window_index"][idx]])
        if not codes:
            continue
        c, p, is_case = np.concatenate(codes), np.concatenate(pos), np.concatenate(grp_case)
        uniq, p_idx = np.unique(p, return_inverse=True)
        sums = np.zeros((2, uniq.size, feats.size))
        counts = np.zeros((2, uniq.size))
        np.add.at(sums, (is_case.astype(int), p_idx), c)
        np.add.at(counts, (is_case.astype(int), p_idx), 1)
        covered = (counts > 0).all(axis=0)  # positions seen in both groups
        with np.errstate(invalid="ignore", divide="ignore"):
            diff = sums[1] / counts[1][:, None] - sums[0] / counts[0][:, None]
        diff[~covered] = 0.0
        best = np.argmax(np.abs(diff), axis=0)
        chrom_of = np.concatenate(chrom)[0]
        for j, f in enumerate(feats):
            rows.append((f"f{f}", region, chrom_of, int(uniq[best[j]]) + 1, float(diff[best[j], j])))
    return pd.DataFrame(rows, columns=cols)
