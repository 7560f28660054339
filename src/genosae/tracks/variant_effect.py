"""Score variants by SAE features and by the language model itself (``genosae variant-effect``).

Every VCF record and ALT allele (SNVs, MNVs, small indels; symbolic ``<...>``, ``*`` and breakend
alleles are skipped with a warning) is scored on a window of the reference around it,
``[pos - flank, pos + len(REF) + flank)`` clipped to the chromosome, against the same window with the
allele applied (:func:`genosae.genome.variants.apply_edits`, the cohort code's haplotype logic).
Both sequences are read on both strands; each base takes the activation of the token covering it.

Per SAE feature and strand:

- ``ref_max`` / ``alt_max``: the feature's largest activation over the window's bases.
- ``peak_pos`` / ``peak_delta``: the reference base (1-based) where ``alt - ref`` per base is largest
  in magnitude. Each alternative base is compared with the reference base it stands for
  (:func:`~genosae.genome.variants.haplotype_positions`: positions after an indel are exact);
  inserted bases, which have no reference base, and deleted reference bases count in the maxima but
  not in the per-base comparison (the delta tracks have no value there).
- ``effect = peak_delta / scale`` (or ``(alt_max - ref_max) / scale`` where that is larger in
  magnitude, i.e. the change sits on inserted bases), with ``scale`` the feature's largest activation
  in the catalogue (``max_activation``, over the run's atlas), else the largest seen over every scored
  window: "the feature now fires at 0.8 of its maximum where it did not". A feature already firing
  elsewhere in the window still shows a new site, which a change of the window maximum would hide.
  The feature's ``effect`` is that of the strand with the larger magnitude.

Features are ranked per variant by ``|effect|`` (ties: lower index). *Named* features are those the
catalogue labels (label not empty or ``unassigned``).

The model-only score ``llr`` is the log-likelihood ratio of alternative vs reference in nats, the mean
of the two strands (:meth:`~genosae.model.adapter.ModelAdapter.sequence_log_likelihood`): for a
masked LM the pseudo-log-likelihood of the tokens overlapping the allele (its REF bases on the
reference, its ALT bases on the haplotype) widened by ``llr_flank`` bp each side, which for an SNV on a
one-token-per-base model and ``llr_flank = 0`` is the masked-marginal ``log p(alt) - log p(ref)`` with
the same context (GPN's score); for a causal LM the log-likelihood of the whole alternative window
minus that of the reference window. Models without an LM head give ``NaN``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from genosae._io import atomic_path, write_json, write_table
from genosae.errors import InputError
from genosae.genome.variants import apply_edits, haplotype_positions
from genosae.tracks.annotate import (
    UNNAMED_LABELS,
    feature_run_paths,
    open_feature_run,
    per_base_codes,
    select_features,
)
from genosae.tracks.writers import TrackSpec, TrackWriter, write_igv_session, write_trackdb

log = logging.getLogger(__name__)

__all__ = ["EFFECT_COLUMNS", "TOP_COLUMNS", "VARIANT_COLUMNS", "VariantScores", "effect_tables",
           "score_variants", "variant_alleles", "variant_effect"]

#: Columns of ``variant_effects.csv`` (one row per variant allele).
VARIANT_COLUMNS = ("variant_id", "chrom", "pos", "id", "ref", "alt", "kind", "window_start", "window_end",
                   "llr", "llr_method", "n_features_changed", "top_feature", "top_label", "top_effect",
                   "top_named_feature", "top_named_label", "top_named_effect")
#: Columns of ``top_features.csv`` (the ``top`` features of every variant, ranked).
TOP_COLUMNS = ("variant_id", "rank", "feature", "label", "named", "effect", "effect_plus", "effect_minus",
               "ref_max_plus", "alt_max_plus", "ref_max_minus", "alt_max_minus", "peak_pos", "peak_delta",
               "peak_strand")
#: Columns of ``feature_effects.parquet`` (every feature of every variant).
EFFECT_COLUMNS = ("variant_id", "feature", "effect", "effect_plus", "effect_minus", "ref_max_plus",
                  "alt_max_plus", "ref_max_minus", "alt_max_minus", "peak_pos", "peak_delta", "peak_strand")
#: |effect| at or above which a feature counts in ``n_features_changed``.
CHANGED = 0.1


def _kind(ref: str, alt: str) -> str:
    if len(ref) == len(alt):
        return "snv" if len(ref) == 1 else "mnv"
    if alt.startswith(ref) or ref.startswith(alt):
        return "insertion" if len(alt) > len(ref) else "deletion"
    return "complex"


def variant_alleles(records: pd.DataFrame) -> pd.DataFrame:
    """One row per scorable ALT allele of :class:`~genosae.genome.variants.VcfData` records:
    ``variant_id`` (``chrom:POS:REF>ALT``), ``chrom``, ``pos0`` (0-based), ``pos`` (VCF, 1-based),
    ``id``, ``ref``, ``alt``, ``kind``, ``line``. Symbolic, ``*`` and breakend alleles are left out
    (a warning counts them)."""
    rows, skipped = [], 0
    for chrom, pos, ref, alts, vid, line in records[["chrom", "pos", "ref", "alts", "id", "line"]].itertuples(
            index=False, name=None):
        for alt in alts:
            if not alt or alt in {"*", "."} or alt.startswith("<") or "[" in alt or "]" in alt \
                    or set(alt) - set("ACGTN"):
                skipped += 1
                continue
            rows.append((f"{chrom}:{int(pos) + 1}:{ref}>{alt}", chrom, int(pos), int(pos) + 1, vid, ref, alt,
                         _kind(ref, alt), int(line)))
    if skipped:
        log.warning("skipped %d symbolic, '*' or breakend ALT allele(s): only sequence alleles can be scored",
                    skipped)
    out = pd.DataFrame(rows, columns=["variant_id", "chrom", "pos0", "pos", "id", "ref", "alt", "kind", "line"])
    return out.drop_duplicates("variant_id").reset_index(drop=True)


@dataclass
class VariantScores:
    """What :func:`score_variants` computed.

    Attributes
    ----------
    variants
        The alleles with ``window_start``, ``window_end`` (0-based) and ``llr``.
    ref_max, alt_max
        ``float32 [n_variants, 2, d_sae]`` window maxima, strands ``+`` then ``-``.
    peak_pos, peak_delta
        ``[n_variants, 2, d_sae]``: 0-based reference base of the largest per-base ``|alt - ref|``
        (``-1`` where no base is compared) and that signed difference.
    tracks
        ``feature index -> strand -> list of (chrom, start, per-base delta)`` for the ``track``
        features (``NaN`` where a base has no counterpart).
    """

    variants: pd.DataFrame
    ref_max: np.ndarray
    alt_max: np.ndarray
    peak_pos: np.ndarray
    peak_delta: np.ndarray
    tracks: dict[int, dict[str, list[tuple[str, int, np.ndarray]]]]


def _per_base_codes(adapter: Any, encode: Callable[[np.ndarray], np.ndarray], seqs: Sequence[str],
                    rc: bool) -> list[np.ndarray]:
    """``codes [len(seq), d_sae]`` per sequence (:func:`~genosae.tracks.annotate.per_base_codes`, split)."""
    codes, _ = per_base_codes(adapter, encode, seqs, reverse_complement=rc)
    return np.split(codes, np.cumsum([len(s) for s in seqs])[:-1])


def score_variants(
    adapter: Any,
    encode: Callable[[np.ndarray], np.ndarray],
    reference: Any,
    alleles: pd.DataFrame,
    *,
    flank: int = 256,
    llr_flank: int = 0,
    track: Sequence[int] = (),
    llr: bool = True,
    batch_size: int = 8,
    progress: bool = True,
) -> VariantScores:
    """Feature maxima, per-base peaks and LLRs of every allele (see the module docstring).

    Parameters
    ----------
    adapter
        A :class:`~genosae.model.adapter.ModelAdapter`.
    encode
        ``acts [N, d_model] -> codes [N, d_sae]`` (:func:`genosae.features.activations.numpy_encoder`).
    reference
        A :class:`~genosae.genome.reference.Reference`.
    alleles
        From :func:`variant_alleles`.
    track
        Feature indices whose per-base deltas are kept for tracks.
    llr
        Also score the LM's log-likelihood ratio (``NaN`` without).
    """
    if flank < 0 or llr_flank < 0:
        raise InputError(f"flank and llr_flank must be >= 0, got {flank} and {llr_flank}", record="--flank")
    n = len(alleles)
    track = [int(t) for t in track]
    d_sae: int | None = None
    ref_max = alt_max = peak_pos = peak_delta = np.zeros((0, 2, 0))
    tracks: dict[int, dict[str, list[tuple[str, int, np.ndarray]]]] = {t: {"+": [], "-": []} for t in track}
    w_start, w_end, llrs = np.zeros(n, np.int64), np.zeros(n, np.int64), np.full(n, np.nan)
    t0 = time.perf_counter()
    with tqdm(total=n, unit="variant", disable=not progress, desc="variant-effect") as bar:
        for b0 in range(0, n, batch_size):
            chunk = alleles.iloc[b0:b0 + batch_size]
            refs, alts, maps, edits = [], [], [], []
            for k, (chrom, pos, r, a) in enumerate(chunk[["chrom", "pos0", "ref", "alt"]].itertuples(
                    index=False, name=None)):
                s = max(0, pos - flank)
                e = min(int(reference.chrom_sizes[chrom]), pos + len(r) + flank)
                ref_seq = reference.fetch(chrom, s, e).upper()
                alt_seq, applied = apply_edits(ref_seq, s, [(pos, r, a)])
                pos_alt, inserted = haplotype_positions(s, e, applied)
                refs.append(ref_seq)
                alts.append(alt_seq)
                maps.append((pos_alt - s, inserted))
                edits.append((pos, r, a))
                w_start[b0 + k], w_end[b0 + k] = s, e
            for si, rc in enumerate((False, True)):
                ref_codes = _per_base_codes(adapter, encode, refs, rc)
                alt_codes = _per_base_codes(adapter, encode, alts, rc)
                if d_sae is None:
                    d_sae = ref_codes[0].shape[1]
                    ref_max = np.zeros((n, 2, d_sae), np.float32)
                    alt_max = np.zeros((n, 2, d_sae), np.float32)
                    peak_pos = np.full((n, 2, d_sae), -1, np.int64)
                    peak_delta = np.zeros((n, 2, d_sae), np.float32)
                for k in range(len(chunk)):
                    i = b0 + k
                    rc_, ac_ = ref_codes[k], alt_codes[k]
                    ref_max[i, si], alt_max[i, si] = rc_.max(0), ac_.max(0)
                    local, inserted = maps[k]
                    keep = ~inserted
                    diff = np.full(rc_.shape, np.nan, np.float32)
                    diff[local[keep]] = ac_[keep] - rc_[local[keep]]
                    mag = np.where(np.isnan(diff), -1.0, np.abs(diff))
                    at = mag.argmax(0)
                    compared = mag.max(0) >= 0
                    peak_pos[i, si] = np.where(compared, w_start[i] + at, -1)
                    peak_delta[i, si] = np.where(compared, diff[at, np.arange(d_sae)], 0.0)
                    for t in track:
                        tracks[t]["+-"[si]].append((chunk["chrom"].iat[k], int(w_start[i]), diff[:, t].copy()))
            if llr and adapter.kind != "base":
                spans_ref = [(p - s, p - s + len(r)) for (p, r, _), s in zip(edits, w_start[b0:b0 + len(chunk)])]
                spans_alt = [(p - s, p - s + len(a)) for (p, _, a), s in zip(edits, w_start[b0:b0 + len(chunk)])]
                if llr_flank:
                    spans_ref = [(max(0, x - llr_flank), min(len(q), y + llr_flank))
                                 for (x, y), q in zip(spans_ref, refs)]
                    spans_alt = [(max(0, x - llr_flank), min(len(q), y + llr_flank))
                                 for (x, y), q in zip(spans_alt, alts)]
                use = adapter.kind == "mlm"
                per_strand = [adapter.sequence_log_likelihood(alts, spans=spans_alt if use else None,
                                                              reverse_complement=rc)
                              - adapter.sequence_log_likelihood(refs, spans=spans_ref if use else None,
                                                                reverse_complement=rc)
                              for rc in (False, True)]
                llrs[b0:b0 + len(chunk)] = np.mean(per_strand, axis=0)
            bar.update(len(chunk))
    log.info("scored %d variant alleles on both strands in %.1f s", n, time.perf_counter() - t0)
    out = alleles.assign(window_start=w_start, window_end=w_end, llr=llrs)
    return VariantScores(out, ref_max, alt_max, peak_pos, peak_delta, tracks)


def _llr_method(kind: str, llr_flank: int) -> str:
    if kind == "mlm":
        return f"masked_pll_allele±{llr_flank}bp"
    return "causal_window_loglik" if kind == "causal" else "none"


def effect_tables(scores: VariantScores, labels: pd.Series, scale: np.ndarray | None, *, top: int = 5
                  ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``(variant_effects, top_features, feature_effects)`` from :func:`score_variants`' output.

    ``labels`` is the catalogue label of every feature (index ``f0`` ...); ``scale`` the per-feature
    normaliser (``None``: the largest activation over every scored window).
    """
    v = scores.variants
    n, _, d_sae = scores.ref_max.shape
    if scale is None or not np.isfinite(scale).all():
        seen = np.maximum(scores.ref_max.max(axis=(0, 1)), scores.alt_max.max(axis=(0, 1))) if n else np.ones(d_sae)
        scale = seen if scale is None else np.where(np.isfinite(scale), scale, seen)
    scale = np.where(scale > 0, scale, 1.0)
    dmax = scores.alt_max - scores.ref_max  # [n, 2, d_sae]
    # the per-base peak, unless the window maxima moved more (an inserted base, compared with no base)
    eff_s = np.where(np.abs(dmax) > np.abs(scores.peak_delta), dmax, scores.peak_delta) / scale
    strand_pick = (np.abs(eff_s[:, 1]) > np.abs(eff_s[:, 0])).astype(np.int64)  # ties -> '+'
    effect = np.take_along_axis(eff_s, strand_pick[:, None, :], 1)[:, 0]
    mag_peak = np.abs(scores.peak_delta)
    peak_strand = (mag_peak[:, 1] > mag_peak[:, 0]).astype(np.int64)
    ppos = np.take_along_axis(scores.peak_pos, peak_strand[:, None, :], 1)[:, 0]
    pdelta = np.take_along_axis(scores.peak_delta, peak_strand[:, None, :], 1)[:, 0]
    names = np.array([f"f{i}" for i in range(d_sae)], dtype=object)
    lab = labels.reindex(names).fillna("").astype(str).to_numpy(object)
    named = np.array([x.strip().lower() not in UNNAMED_LABELS for x in lab])
    order = np.argsort(-np.abs(effect), axis=1, kind="stable")  # ties: lower index first

    def cols(i: np.ndarray, f: np.ndarray) -> dict[str, Any]:
        return {"feature": names[f], "effect": effect[i, f], "effect_plus": eff_s[i, 0, f],
                "effect_minus": eff_s[i, 1, f], "ref_max_plus": scores.ref_max[i, 0, f],
                "alt_max_plus": scores.alt_max[i, 0, f], "ref_max_minus": scores.ref_max[i, 1, f],
                "alt_max_minus": scores.alt_max[i, 1, f],
                "peak_pos": np.where(ppos[i, f] >= 0, ppos[i, f] + 1, -1), "peak_delta": pdelta[i, f],
                "peak_strand": np.array(["+", "-"], dtype=object)[peak_strand[i, f]]}

    k = min(top, d_sae)
    vi = np.repeat(np.arange(n), k)
    fi = order[:, :k].reshape(-1)
    top_df = pd.DataFrame({"variant_id": v["variant_id"].to_numpy(object)[vi], "rank": np.tile(np.arange(1, k + 1), n),
                           **cols(vi, fi), "label": lab[fi], "named": named[fi]})
    vi_all = np.repeat(np.arange(n), d_sae)
    fi_all = np.tile(np.arange(d_sae), n)
    all_df = pd.DataFrame({"variant_id": v["variant_id"].to_numpy(object)[vi_all], **cols(vi_all, fi_all)})
    first = order[:, 0] if n else np.zeros(0, np.int64)
    named_rank = np.where(named[order], np.arange(d_sae)[None, :], d_sae).argmin(1) if n else np.zeros(0, np.int64)
    first_named = order[np.arange(n), named_rank] if n else np.zeros(0, np.int64)
    has_named = named.any()
    variants = pd.DataFrame({
        "variant_id": v["variant_id"], "chrom": v["chrom"], "pos": v["pos"], "id": v["id"], "ref": v["ref"],
        "alt": v["alt"], "kind": v["kind"], "window_start": v["window_start"], "window_end": v["window_end"],
        "llr": v["llr"], "n_features_changed": (np.abs(effect) >= CHANGED).sum(1),
        "top_feature": names[first], "top_label": lab[first], "top_effect": effect[np.arange(n), first],
        "top_named_feature": names[first_named] if has_named else "",
        "top_named_label": lab[first_named] if has_named else "",
        "top_named_effect": effect[np.arange(n), first_named] if has_named else np.nan,
    })
    return variants, top_df[list(TOP_COLUMNS)], all_df[list(EFFECT_COLUMNS)]


def _write_delta_tracks(scores: VariantScores, folder: Path, track: Sequence[int], labels: pd.Series,
                        chrom_sizes: dict[str, int]) -> list[tuple[TrackSpec, Path]]:
    """One bigWig + bedGraph per tracked feature and strand; overlapping variant windows are cut at
    the midpoint between the variants (each base shows the nearest variant's delta); alleles at one
    position: the first."""
    order = {c: i for i, c in enumerate(chrom_sizes)}
    v = scores.variants
    keys = np.array([(order[c], p) for c, p in zip(v["chrom"], v["pos0"])], dtype=np.int64).reshape(-1, 2)
    sort = np.lexsort((np.arange(len(v)), keys[:, 1], keys[:, 0])) if len(v) else np.zeros(0, np.int64)
    ks = keys[sort]
    # for each sorted variant, the position of the next variant at another site on its chromosome
    nxt_pos = np.full(len(sort), -1, np.int64)
    for j in range(len(sort) - 2, -1, -1):
        if ks[j + 1, 0] != ks[j, 0]:
            continue
        nxt_pos[j] = ks[j + 1, 1] if ks[j + 1, 1] != ks[j, 1] else nxt_pos[j + 1]
    out = []
    folder.mkdir(parents=True, exist_ok=True)
    for t in track:
        for strand in "+-":
            spec = TrackSpec(f"f{t}.delta", strand, str(labels.get(f"f{t}", "")))
            stretches = scores.tracks[t][strand]
            with TrackWriter(folder, spec, chrom_sizes) as w:
                last_chrom, last_pos, last_end = None, -1, 0
                for j, i in enumerate(sort):
                    chrom, start, vals = stretches[i]
                    pos = int(v["pos0"].iat[i])
                    if chrom == last_chrom and pos == last_pos:
                        continue  # another allele at the same site
                    lo = start if chrom != last_chrom else max(start, last_end)
                    hi = start + len(vals)
                    if nxt_pos[j] >= 0:
                        hi = min(hi, (pos + int(nxt_pos[j])) // 2 + 1)
                    seg = vals[lo - start:hi - start]
                    ok = np.isfinite(seg)
                    edges = np.flatnonzero(np.diff(np.r_[0, ok.astype(np.int8), 0]))
                    for a, b in zip(edges[::2], edges[1::2]):
                        w.add(chrom, lo + int(a), seg[a:b])
                    last_chrom, last_pos, last_end = chrom, pos, max(hi, lo)
            out.append((spec, w.bw_path))
    return out


def variant_effect(
    config: dict | str | os.PathLike[str],
    *,
    vcf: str | os.PathLike[str],
    outdir: str | os.PathLike[str],
    model: str | os.PathLike[str] | None = None,
    sae: str | os.PathLike[str] | None = None,
    catalog: str | os.PathLike[str] | None = None,
    flank: int = 256,
    llr_flank: int = 0,
    top: int = 5,
    track_features: Sequence[str] | str | None = None,
    n_track: int = 10,
    device: str | None = None,
    batch_size: int = 8,
    progress: bool = True,
) -> dict[str, Path]:
    """Score a VCF's variants with the config's model, SAE and catalogue (see the module docstring).

    Parameters
    ----------
    config
        Config dict or YAML path: ``model``, ``outdir`` (SAE ``<outdir>/sae/seed0``, catalogue
        ``<outdir>/features/feature_catalog.csv``, prepared reference) and ``reference``.
    vcf
        VCF/BCF on that reference (REF alleles are checked against it).
    flank, llr_flank
        Bases each side of the allele in the window, and in the masked-LM likelihood.
    top
        Ranked features per variant in ``top_features.csv`` (and ``variant_effects.csv``'s top columns).
    track_features, n_track
        Features with delta tracks (``"f12,f80"``), by default the ``n_track`` features with the
        largest ``|effect|`` over all variants.

    Returns
    -------
    dict
        Paths: ``variants`` (``variant_effects.csv``, :data:`VARIANT_COLUMNS`), ``top``
        (``top_features.csv``, :data:`TOP_COLUMNS`), ``effects`` (``feature_effects.parquet``,
        :data:`EFFECT_COLUMNS`), ``tracks`` (``<feature>.delta.<plus|minus>.bw``/``.bedGraph``),
        ``igv_session``, ``trackdb`` and ``params`` (``variant_effect.json``).
    """
    from genosae.config import load_config, validate_config
    from genosae.features.activations import numpy_encoder
    from genosae.genome.reference import Reference, reference_files
    from genosae.genome.variants import read_vcf

    cfg = validate_config(config) if isinstance(config, dict) else load_config(config, check_files=False)
    out = Path(outdir)
    run_paths = feature_run_paths(cfg, sae=sae, catalog=catalog)
    fa_ref, gff = reference_files(cfg, reference_dir=Path(cfg["outdir"]) / "reference", build=True)
    gff = gff if gff is not None and gff.is_file() else None
    if fa_ref is None:
        raise InputError("the config names no reference FASTA", record="reference.fasta")
    reference = Reference.open(fa_ref, cfg["reference"].get("chrom_aliases") or {})
    alleles = variant_alleles(read_vcf(vcf, reference).records)
    if alleles.empty:
        raise InputError("the VCF has no sequence alleles to score", path=vcf)
    run = open_feature_run(cfg, run_paths, model=model, device=device)
    encode = numpy_encoder(run.sae, str(run.adapter.device))
    labels = run.labels
    chosen = [int(f[1:]) for f in select_features(run.catalog, run.sae.d_sae, features=track_features)] \
        if track_features is not None else None
    if chosen is None:  # first pass decides which features get tracks
        first = score_variants(run.adapter, encode, reference, alleles, flank=flank, llr=False,
                               batch_size=batch_size, progress=progress)
    scale = (run.catalog["max_activation"].reindex(labels.index).to_numpy(np.float64)
             if run.catalog is not None and "max_activation" in run.catalog else None)
    if chosen is None:
        _, _, all_first = effect_tables(first, labels, scale, top=top)
        best = all_first.assign(m=all_first["effect"].abs()).groupby("feature", sort=False)["m"].max()
        best = best[best > 0].sort_values(ascending=False, kind="stable")
        chosen = [int(f[1:]) for f in best.index[:n_track]]
    scores = score_variants(run.adapter, encode, reference, alleles, flank=flank, llr_flank=llr_flank,
                            track=chosen, batch_size=batch_size, progress=progress)
    variants, top_df, all_df = effect_tables(scores, labels, scale, top=top)
    variants.insert(variants.columns.get_loc("llr") + 1, "llr_method", _llr_method(run.adapter.kind, llr_flank))
    variants = variants[list(VARIANT_COLUMNS)]
    out.mkdir(parents=True, exist_ok=True)
    paths = {"variants": out / "variant_effects.csv", "top": out / "top_features.csv",
             "effects": out / "feature_effects.parquet", "tracks": out / "tracks",
             "igv_session": out / "igv_session.xml", "trackdb": out / "trackDb.txt",
             "params": out / "variant_effect.json"}
    write_table(variants, paths["variants"], float_format="%.6g")
    write_table(top_df, paths["top"], float_format="%.6g")
    with atomic_path(paths["effects"]) as tmp:
        all_df.to_parquet(tmp, index=False)
    chrom_sizes = dict(reference.chrom_sizes)
    with atomic_path(paths["tracks"], is_dir=True) as tmp:
        tracks = _write_delta_tracks(scores, Path(tmp), chosen, labels, chrom_sizes)
    tracks = [(spec, paths["tracks"] / p.name) for spec, p in tracks]
    first_v = variants.iloc[0]
    extra = [("variants", Path(vcf).resolve())] + ([("annotation", Path(gff).resolve())] if gff else [])
    write_igv_session(paths["igv_session"], genome=Path(fa_ref).resolve(), tracks=tracks, extra=extra,
                      locus=f"{first_v['chrom']}:{int(first_v['window_start']) + 1}-{int(first_v['window_end'])}")
    write_trackdb(paths["trackdb"], tracks)
    write_json({"vcf": str(Path(vcf).resolve()), "model": run.adapter.source, "layer": run.adapter.layer,
                "sae": {"path": str(run.sae_path), "d_sae": run.sae.d_sae}, "catalog": str(run.catalog_path)
                if run.catalog is not None else None, "flank": flank, "llr_flank": llr_flank,
                "llr_method": _llr_method(run.adapter.kind, llr_flank), "top": top,
                "scale": "catalogue max_activation" if scale is not None else "max over the scored windows",
                "changed_threshold": CHANGED, "track_features": [f"f{t}" for t in chosen],
                "n_variants": len(variants)}, paths["params"])
    log.info("scored %d variant alleles -> %s", len(variants), out)
    return paths
