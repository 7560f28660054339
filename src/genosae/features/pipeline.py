"""The ``features`` step end to end: activations → alignment → motifs → catalogue → dashboards.

Outputs in ``out_dir`` (see docs/architecture.md, "Feature catalogue"): ``feature_catalog.csv``,
``feature_concepts.csv`` (rows with q ≤ fdr), ``alignment.parquet`` (every feature × concept),
``baseline_summary.csv``, ``feature_acts.h5ad``, ``feature_acts/`` (sparse token activations),
``logos/``, ``dashboards/index.html`` and ``features.json`` (parameters, counts, timings).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genosae._io import atomic_path, write_json, write_table
from genosae.features.activations import (
    FeatureActs,
    feature_activations,
    neuron_activations,
    random_direction_activations,
    window_split,
)
from genosae.features.alignment import align_concepts, best_per_feature, token_concepts
from genosae.features.catalog import (
    baseline_summary,
    build_catalog,
    match_saes,
    strand_alignment,
    write_feature_anndata,
)
from genosae.features.dashboards import write_dashboards
from genosae.features.motifs import (
    codon_preference,
    encode_sequences,
    logo_pngs,
    match_motifs,
    pwm_from_sequences,
    site_sequences,
    top_sites,
)

__all__ = ["run_features", "token_gc"]

log = logging.getLogger(__name__)


def token_gc(tokens: pd.DataFrame, windows: pd.DataFrame, sequences: Sequence[str], *,
             half_width: int = 10) -> np.ndarray:
    """GC fraction of the ``2 * half_width + 1`` bases around each token (within its window)."""
    enc = encode_sequences(list(sequences))
    lens = np.array([len(s) for s in enc], dtype=np.int64)
    base = np.concatenate([[0], np.cumsum(lens)])
    allc = np.concatenate(enc) if enc else np.zeros(0, np.uint8)
    cs = np.concatenate([[0], np.cumsum((allc == 1) | (allc == 2))])
    w = tokens["window_index"].to_numpy(np.int64)
    minus = windows["strand"].to_numpy()[w] == "-" if "strand" in windows else np.zeros(len(w), bool)
    off = np.where(minus, windows["end"].to_numpy(np.int64)[w] - tokens["bp_end"].to_numpy(np.int64),
                   tokens["bp_start"].to_numpy(np.int64) - windows["start"].to_numpy(np.int64)[w])
    off = np.clip(off, 0, np.maximum(lens[w] - 1, 0))
    lo = base[w] + np.maximum(off - half_width, 0)
    hi = base[w] + np.minimum(off + half_width + 1, lens[w])
    return np.divide(cs[hi] - cs[lo], hi - lo, out=np.zeros(len(w)), where=hi > lo)


def _align(acts: FeatureActs, concepts: pd.DataFrame, names: list[str], cal_w: np.ndarray,
           params: dict[str, Any]) -> tuple[pd.DataFrame, Any, Any, np.ndarray]:
    memb, inst, _ = token_concepts(acts.tokens, concepts, names)
    cal = cal_w[acts.tokens["window_index"].to_numpy()]
    a = align_concepts(acts.codes, memb, inst, calibration_mask=cal, concept_names=names,
                       feature_names=acts.feature_names, **params)
    return a, memb, inst, cal


def run_features(
    store: Any,
    sae: Any,
    out_dir: str | os.PathLike[str],
    *,
    concepts: pd.DataFrame,
    motifs: Sequence[Any] | None = None,
    window_sequences: Callable[[pd.DataFrame], Sequence[str]] | None = None,
    sae_replicate: Any | None = None,
    genes: pd.DataFrame | None = None,
    thresholds: Sequence[float] = (0.0, 0.15, 0.5, 0.6, 0.8),
    min_f1: float = 0.5,
    fdr: float = 0.05,
    top_examples: int = 10,
    flank: int = 10,
    seed: int = 0,
    baseline_tokens: int | None = 200_000,
    n_random: int | None = None,
    max_tokens: int | None = None,
    batch_size: int = 4096,
    make_logos: bool = True,
    max_logos: int | None = 256,
    n_jobs: int = 1,
    progress: bool = True,
    config: dict | None = None,
) -> dict[str, Path]:
    """Run the features step and write its outputs into ``out_dir``.

    Parameters
    ----------
    store, sae
        Activation store and SAE (``encode``, ``W_dec``); ``sae_replicate`` a second seed's SAE.
    concepts
        Concepts table (``chrom, start, end, strand, concept, name``).
    motifs
        Motifs (``id, name, pwm [L, 4]``) matched to each feature's logo with TOMTOM.
    window_sequences
        Callable giving the sequences of a windows table (needed for logos, motifs and GC).
    thresholds, min_f1, fdr, top_examples
        The ``features`` config section.
    baseline_tokens
        Neuron/random-direction baselines (and the SAE row of the summary) use the first this many
        tokens of the store (the dense baselines would not fit otherwise); ``None`` = all.
    max_logos, n_jobs
        Logos drawn (the features with the best concept F1, then the most frequent) and the
        processes drawing them.

    Returns
    -------
    ``{output name: path}``.
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    def tick(name: str, since: float) -> float:
        timings[name] = round(time.perf_counter() - since, 3)
        log.info("features: %s done in %.1fs", name, timings[name])
        return time.perf_counter()

    windows = store.windows
    names = sorted(concepts["concept"].unique())
    params = dict(thresholds=tuple(thresholds), min_f1=min_f1, fdr=fdr)
    cal_w = window_split(len(windows), seed=seed)

    t = time.perf_counter()
    acts = feature_activations(sae, store, batch_size=batch_size, max_tokens=max_tokens)
    acts.meta.update({"calibration_seed": seed})
    t = tick("activations", t)
    alignment, memb, _inst, cal = _align(acts, concepts, names, cal_w, params)
    t = tick("alignment", t)

    # baselines on the first `baseline_tokens` tokens, SAE rescored on the same tokens
    n_base = acts.n_tokens if baseline_tokens is None else min(baseline_tokens, acts.n_tokens)
    base_sets = {"sae": acts.subset_tokens(np.arange(acts.n_tokens) < n_base),
                 "neuron": neuron_activations(store, batch_size=batch_size, max_tokens=n_base),
                 "random": random_direction_activations(store, n_random or acts.n_features, seed,
                                                        batch_size=batch_size, max_tokens=n_base)}
    summary = baseline_summary({k: _align(v, concepts, names, cal_w, params)[0] for k, v in base_sets.items()})
    summary.insert(0, "baseline_tokens", n_base)
    t = tick("baselines", t)

    seqs = window_sequences(windows) if window_sequences is not None else None
    sites = top_sites(acts, n_top=top_examples)
    site_codes = None
    motif_df = None
    logos: dict[str, Path] = {}
    gc = None
    if seqs is not None and len(sites):
        site_codes = site_sequences(sites, windows, seqs, flank=flank)
        f_of = sites["feature"].to_numpy()
        pwms = {acts.feature_names[int(f)]: pwm_from_sequences(site_codes[f_of == f]) for f in np.unique(f_of)}
        if motifs:
            motif_df = match_motifs(pwms, motifs)
        if make_logos:
            # logomaker draws ~6 logos/s per core: draw the features most worth looking at first
            # (best held-out concept F1, then frequency); the others keep their PWM consensus
            best_f1 = alignment.groupby("feature")["f1"].max()
            freq = pd.Series(np.asarray((acts.codes > 0).sum(axis=0)).ravel(), index=acts.feature_names)
            order = sorted(pwms, key=lambda n: (-best_f1.get(n, 0.0), -freq.get(n, 0)))
            chosen = order[:max_logos] if max_logos is not None else order
            logos = logo_pngs({n: pwms[n] for n in chosen}, out / "logos", n_jobs=n_jobs,
                              progress=progress)
        gc = token_gc(acts.tokens, windows, seqs)
    t = tick("motifs", t)

    codon = codon_preference(acts.codes, memb, names, feature_names=acts.feature_names)
    best = best_per_feature(alignment, fdr=fdr)
    captured_concept = best["concept"].where(best["captured"])
    replicates = None
    if sae_replicate is not None:
        acts_b = feature_activations(sae_replicate, store, batch_size=batch_size, max_tokens=max_tokens)
        align_b = align_concepts(acts_b.codes, memb, None, calibration_mask=cal, concept_names=names,
                                 feature_names=acts_b.feature_names, **params)
        best_b = best_per_feature(align_b, fdr=fdr)
        replicates = match_saes(sae, sae_replicate, best_concept_a=captured_concept,
                                best_concept_b=best_b["concept"].where(best_b["captured"]))
    strand = strand_alignment(acts.codes, memb, acts.tokens, cal, names, best["concept"],
                              feature_names=acts.feature_names, thresholds=thresholds)
    t = tick("replicates_strand", t)

    catalog = build_catalog(acts, alignment, motif_matches=motif_df, codon=codon, gc_content=gc, genes=genes,
                            replicates=replicates, strand=strand, fdr=fdr)
    paths = {
        "feature_catalog": out / "feature_catalog.csv",
        "feature_concepts": out / "feature_concepts.csv",
        "alignment": out / "alignment.parquet",
        "baseline_summary": out / "baseline_summary.csv",
        "feature_acts_h5ad": out / "feature_acts.h5ad",
        "feature_acts": out / "feature_acts",
        "dashboards": out / "dashboards" / "index.html",
        "summary": out / "features.json",
    }
    write_table(catalog.reset_index(), paths["feature_catalog"])
    write_table(alignment[alignment["q"] <= fdr].sort_values(["feature", "q"]), paths["feature_concepts"])
    with atomic_path(paths["alignment"]) as tmp:
        alignment.to_parquet(tmp, index=False)
    write_table(summary.reset_index(), paths["baseline_summary"])
    acts.save(paths["feature_acts"])
    write_feature_anndata(acts, windows, catalog, paths["feature_acts_h5ad"],
                          uns={"config": config or {}, "thresholds": list(thresholds), "fdr": fdr})
    write_dashboards(catalog, alignment, acts, out / "dashboards", sites=sites if site_codes is not None else None,
                     site_codes=site_codes, flank=flank, logos=logos)
    tick("write", t)
    timings["total"] = round(time.perf_counter() - t0, 3)
    write_json({"n_tokens": acts.n_tokens, "n_features": acts.n_features, "n_concepts": len(names),
                "n_captured_features": int(catalog["captured"].sum()),
                "n_significant_pairs": int((alignment["q"] <= fdr).sum()),
                "thresholds": list(thresholds), "fdr": fdr, "min_f1": min_f1, "seed": seed,
                "timings_s": timings}, paths["summary"])
    return paths
