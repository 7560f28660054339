"""One biomarker run: profiles → statistics → calibration → baselines → tables (a results folder)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from genosae._io import write_json, write_table
from genosae.biomarkers.baselines import (
    compare_methods,
    kmer_baseline,
    linear_probe,
    unit_sequences,
)
from genosae.biomarkers.calibration import (
    ClassifierResult,
    PermutationResult,
    cv_classifier,
    permutation_null,
)
from genosae.biomarkers.inputs import BiomarkerInputs
from genosae.biomarkers.loci import (
    locus_peaks,
    locus_summary,
    locus_variants,
    test_loci,
    variant_labels,
)
from genosae.biomarkers.profiles import (
    LocusProfiles,
    as_window_acts,
    locus_profiles,
    region_profiles,
    write_profiles,
)
from genosae.biomarkers.stats import case_control_masks, test_features
from genosae.biomarkers.tables import add_peaks, biomarker_loci, biomarker_table
from genosae.features.activations import WindowActs
from genosae.genome.designs import CohortDesign, Design, as_design
from genosae.genome.windows import REFERENCE_SAMPLE

if TYPE_CHECKING:
    from genosae.features.activations import Encoder
    from genosae.model.store import ActivationStore

log = logging.getLogger(__name__)


@dataclass
class BiomarkerRun:
    """Everything one run produces (also written by :func:`write_run`)."""

    adata: ad.AnnData
    stats: pd.DataFrame
    biomarkers: pd.DataFrame
    loci: pd.DataFrame
    permutation: PermutationResult | None
    classifier: dict[str, Any]
    baselines: pd.DataFrame
    design_summary: dict[str, Any]
    locus_profiles: LocusProfiles | None = None
    locus_tests: pd.DataFrame | None = None
    locus_table: pd.DataFrame | None = None
    variants: pd.DataFrame | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # "kmer_k{k}_table": the k-mer tests, ranked
    known_motifs: pd.DataFrame | None = None  # motif_enrichment.known_motif_enrichment
    known_motif_biomarkers: pd.DataFrame | None = None  # motif_enrichment.cross_reference table


def run_biomarkers(
    acts: WindowActs | sp.spmatrix,
    tokens: pd.DataFrame | None,
    windows: pd.DataFrame,
    *,
    design: Design | Mapping[str, Any],
    params: dict[str, Any],
    feature_names: Sequence[str] | None = None,
    catalog: pd.DataFrame | None = None,
    obs: pd.DataFrame | None = None,
    sequences: Sequence[str] | None = None,
    embeddings: pd.DataFrame | None = None,
    variants: pd.DataFrame | None = None,
    sae: Encoder | None = None,
    store: ActivationStore | None = None,
    config: dict[str, Any] | None = None,
    seed: int = 0,
    n_loci: int = 10,
    n_loci_features: int = 50,
    motifs: Sequence[Any] | None = None,
) -> BiomarkerRun:
    """Run the whole biomarker step in memory: the units' profiles and tests (every design), then
    the loci of the design's kind, then the tables.

    Parameters
    ----------
    acts, tokens, windows, feature_names
        Feature activations: per-window aggregates (``WindowActs``, ``tokens=None``) or token-level
        codes with their token table (``FeatureActs.codes``, ``.tokens``), and the windows table
        they index.
    design
        A typed :class:`~genosae.genome.designs.Design` (or its config section, typed here once):
        its ``unit`` (regions, or a cohort's samples) and ``case_label`` / ``control_label``.
    params
        The ``biomarkers`` config section (``permutations``, ``alpha``, ``kmer_k``, ``cv_folds``,
        ``covariates``); covariates absent from the units' ``obs`` are skipped with a warning.
    obs
        Per-unit table (cohort: the sample sheet) merged into the profiles' ``obs``.
    sequences
        Window sequences (aligned with ``windows``) for composition covariates and the k-mer
        baseline; default the windows' ``sequence`` column; without them the k-mer baseline is skipped.
    embeddings
        Mean raw embeddings per unit (index = unit id) for the linear-probe baseline.
    variants
        Cohorts: variants per locus (:func:`~genosae.biomarkers.loci.vcf_locus_variants`, from the
        VCFs, indels included); default: SNVs called from the haplotype window sequences
        (:func:`~genosae.biomarkers.loci.locus_variants`).
    sae, store
        Cohorts: the SAE and the design's activation store; when both are given the feature × locus
        rows gain base-pair peaks (:func:`~genosae.biomarkers.loci.locus_peaks`).
    motifs
        Known motifs (:class:`~genosae.genome.motifs.Motif`) for the known-motif enrichment baseline
        (:mod:`~genosae.biomarkers.motif_enrichment`; FIMO at ``config["motifs"]["pvalue"]``); needs
        ``sequences``.
    """
    design = as_design(design)
    if sequences is None and "sequence" in windows.columns:
        sequences = windows["sequence"].astype(str).tolist()
    units = _test_units(acts, tokens, windows, design=design, params=params, feature_names=feature_names,
                        catalog=catalog, obs=obs, sequences=sequences, embeddings=embeddings,
                        config=config, seed=seed, n_features=n_loci_features)
    if isinstance(design, CohortDesign) and "region_id" in windows.columns:
        loci = _cohort_loci(units, windows, design, variants=variants, sae=sae, store=store, n_loci=n_loci)
    else:
        loci = _unit_loci(units, design, n_loci=n_loci)
    run = _assemble(units, loci, design, catalog)
    if motifs and sequences is not None:
        pvalue = float(((config or {}).get("motifs") or {}).get("pvalue", 1e-4))
        _known_motifs(run, units, windows, sequences, design, motifs, pvalue=pvalue)
    elif motifs:
        log.warning("no unit sequences: the known-motif enrichment baseline is skipped")
    return run


def _known_motifs(run: BiomarkerRun, units: _UnitTests, windows: pd.DataFrame, sequences: Sequence[str],
                  design: Design, motifs: Sequence[Any], *, pvalue: float) -> None:
    """Known-motif enrichment of the units (and, for cohorts, of every locus), its row in the
    baselines and its cross-reference with the SAE biomarkers (in place on ``run``)."""
    from genosae.biomarkers.motif_enrichment import (
        cross_reference,
        known_motif_enrichment,
        motif_hit_counts,
    )

    alpha, unit, adata = units.alpha, design.unit, units.adata
    names = {str(m.id): str(m.name) for m in motifs}
    kw = {"motif_names": names, "case": design.case_label, "control": design.control_label,
          "covariates": units.covariates}
    per_locus = None
    if isinstance(design, CohortDesign) and "region_id" in windows.columns:
        # scan each sample's haplotypes once per locus; a sample's counts are the sum over its loci
        keep = windows["sample_id"].astype(str).isin(adata.obs_names.astype(str)).to_numpy()
        w = windows[keep].assign(sample_locus=windows["sample_id"].astype(str)[keep] + "|"
                                 + windows["region_id"].astype(str)[keep])
        su = pd.Index(pd.unique(w["sample_locus"]))
        lseqs = unit_sequences(w, [s for s, k in zip(sequences, keep, strict=True) if k], su, "sample_locus")
        lcounts = motif_hit_counts(dict(zip(su, lseqs, strict=True)), motifs, threshold=pvalue)
        sample = su.str.split("|").str[0]
        counts = lcounts.groupby(sample.to_numpy()).sum().reindex(adata.obs_names.astype(str), fill_value=0)
        per_locus = known_motif_enrichment(lcounts, adata.obs.reindex(sample).set_axis(su),
                                           group=pd.Series(su.str.split("|", n=1).str[1], index=su), **kw)
    else:
        seqs = unit_sequences(windows, sequences, adata.obs_names, unit)
        counts = motif_hit_counts(dict(zip(adata.obs_names.astype(str), seqs, strict=True)), motifs,
                                  threshold=pvalue)
    table = known_motif_enrichment(counts, adata.obs, **kw)
    if per_locus is not None:
        table = pd.concat([table, per_locus], ignore_index=True)
    mean = pd.DataFrame(np.asarray(adata.layers["mean"]), index=adata.obs_names.astype(str),
                        columns=adata.var_names.astype(str))
    cross, summary = cross_reference(table, run.biomarkers, mean, counts, adata.obs["condition"], alpha=alpha)
    unit_rows = table[table["group"] == ""]
    best = unit_rows.iloc[0] if len(unit_rows) else None
    row = {"method": "known_motifs_fisher", "n_features": len(unit_rows),
           "n_significant": int((unit_rows["fisher_q"] <= alpha).sum()),
           "best_feature": str(best["motif_name"] or best["motif_id"]) if best is not None else None,
           "best_q": float(best["fisher_q"]) if best is not None else None}
    run.baselines = pd.concat([run.baselines, pd.DataFrame([row])], ignore_index=True)
    run.known_motifs, run.known_motif_biomarkers = table, cross
    run.design_summary["known_motifs"] = {
        "n_motifs": len(motifs), "fimo_p": pvalue, "n_significant_fisher": row["n_significant"],
        "n_significant_logistic": int((unit_rows["logit_q"] <= alpha).sum()), **summary}


@dataclass
class _UnitTests:
    """What every design computes on its units: profiles, per-feature tests, calibration, baselines."""

    wa: WindowActs
    feature_names: list[str]
    adata: ad.AnnData
    stats: pd.DataFrame
    permutation: PermutationResult | None
    classifier: ClassifierResult
    baselines: pd.DataFrame
    kmer_tables: dict[str, pd.DataFrame]
    is_case: np.ndarray
    is_ctrl: np.ndarray
    covariates: list[str]
    skipped: list[str]
    alpha: float
    motif_q_max: float
    top: pd.DataFrame


@dataclass
class _Loci:
    """Where the top features change: per-unit loci, or a cohort's feature × locus tests."""

    loci: pd.DataFrame
    stats: pd.DataFrame
    profiles: LocusProfiles | None = None
    tests: pd.DataFrame | None = None
    table: pd.DataFrame | None = None
    variants: pd.DataFrame | None = None


def _test_units(acts: WindowActs | sp.spmatrix, tokens: pd.DataFrame | None, windows: pd.DataFrame, *,
                design: Design, params: dict[str, Any], feature_names: Sequence[str] | None,
                catalog: pd.DataFrame | None, obs: pd.DataFrame | None, sequences: Sequence[str] | None,
                embeddings: pd.DataFrame | None, config: dict[str, Any] | None, seed: int,
                n_features: int) -> _UnitTests:
    """Profiles of the design's units → feature tests → permutation null → classifier → baselines."""
    case, control, unit = design.case_label, design.control_label, design.unit
    wa = as_window_acts(acts, tokens, windows, feature_names, 0.0)
    names = list(feature_names) if feature_names is not None else wa.feature_names
    # a catalogue without null-controlled motif names (motif_label / motif_name): its Tomtom q must
    # pass features.motif_q (else features.fdr)
    fcfg = (config or {}).get("features") or {}
    motif_q_max = float(fcfg.get("motif_q", fcfg.get("fdr", 0.05)))
    adata = region_profiles(wa, None, windows, unit=unit, obs=obs, catalog=catalog,
                            sequences=sequences if unit == "region_id" else None, config=config,
                            feature_names=names, motif_q_max=motif_q_max)
    # the reference haplotype is a baseline for per-locus deltas, not a unit of the comparison
    adata = adata[adata.obs_names != REFERENCE_SAMPLE].copy()
    covs = [c for c in params.get("covariates", []) if c in adata.obs.columns]
    skipped = sorted(set(params.get("covariates", [])) - set(covs))
    if skipped:
        log.warning("covariates %s are not defined for %s units; skipped", skipped, unit)
    alpha = float(params.get("alpha", 0.05))
    stats = test_features(adata, case=case, control=control, covariates=covs)
    n_perm = int(params.get("permutations", 200))
    perm = (permutation_null(adata, case=case, control=control, n_permutations=n_perm, alpha=alpha,
                             seed=seed) if n_perm > 0 else None)
    is_case, is_ctrl = case_control_masks(adata.obs, case, control)
    sel = is_case | is_ctrl
    folds = int(params.get("cv_folds", 5))
    clf = cv_classifier(adata.layers["mean"][sel], is_case[sel], folds, penalty="l1",
                        feature_names=list(adata.var_names), seed=seed)
    results: dict[str, dict[str, Any]] = {"sae_features": {"table": stats, "classifier": clf}}
    if sequences is not None:
        seqs = unit_sequences(windows, sequences, adata.obs_names, unit)
        kb = kmer_baseline(seqs, adata.obs, k=int(params.get("kmer_k", 4)), case=case,
                           control=control, covariates=covs, folds=folds, seed=seed)
        results[f"kmer_k{params.get('kmer_k', 4)}"] = kb
    if embeddings is not None:
        emb = embeddings.reindex(adata.obs_names[sel])
        if emb.isna().any().any():
            log.warning("embeddings missing for some units; linear probe skipped")
        else:
            for penalty in ("l2", "l1"):
                results[f"linear_probe_{penalty}"] = {"classifier": linear_probe(
                    emb, is_case[sel], folds=folds, penalty=penalty, seed=seed)}
    return _UnitTests(wa=wa, feature_names=names, adata=adata, stats=stats, permutation=perm,
                      classifier=clf, baselines=compare_methods(results, alpha),
                      kmer_tables={f"{k}_table": r["table"] for k, r in results.items()
                                   if k.startswith("kmer") and "table" in r},
                      is_case=is_case, is_ctrl=is_ctrl, covariates=covs, skipped=skipped, alpha=alpha,
                      motif_q_max=motif_q_max, top=biomarker_table(stats).head(n_features))


def _unit_loci(units: _UnitTests, design: Design, *, n_loci: int) -> _Loci:
    """Region and sequence designs: each top feature's strongest case units are its loci."""
    top = units.top
    return _Loci(loci=biomarker_loci(top["feature"], top["direction"], adata=units.adata,
                                     case=design.case_label, control=design.control_label, n_loci=n_loci),
                 stats=units.stats)


def _cohort_loci(units: _UnitTests, windows: pd.DataFrame, design: CohortDesign, *,
                 variants: pd.DataFrame | None, sae: Encoder | None, store: ActivationStore | None,
                 n_loci: int) -> _Loci:
    """Cohorts: every feature tested at every locus across samples, the variants behind each locus
    and, with ``sae`` and ``store``, the base pair where cases and controls differ most."""
    case, control, alpha = design.case_label, design.control_label, units.alpha
    cond = windows["sample_id"].astype(str).map(units.adata.obs["condition"].astype(str))
    lp = locus_profiles(units.wa, None, windows.assign(condition=cond), feature_names=units.feature_names)
    names = None
    if "name" in windows.columns:
        first = windows.drop_duplicates("region_id")
        names = first.set_index(first["region_id"].astype(str))["name"]
    tests = test_loci(lp, case=case, control=control)
    if variants is None and "sequence" in windows.columns and (windows["sample_id"] == REFERENCE_SAMPLE).any():
        variants = locus_variants(windows.assign(condition=cond), case=case, control=control, alpha=alpha)
    if variants is not None and "q" in variants.columns:  # enrichment at this run's alpha
        variants = variants.assign(case_enriched=(variants["freq_diff"] > 0) & (variants["q"] <= alpha))
    labels = variant_labels(variants) if variants is not None else None
    top = units.top
    loci = biomarker_loci(top["feature"], top["direction"], loci=lp, locus_tests=tests, variants=labels,
                          case=case, control=control, n_loci=n_loci, region_names=names)
    if sae is not None and store is not None:
        peaks = locus_peaks(sae, store, windows.assign(condition=cond), loci[["feature", "region_id"]],
                            case=case, control=control)
        loci = add_peaks(loci, peaks, variants)
    n_sig = tests.assign(sig=tests["q"] <= alpha).groupby("feature")["sig"].sum().rename("n_sig_loci")
    return _Loci(loci=loci, stats=units.stats.merge(n_sig.reset_index(), on="feature", how="left"),
                 profiles=lp, tests=tests, variants=variants,
                 table=locus_summary(tests, lp.regions, alpha=alpha, names=names, variants=labels))


def _assemble(units: _UnitTests, loci: _Loci, design: Design, catalog: pd.DataFrame | None) -> BiomarkerRun:
    """The ranked biomarker table and the design summary of a run."""
    stats, alpha = loci.stats, units.alpha
    table = biomarker_table(stats, permutation=units.permutation, catalog=catalog, loci=loci.loci,
                            motif_q_max=units.motif_q_max)
    summary = {
        "design": design.name, "kind": design.kind, "unit": design.unit,
        "case_label": design.case_label, "control_label": design.control_label,
        "n_case": int(units.is_case.sum()), "n_control": int(units.is_ctrl.sum()),
        "n_features": int(units.adata.n_vars), "covariates_used": units.covariates,
        "covariates_skipped": units.skipped, "alpha": alpha,
        "n_significant": int((stats["q"] <= alpha).sum()),
        "n_significant_adjusted": int((stats["q_adjusted"] <= alpha).sum()),
    }
    if loci.tests is not None:
        summary["n_locus_tests"] = len(loci.tests)
        summary["n_significant_locus_tests"] = int((loci.tests["q"] <= alpha).sum())
        summary["n_loci_with_signal"] = int((loci.table["n_sig_features"] > 0).sum())
    adata = units.adata
    adata.uns["genosae"]["design_summary"] = {k: v for k, v in summary.items() if v is not None
                                              and not isinstance(v, list)}
    return BiomarkerRun(adata=adata, stats=stats, biomarkers=table, loci=loci.loci,
                        permutation=units.permutation, classifier=units.classifier.to_dict(),
                        baselines=units.baselines, design_summary=summary, locus_profiles=loci.profiles,
                        locus_tests=loci.tests, locus_table=loci.table, variants=loci.variants,
                        extra=units.kmer_tables)


def design_profiles(inputs: BiomarkerInputs) -> ad.AnnData:
    """Per-unit profiles of loaded inputs (``genosae profiles``): regions, or samples of a cohort."""
    return region_profiles(inputs.acts, inputs.tokens, inputs.windows, unit=inputs.design.unit,
                           obs=inputs.obs, catalog=inputs.catalog, sequences=inputs.sequences,
                           config=inputs.config, feature_names=inputs.feature_names)


def run_design(inputs: BiomarkerInputs, *, store: str | Path | None = None,
               sae: str | Path | None = None) -> BiomarkerRun:
    """The biomarker run of loaded inputs (``genosae biomarkers``).

    ``store`` (the design's activation store) adds the linear-probe baseline on mean embeddings;
    with ``sae`` too, cohort loci gain base-pair peaks.
    """
    from genosae.biomarkers.baselines import mean_embeddings

    emb = mean_embeddings(store, inputs.design.unit) if store else None
    sae_obj = store_obj = None
    if sae and store and isinstance(inputs.design, CohortDesign):
        from genosae.model.store import ActivationStore
        from genosae.sae.io import load_sae

        sae_obj, store_obj = load_sae(sae), ActivationStore(store)
    return run_biomarkers(inputs.acts, inputs.tokens, inputs.windows, design=inputs.design,
                          params=inputs.config["biomarkers"], feature_names=inputs.feature_names,
                          catalog=inputs.catalog, obs=inputs.obs, sequences=inputs.sequences,
                          embeddings=emb, variants=inputs.variants, sae=sae_obj, store=store_obj,
                          config=inputs.config, seed=inputs.config.get("seed", 0), motifs=inputs.motifs)


def write_run(run: BiomarkerRun, out_dir: str | Path) -> dict[str, Path]:
    """Write a run's files into ``out_dir`` (see docs/biomarkers.md for each file)."""
    out = Path(out_dir)
    paths = {
        "profiles": out / "profiles.h5ad", "biomarkers": out / "biomarkers.csv",
        "loci": out / "biomarker_loci.csv", "stats": out / "feature_stats.csv",
        "baselines": out / "baselines.csv", "calibration": out / "calibration.json",
        "classifier": out / "classifier.json", "summary": out / "design_summary.json",
    }
    write_profiles(run.adata, paths["profiles"])
    write_table(run.biomarkers, paths["biomarkers"])
    write_table(run.loci, paths["loci"])
    write_table(run.stats, paths["stats"])
    write_table(run.baselines, paths["baselines"])
    write_json(run.permutation.summary() if run.permutation else {}, paths["calibration"])
    write_json(run.classifier, paths["classifier"])
    write_json(run.design_summary, paths["summary"])
    if run.locus_profiles is not None:
        paths["locus_profiles"] = out / "locus_profiles.h5ad"
        write_profiles(run.locus_profiles.to_anndata(run.adata.obs), paths["locus_profiles"])
    if run.locus_tests is not None:
        alpha = float(run.design_summary.get("alpha", 0.05))
        paths["locus_tests"] = out / "locus_tests.csv.gz"
        paths["locus_summary"] = out / "locus_summary.csv"
        sig = run.locus_tests[run.locus_tests["q"] <= alpha].sort_values(["p", "feature"])
        write_table(sig, paths["locus_tests"])
        write_table(run.locus_table, paths["locus_summary"])
    if run.variants is not None:
        paths["variants"] = out / "locus_variants.csv"
        write_table(run.variants, paths["variants"])
    if run.known_motifs is not None:
        paths["known_motifs"] = out / "known_motifs.csv"
        paths["known_motif_biomarkers"] = out / "known_motif_biomarkers.csv"
        write_table(run.known_motifs, paths["known_motifs"])
        write_table(run.known_motif_biomarkers, paths["known_motif_biomarkers"])
    return paths
