"""The ``features`` step end to end: activations → alignment → motifs → catalogue → dashboards.

Outputs in ``out_dir`` (see docs/architecture.md, "Feature catalogue"): ``feature_catalog.csv``,
``feature_concepts.csv`` (rows with q ≤ fdr), ``alignment.parquet`` (every feature × concept),
``baseline_summary.csv``, ``motif_capture.csv`` (FIMO-site F1 per motif: SAE vs neurons vs random
directions), ``motif_names.csv`` (features named per motif, flags), ``feature_acts.h5ad``
(windows × features), ``logos/``, ``dashboards/index.html`` and
``features.json`` (parameters, counts, timings, the calibration/held-out ``split``, the
``n_candidates`` of each unit set, ``motif_naming`` with its null and ``motif_capture``).
Token-level activations are the SAE's code store (``genosae encode-codes``), read shard by shard:
every computation here streams whole-window batches, so memory does not grow with the atlas.
"""

from __future__ import annotations

import logging
import os
import resource
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genosae._io import atomic_path, write_json, write_table
from genosae.errors import InputError
from genosae.features.activations import (
    CodeSource,
    EncodedSource,
    FeatureSource,
    calibration_windows,
    neuron_units,
    random_units,
    store_mean,
)
from genosae.features.alignment import align_source, align_store, best_per_feature
from genosae.features.catalog import (
    baseline_summary,
    build_catalog,
    feature_statistics,
    match_saes,
    strand_alignment,
    write_feature_anndata,
)
from genosae.features.dashboards import write_dashboards
from genosae.features.motif_capture import MOTIF_CAPTURE_COLUMNS, motif_capture, motif_sites
from genosae.features.motifs import (
    CODON_CONCEPTS,
    NamingParams,
    background_composition,
    codon_counts,
    codon_preference,
    encode_sequences,
    logo_pngs,
    name_features,
    null_queries,
    pwm_from_sequences,
    queries_from_sites,
    site_sequences,
    top_sites,
)
from genosae.genome.concepts import ConceptIndex
from genosae.sae.codes import CodeStore, sae_fingerprint

__all__ = ["beats_control", "check_same_windows", "codon_table", "gc_lookup", "run_features", "sae_source", "token_gc"]

log = logging.getLogger(__name__)


def token_gc(tokens: pd.DataFrame, windows: pd.DataFrame, sequences: Sequence[str], *,
             half_width: int = 10) -> np.ndarray:
    """GC fraction of the ``2 * half_width + 1`` bases around each token (within its window)."""
    return gc_lookup(windows, sequences, half_width=half_width)(tokens)


def gc_lookup(windows: pd.DataFrame, sequences: Sequence[str], *, half_width: int = 10
              ) -> Callable[[pd.DataFrame], np.ndarray]:
    """:func:`token_gc` for any token table of ``windows``: the windows' GC is summed once (a prefix sum
    over every window's bases), each call is then a lookup."""
    enc = encode_sequences(list(sequences))
    lens = np.array([len(s) for s in enc], dtype=np.int64)
    base = np.concatenate([[0], np.cumsum(lens)])
    allc = np.concatenate(enc) if enc else np.zeros(0, np.uint8)
    cs = np.concatenate([[0], np.cumsum((allc == 1) | (allc == 2))])
    minus_w = windows["strand"].to_numpy() == "-" if "strand" in windows else np.zeros(len(windows), bool)
    start_w, end_w = windows["start"].to_numpy(np.int64), windows["end"].to_numpy(np.int64)

    def gc(tokens: pd.DataFrame) -> np.ndarray:
        w = tokens["window_index"].to_numpy(np.int64)
        off = np.where(minus_w[w], end_w[w] - tokens["bp_end"].to_numpy(np.int64),
                       tokens["bp_start"].to_numpy(np.int64) - start_w[w])
        off = np.clip(off, 0, np.maximum(lens[w] - 1, 0))
        lo = base[w] + np.maximum(off - half_width, 0)
        hi = base[w] + np.minimum(off + half_width + 1, lens[w])
        return np.divide(cs[hi] - cs[lo], hi - lo, out=np.zeros(len(w)), where=hi > lo)

    return gc


def _motif_names(
    source: FeatureSource,
    sites: pd.DataFrame,
    store: Any,
    windows: pd.DataFrame,
    seqs: Sequence[str],
    motifs: Sequence[Any] | None,
    naming: NamingParams,
    *,
    n_null: int,
    seed: int,
    mean: np.ndarray,
    batch_size: int,
    max_tokens: int | None,
    n_jobs: int,
) -> tuple[pd.DataFrame | None, dict[str, Any], dict[str, np.ndarray]]:
    """Null-controlled motif names of every feature (:func:`~genosae.features.motifs.name_features`)
    from its peak ``sites`` (:func:`~genosae.features.motifs.top_sites`, ≥ ``naming.n_sites`` per feature)."""
    background = background_composition(seqs)
    queries, stats, pwms = queries_from_sites(sites[sites["rank"] < naming.n_sites] if len(sites) else sites,
                                              source.feature_names, windows, seqs, background, naming)
    if not motifs:
        return None, {"background": background.round(4).tolist()}, pwms
    nulls = null_queries(source, windows, seqs, background, naming, n_pseudo=n_null, seed=seed + 101, store=store,
                         directions=random_units(store.d_model, n_null, seed + 202, mean),
                         batch_size=batch_size, max_tokens=max_tokens)
    names, summary = name_features(queries, stats, motifs, nulls, params=naming, seed=seed, n_jobs=n_jobs)
    summary["background"] = background.round(4).tolist()
    return names, summary, pwms


def codon_table(source: FeatureSource, concepts: pd.DataFrame, concept_names: Sequence[str], *,
                batch_size: int = 65_536) -> pd.DataFrame:
    """:func:`~genosae.features.motifs.codon_preference` of a feature source (streamed counts)."""
    if not all(c in concept_names for c in CODON_CONCEPTS):
        return pd.DataFrame()
    index = ConceptIndex(concepts, list(CODON_CONCEPTS))
    F = len(source.feature_names)
    per, n_fire = np.zeros((F, len(CODON_CONCEPTS)), np.int64), np.zeros(F, np.int64)
    for batch in source.iter_batches(batch_size):
        memb, _ = index.label(batch.tokens["chrom"].to_numpy(), batch.tokens["bp_start"].to_numpy(np.int64))
        a, b = codon_counts(batch.codes, memb)
        per += a
        n_fire += b
    return codon_preference(None, None, concept_names, feature_names=source.feature_names, counts=(per, n_fire))


def check_same_windows(store: Any, other: Any) -> None:
    """Refuse a second store (the control model's) that does not hold the same windows as ``store``."""
    a, b = store.windows, other.windows
    same = len(a) == len(b) and all(
        (a[c].to_numpy() == b[c].to_numpy()).all() for c in ("chrom", "start", "end", "strand") if c in a and c in b)
    if not same:
        raise InputError("the control model's store does not hold the atlas windows of the trained model's store; "
                         "embed the same windows table with `genosae embed --model <control>`", path=getattr(other, "path", None))


def beats_control(alignment: pd.DataFrame, control_best_f1: pd.Series, *, margin: float = 0.1) -> pd.DataFrame:
    """Add ``control_f1`` (the control model's best held-out F1 for the concept, chosen on calibration
    with the same rule) and keep ``captured`` only where ``f1 > control_f1 + margin``."""
    out = alignment.copy()
    out["control_f1"] = out["concept"].map(control_best_f1).astype(float)
    beaten = (out["f1"] > out["control_f1"] + margin) | out["control_f1"].isna()
    out["captured"] = out["captured"].astype(bool) & beaten
    return out


def _run_control(source: FeatureSource, alignment: pd.DataFrame, store: Any, out_dir: str | os.PathLike[str] | None,
                 *, seqs: Sequence[str] | None, motifs: Sequence[Any] | None, naming: NamingParams, n_null: int,
                 seed: int, fdr: float, min_f1: float, batch_size: int, max_tokens: int | None, n_jobs: int
                 ) -> dict[str, Any]:
    """The control model's SAE through the same concept rule and motif naming; its catalogue in ``out_dir``."""
    names, naming_summary = None, {}
    sites = top_sites(source, n_top=max(naming.n_sites, 3))
    if seqs is not None:
        mean = store_mean(store, max_tokens=max_tokens)
        names, naming_summary, _ = _motif_names(source, sites, store, store.windows, seqs, motifs, naming,
                                                n_null=n_null, seed=seed, mean=mean, batch_size=batch_size,
                                                max_tokens=max_tokens, n_jobs=n_jobs)
    catalog = build_catalog(feature_statistics(source), alignment, sites=sites, motif_names=names, fdr=fdr,
                            min_f1=min_f1, max_motif_share=naming.max_share)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_table(catalog.reset_index(), out / "feature_catalog.csv")
        with atomic_path(out / "alignment.parquet") as tmp:
            alignment.to_parquet(tmp, index=False)
    captured = catalog["captured"].astype(bool) if "captured" in catalog else pd.Series(dtype=bool)
    n_tokens = int(source.window_counts(len(store.windows)).sum())
    return {"n_features": len(source.feature_names), "n_tokens": n_tokens,
            "n_captured_features": int(captured.sum()),
            "captured_concepts": sorted(catalog.loc[captured, "best_concept"].dropna().astype(str).unique().tolist())
            if "best_concept" in catalog else [],
            "motif_naming": _naming_json(naming_summary, catalog),
            "catalog": str(Path(out_dir) / "feature_catalog.csv") if out_dir is not None else None}


def _motif_names_table(catalog: pd.DataFrame, capture: pd.DataFrame | None, max_share: float) -> pd.DataFrame:
    """Per motif: features named (Tomtom + null), labelled, raw best matches, share, flag, site capture."""
    n = max(len(catalog), 1)
    cols = {"n_named": "motif_name", "n_labelled": "motif_label", "n_best_match": "best_motif"}
    parts = []
    for k, c in cols.items():
        if c in catalog:
            v = catalog[c].dropna().astype(str)
            parts.append(v[v != ""].value_counts().rename(k))
    if not parts:
        return pd.DataFrame(columns=["motif", *cols, "named_share", "flagged"])
    table = pd.concat(parts, axis=1).fillna(0).astype(np.int64)
    for k in cols:
        if k not in table:
            table[k] = 0
    table["named_share"] = table["n_named"] / n
    table["flagged"] = table["named_share"] > max_share
    if capture is not None and len(capture):
        cap = capture.drop_duplicates("motif_name").set_index("motif_name")
        table = table.join(cap[["captured", "sae_f1", "sae_unit"]].rename(
            columns={"captured": "sites_captured", "sae_f1": "sites_f1", "sae_unit": "sites_feature"}), how="outer")
        table[list(cols)] = table[list(cols)].fillna(0).astype(np.int64)
        table["named_share"] = table["n_named"] / n
        table["flagged"] = table["named_share"] > max_share
    table.index.name = "motif"
    return table.sort_values(["n_named", "n_labelled", "n_best_match"], ascending=False, kind="mergesort").reset_index()


def _naming_json(summary: dict[str, Any], catalog: pd.DataFrame) -> dict[str, Any]:
    """``features.json["motif_naming"]``: names vs the null's expected false names, labels, flags."""
    out = dict(summary)
    if "motif_label_source" in catalog:
        src = catalog["motif_label_source"].fillna("").astype(str)
        out["n_labelled"] = int((src != "").sum())
        out["label_sources"] = {str(k): int(v) for k, v in src[src != ""].value_counts().items()}
    return out


def _capture_json(capture: pd.DataFrame | None, sets: list[str], min_f1: float) -> dict[str, Any]:
    """``features.json["motif_capture"]``: motifs scored and captured, per unit set its candidates and F1."""
    if capture is None or capture.empty:
        return {"n_motifs": 0, "n_captured": 0, "sets": sets}
    return {"n_motifs": len(capture), "n_captured": int(capture["captured"].sum()), "sets": sets,
            "n_units": {s: int(capture[f"{s}_n_units"].iloc[0]) for s in sets},
            "median_f1": {s: float(capture[f"{s}_f1"].median()) for s in sets},
            "min_f1": min_f1, "n_f1_above_min": {s: int((capture[f"{s}_f1"] >= min_f1).sum()) for s in sets}}


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
    holdout_chroms: Sequence[str] = (),
    baseline_tokens: int | None = None,
    n_random: int | None = None,
    max_tokens: int | None = None,
    batch_size: int = 4096,
    make_logos: bool = True,
    max_logos: int | None = 256,
    n_jobs: int = 1,
    progress: bool = True,
    config: dict | None = None,
    naming: NamingParams | None = None,
    n_null: int = 1000,
    capture_min_sites: int = 10,
    control_store: Any | None = None,
    control_sae: Any | None = None,
    control_out: str | os.PathLike[str] | None = None,
    control_margin: float = 0.1,
    codes: str | os.PathLike[str] | CodeStore | None = None,
    control_codes: str | os.PathLike[str] | CodeStore | None = None,
    source_batch: int = 65_536,
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
    holdout_chroms
        Held-out chromosomes (``atlas.holdout_chroms``): their windows are the held-out half on which
        every metric is reported, all other windows calibrate (thresholds, best feature per concept,
        best concept per feature). Without windows on both sides (or with no ``holdout_chroms``) a
        seeded random half of the windows calibrates; ``features.json`` records the rule (``split``).
    baseline_tokens
        No longer used: the neuron and random-direction baselines stream over every token of the
        store (the same tokens as the SAE). A value other than ``None`` warns.
    max_logos, n_jobs
        Logos drawn (the features with the best concept F1, then the most frequent) and the
        processes drawing them.
    naming, n_null
        Motif naming parameters (:class:`~genosae.features.motifs.NamingParams`, the
        ``features.motif_*`` config keys) and the pseudo-features of each null (random sites, random
        directions) run beside it.
    capture_min_sites
        Motif capture scores a motif with ≥ this many FIMO sites in each half (``motif_capture.csv``).
    control_store, control_sae, control_out
        The control model (the same architecture randomly initialised, :mod:`genosae.model.control`):
        its activation store of the *same* windows and the SAE trained on it. Its features are aligned,
        motif-captured and named with the same rules, side by side (``control`` columns of
        ``baseline_summary.csv`` and ``motif_capture.csv``, ``features.json["control"]``; its own
        catalogue in ``control_out``). A concept then counts as captured only when the feature's
        held-out F1 beats the control's best by more than ``control_margin``, and a motif only when the
        SAE beats the control (a null set of motif capture).
    codes
        The SAE's code store of ``store`` (``genosae encode-codes``, :mod:`genosae.sae.codes`): every
        pass reads it shard by shard. Without it the SAE encodes the store again on each pass.
        ``control_codes`` is the same for the control model's SAE and store.
    source_batch
        Tokens per streamed batch of the SAE's features (whole windows). Memory is one store shard
        plus one batch plus per-feature tables: it does not grow with the number of tokens.

    Returns
    -------
    ``{output name: path}``.
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    peak_rss: dict[str, float] = {}  # the process's high-water mark after each part: where memory peaks

    def tick(name: str, since: float) -> float:
        timings[name] = round(time.perf_counter() - since, 3)
        peak_rss[name] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        log.info("features: %s done in %.1fs (peak RSS so far %.0f MB)", name, timings[name], peak_rss[name])
        return time.perf_counter()

    if baseline_tokens is not None:
        warnings.warn("run_features(baseline_tokens=...) is no longer used: the baselines stream over every "
                      "token of the store", DeprecationWarning, stacklevel=2)
    t = time.perf_counter()
    windows = store.windows
    names = sorted(concepts["concept"].unique())
    params = dict(thresholds=tuple(thresholds), min_f1=min_f1, fdr=fdr)
    source = sae_source(store, sae, codes, max_tokens)
    n_per_window = source.window_counts(len(windows))
    present = n_per_window > 0
    if not present.any():
        raise InputError("the activation store holds no tokens; re-run `genosae embed`", path=getattr(store, "path", None))
    n_tokens = int(n_per_window.sum())
    cal_w, split_rule = calibration_windows(windows, holdout_chroms=holdout_chroms, seed=seed, present=present)
    if len(holdout_chroms) and split_rule == "random":
        log.warning("features: no scored windows on both sides of holdout_chroms %s; a seeded random half "
                    "of the windows calibrates instead", list(holdout_chroms))
    split = {"rule": split_rule, "holdout_chroms": [str(c) for c in holdout_chroms], "seed": seed,
             "n_calibration_windows": int((cal_w & present).sum()),
             "n_heldout_windows": int((~cal_w & present).sum())}
    seqs = window_sequences(windows) if window_sequences is not None else None
    stats = feature_statistics(source, gc_content=gc_lookup(windows, seqs) if seqs is not None else None,
                               batch_size=source_batch)
    t = tick("activations", t)
    alignment = align_source(source, concepts, concept_names=names, calibration_windows=cal_w,
                             batch_size=source_batch, **params)
    t = tick("alignment", t)

    # baselines: every token of the store (streamed, flat memory), the same split and selection rule
    mean = store_mean(store, max_tokens=max_tokens)
    units = {"neuron": neuron_units(store.d_model, mean),
             "random": random_units(store.d_model, n_random or len(source.feature_names), seed, mean)}
    base = align_store(store, units, concepts, concept_names=names, calibration_windows=cal_w,
                       batch_size=batch_size, max_tokens=max_tokens, **params)
    n_candidates = {"sae": len(source.feature_names), **{k: u.n_features for k, u in units.items()}}
    control_source = control_alignment = None
    if control_store is not None:
        if control_sae is None:
            raise ValueError("control_store needs control_sae (the SAE trained on the control model)")
        check_same_windows(store, control_store)
        control_source = sae_source(control_store, control_sae, control_codes, max_tokens)
        control_alignment = align_source(control_source, concepts, concept_names=names, calibration_windows=cal_w,
                                         batch_size=source_batch, **params)
        base = {"control": control_alignment, **base}
        n_candidates["control"] = len(control_source.feature_names)
    summary = baseline_summary({"sae": alignment, **base})
    if control_alignment is not None:
        alignment = beats_control(alignment, summary["best_control_f1"], margin=control_margin)
    t = tick("baselines", t)

    naming = naming or NamingParams()
    sites_all = top_sites(source, n_top=max(naming.n_sites, top_examples, 3), batch_size=source_batch)
    sites = sites_all[sites_all["rank"] < top_examples].reset_index(drop=True)  # the dashboards' examples
    site_codes = None
    motif_names = None
    naming_summary: dict[str, Any] = {}
    logos: dict[str, Path] = {}
    if seqs is not None:
        motif_names, naming_summary, pwms = _motif_names(
            source, sites_all, store, windows, seqs, motifs, naming, n_null=n_null, seed=seed, mean=mean,
            batch_size=batch_size, max_tokens=max_tokens, n_jobs=n_jobs)
        if len(sites):
            site_codes = site_sequences(sites, windows, seqs, flank=flank)
            f_of = sites["feature"].to_numpy()
            for f in np.unique(f_of):  # features with too few sites for an aligned PWM: top examples
                pwms.setdefault(source.feature_names[int(f)], pwm_from_sequences(site_codes[f_of == f]))
        if make_logos:
            # logomaker draws ~6 logos/s per core: draw the features most worth looking at first
            # (best held-out concept F1, then frequency); the others keep their PWM consensus
            best_f1 = alignment.groupby("feature")["f1"].max()
            freq = stats["n_active"]
            order = sorted(pwms, key=lambda n: (-best_f1.get(n, 0.0), -freq.get(n, 0)))
            chosen = order[:max_logos] if max_logos is not None else order
            logos = logo_pngs({n: pwms[n] for n in chosen}, out / "logos", n_jobs=n_jobs,
                              progress=progress)
    t = tick("motifs", t)

    # motif capture: FIMO sites of every motif vs SAE features, neurons and random directions
    msites = motif_sites(concepts)
    capture, site_f1 = None, None
    capture_sets = {"sae": source, **({"control": control_source} if control_source is not None else {}), **units}
    if len(msites):
        capture, site_f1 = motif_capture(capture_sets, msites, cal_w & present, ~cal_w & present,
                                         store=store, thresholds=thresholds, min_sites=capture_min_sites,
                                         min_f1=min_f1, batch_size=batch_size, max_tokens=max_tokens,
                                         null_sets=("random", "control"))
    t = tick("motif_capture", t)

    control_json: dict[str, Any] = {}
    if control_source is not None:
        control_json = _run_control(control_source, control_alignment, control_store, control_out, seqs=seqs,
                                    motifs=motifs, naming=naming, n_null=n_null, seed=seed, fdr=fdr,
                                    min_f1=min_f1, batch_size=batch_size, max_tokens=max_tokens, n_jobs=n_jobs)
        t = tick("control", t)

    codon = codon_table(source, concepts, names, batch_size=source_batch)
    best = best_per_feature(alignment, fdr=fdr)
    captured_concept = best["concept"].where(best["captured"])
    replicates = None
    if sae_replicate is not None:
        align_b = align_source(EncodedSource(sae_replicate, store, max_tokens=max_tokens), concepts,
                               concept_names=names, calibration_windows=cal_w, domains=False,
                               batch_size=source_batch, **params)
        best_b = best_per_feature(align_b, fdr=fdr)
        replicates = match_saes(sae, sae_replicate, best_concept_a=captured_concept,
                                best_concept_b=best_b["concept"].where(best_b["captured"]))
    strand = strand_alignment(source, windows, concepts, cal_w, names, best["concept"], thresholds=thresholds,
                              batch_size=source_batch)
    t = tick("replicates_strand", t)

    catalog = build_catalog(stats, alignment, sites=sites_all, motif_names=motif_names, motif_capture=capture,
                            motif_site_f1=site_f1, codon=codon, genes=genes, replicates=replicates,
                            strand=strand, fdr=fdr, min_f1=min_f1, max_motif_share=naming.max_share)
    paths = {
        "feature_catalog": out / "feature_catalog.csv",
        "feature_concepts": out / "feature_concepts.csv",
        "alignment": out / "alignment.parquet",
        "baseline_summary": out / "baseline_summary.csv",
        "feature_acts_h5ad": out / "feature_acts.h5ad",
        "dashboards": out / "dashboards" / "index.html",
        "summary": out / "features.json",
        "motif_names": out / "motif_names.csv",
        "motif_capture": out / "motif_capture.csv",
    }
    write_table(catalog.reset_index(), paths["feature_catalog"])
    write_table(alignment[alignment["q"] <= fdr].sort_values(["feature", "q"]), paths["feature_concepts"])
    with atomic_path(paths["alignment"]) as tmp:
        alignment.to_parquet(tmp, index=False)
    write_table(summary.reset_index(), paths["baseline_summary"])
    names_table = _motif_names_table(catalog, capture, naming.max_share)
    write_table(names_table, paths["motif_names"])
    write_table(capture if capture is not None else pd.DataFrame(columns=list(MOTIF_CAPTURE_COLUMNS)),
                paths["motif_capture"])
    write_feature_anndata(source, windows, catalog, paths["feature_acts_h5ad"],
                          uns={"config": config or {}, "thresholds": list(thresholds), "fdr": fdr})
    write_dashboards(catalog, alignment, source, out / "dashboards", sites=sites if site_codes is not None else None,
                     site_codes=site_codes, flank=flank, logos=logos)
    tick("write", t)
    timings["total"] = round(time.perf_counter() - t0, 3)
    write_json({"n_tokens": n_tokens, "n_features": len(source.feature_names), "n_concepts": len(names),
                "n_captured_features": int(catalog["captured"].sum()),
                "n_significant_pairs": int((alignment["q"] <= fdr).sum()),
                "thresholds": list(thresholds), "fdr": fdr, "min_f1": min_f1, "seed": seed,
                "split": split, "n_candidates": n_candidates,
                "codes": str(codes.path) if isinstance(codes, CodeStore) else (str(codes) if codes else None),
                "motif_naming": _naming_json(naming_summary, catalog),
                "motif_capture": _capture_json(capture, list(capture_sets), min_f1),
                "control": control_json,
                "timings_s": timings, "peak_rss_mb_after": peak_rss}, paths["summary"])
    return paths


def sae_source(store: Any, sae: Any, codes: Any, max_tokens: int | None) -> FeatureSource:
    """The SAE's features of ``store``: read from its code store when given (checked to be this SAE's
    codes of this store), else encoded on the fly."""
    if codes is None:
        return EncodedSource(sae, store, max_tokens=max_tokens)
    code_store = codes if isinstance(codes, CodeStore) else CodeStore(codes)
    want = sae_fingerprint(sae)
    if code_store.manifest.get("sae", {}).get("fingerprint") != want:
        raise InputError("the code store was encoded by another SAE; re-run `genosae encode-codes` with this SAE",
                         path=code_store.path)
    manifest = getattr(store, "manifest", None)
    if manifest is not None and code_store.manifest.get("source", {}).get("windows_hash") != manifest.get("windows_hash"):
        raise InputError("the code store was encoded from another activation store (windows differ); re-run "
                         "`genosae encode-codes --store` on this store", path=code_store.path)
    return CodeSource(code_store, max_tokens=max_tokens)
