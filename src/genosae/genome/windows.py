"""Windows: fixed-size slices of regions, genome-wide atlas samples and per-sample cohort windows.

Windows table (docs/architecture.md): ``window_id, chrom, start, end, strand, region_id`` plus
``group``/``sample_id``/``haplotype``/``condition``/``sequence`` when relevant; 0-based half-open.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from genosae.errors import InputError
from genosae.genome.reference import Reference

WINDOW_COLUMNS = ["window_id", "chrom", "start", "end", "strand", "region_id"]
REFERENCE_SAMPLE = "__reference__"


def make_windows(regions: pd.DataFrame, *, size: int, stride: int,
                 chrom_sizes: Mapping[str, int] | None = None) -> pd.DataFrame:
    """Tile each region with windows of ``size`` every ``stride`` bp.

    A region longer than ``size`` gets windows at ``start, start + stride, ...`` plus, when the tiling
    stops short, one final window ending exactly at the region end. A shorter region gets one window
    centred on it, shifted to stay inside the chromosome when ``chrom_sizes`` is given. Extra columns
    of ``regions`` (``group``, ``gene``, ...) are carried to each of its windows.
    """
    if size < 1 or stride < 1:
        raise InputError(f"window size and stride must be positive (got {size}, {stride})",
                         record="windows")
    r = regions.reset_index(drop=True)
    if "region_id" not in r:
        r = r.assign(region_id=r["chrom"].astype(str) + ":" + r["start"].astype(str) + "-" +
                     r["end"].astype(str))
    if "strand" not in r:
        r = r.assign(strand="+")
    s, e = r["start"].to_numpy(np.int64), r["end"].to_numpy(np.int64)
    length = e - s
    n_tiles = np.where(length > size, (length - size) // stride + 1, 1)
    last_end = s + (n_tiles - 1) * stride + size
    extra = (length > size) & (last_end < e)
    counts = n_tiles + extra
    rep = np.repeat(np.arange(len(r)), counts)
    k = np.arange(rep.size) - np.repeat(np.cumsum(counts) - counts, counts)
    starts = s[rep] + k * stride
    is_extra = extra[rep] & (k == counts[rep] - 1)
    starts = np.where(is_extra, e[rep] - size, starts)
    short = length[rep] <= size
    centred = s[rep] + (length[rep] - size) // 2
    starts = np.where(short, centred, starts)
    if chrom_sizes is not None:
        csize = r["chrom"].map(chrom_sizes).to_numpy()[rep].astype(np.int64)
        starts = np.clip(starts, 0, np.maximum(csize - size, 0))
        ends = np.minimum(starts + size, csize)
    else:
        starts = np.maximum(starts, 0)
        ends = starts + size
    out = r.iloc[rep].reset_index(drop=True).drop(columns=["start", "end"])
    out["start"], out["end"] = starts, ends
    out["window_id"] = out["region_id"].astype(str) + ":w" + k.astype(str)
    rest = [c for c in out.columns if c not in WINDOW_COLUMNS]
    return out[WINDOW_COLUMNS + rest]


def atlas_windows(chrom_sizes: Mapping[str, int], *, n_windows: int | str, size: int,
                  exclude_chroms: Sequence[str] = (), seed: int = 0) -> pd.DataFrame:
    """A random, non-overlapping, genome-wide sample of ``n_windows`` windows, sorted by position
    (``n_windows="all"``: every slot, i.e. the whole genome tiled from each chromosome's offset).

    Stratified by chromosome: each chromosome is cut into ``size`` slots on a grid with a random
    offset and gets its share of ``n_windows`` in proportion to its number of slots (largest
    remainder: ``floor`` or ``ceil`` of ``n_windows × slots / total``), drawn uniformly without
    replacement among its slots. Every chromosome whose share is at least one is therefore sampled,
    whatever the seed (a plain uniform draw over all slots leaves small chromosomes out by chance).
    """
    rng = np.random.default_rng(seed)
    chroms = [c for c in chrom_sizes if c not in set(exclude_chroms)]
    unknown = set(exclude_chroms) - set(chrom_sizes)
    if unknown:
        raise InputError(f"excluded chromosome(s) {sorted(unknown)} not in the reference",
                         record="atlas.holdout_chroms")
    offsets = np.array([rng.integers(0, max(1, min(size, chrom_sizes[c] - size + 1))) for c in chroms],
                       dtype=np.int64)
    n_slots = np.array([max(0, (chrom_sizes[c] - o) // size) for c, o in zip(chroms, offsets)], dtype=np.int64)
    total = int(n_slots.sum())
    if n_windows == "all":
        n_windows = total
    if not isinstance(n_windows, (int, np.integer)) or isinstance(n_windows, bool):
        raise InputError(f"atlas.n_windows must be a number of windows or 'all', got {n_windows!r}",
                         record="atlas.n_windows")
    if n_windows > total:
        raise InputError(f"asked for {n_windows} windows of {size} bp but the genome holds only {total}",
                         record="atlas.n_windows")
    quota = n_windows * n_slots / max(total, 1)
    take = np.floor(quota).astype(np.int64)
    left = n_windows - int(take.sum())
    if left:  # largest remainders first; ties in chromosome order
        frac = np.where(take < n_slots, quota - take, -1.0)
        take[np.argsort(-frac, kind="stable")[:left]] += 1
    ci = np.repeat(np.arange(len(chroms)), take)
    slot = np.concatenate([np.sort(rng.choice(n, size=k, replace=False)) for n, k in zip(n_slots, take)]
                          ) if len(chroms) else np.zeros(0, np.int64)
    chrom = np.array(chroms, dtype=object)[ci]
    start = offsets[ci] + slot.astype(np.int64) * size
    out = pd.DataFrame({"chrom": chrom, "start": start.astype(np.int64),
                        "end": (start + size).astype(np.int64), "strand": "+", "region_id": "atlas"})
    out.insert(0, "window_id", "atlas:" + out["chrom"] + ":" + out["start"].astype(str) + "-" +
               out["end"].astype(str))
    return out


def window_sequences(windows: pd.DataFrame, reference: Reference) -> list[str]:
    """Sequences of the windows: the ``sequence`` column where set, else the reference slice
    (reverse-complemented on ``-``)."""
    has = windows["sequence"].notna().to_numpy() if "sequence" in windows else np.zeros(len(windows), bool)
    out: list[str] = []
    for (chrom, s, e, strand), given, seq in zip(
            windows[["chrom", "start", "end", "strand"]].itertuples(index=False, name=None), has,
            windows["sequence"] if "sequence" in windows else [None] * len(windows)):
        if given and isinstance(seq, str) and seq:
            out.append(seq)
        else:
            out.append(reference.fetch(chrom, int(s), int(e), "-" if strand == "-" else "+"))
    return out


def cohort_windows(reference: Reference, samples: pd.DataFrame, regions: pd.DataFrame, size: int,
                   stride: int) -> pd.DataFrame:
    """Per-sample windows over ``regions`` plus the reference windows once (``sample_id`` =
    ``__reference__``, for per-locus deltas), ordered window by window (all haplotypes of a
    reference window together, the reference first, then samples in sheet order).

    ``samples`` comes from :func:`genosae.genome.designs.read_samples`: a ``vcf`` column gives two
    haplotypes per sample (SNVs and small indels applied, listed in ``edits`` so that embedding maps
    every token to its exact reference base); a ``fasta`` column names a per-sample genome in
    reference coordinates (one haplotype, ``0``, mapped base to base).
    """
    from genosae.genome.variants import read_vcf, sample_haplotype_sequences

    ref_w = make_windows(regions, size=size, stride=stride, chrom_sizes=reference.chrom_sizes)
    base = ref_w.copy()
    base["sample_id"], base["haplotype"], base["condition"] = REFERENCE_SAMPLE, 0, ""
    base["sequence"] = window_sequences(ref_w, reference)
    base["edits"] = ""
    frames = [base]
    cov_cols = [c for c in samples.columns if c not in {"sample_id", "condition", "vcf", "fasta"}]
    vcf_cache: dict[str, object] = {}
    for row in samples.itertuples(index=False):
        rec = row._asdict()
        vcf = rec.get("vcf")
        if isinstance(vcf, str) and vcf:
            if vcf not in vcf_cache:
                vcf_cache[vcf] = read_vcf(vcf, reference)
            hap = sample_haplotype_sequences(reference, vcf_cache[vcf], rec["sample_id"],
                                             ref_w.rename(columns={"region_id": "_rid"})
                                             .assign(region_id=ref_w["window_id"]))
            w = ref_w.set_index("window_id").loc[hap["region_id"]].reset_index()
            w["haplotype"], w["sequence"] = hap["haplotype"].to_numpy(), hap["sequence"].to_numpy()
            w["edits"] = hap["edits"].to_numpy()
        else:
            genome = Reference.open(rec["fasta"])
            missing = set(ref_w["chrom"]) - set(genome.chrom_sizes)
            if missing:
                raise InputError(f"sample FASTA lacks chromosome(s) {sorted(missing)} of the regions",
                                 path=rec["fasta"], record=f"sample {rec['sample_id']}")
            w = ref_w.copy()
            w["haplotype"], w["sequence"], w["edits"] = 0, window_sequences(ref_w, genome), ""
        w["sample_id"], w["condition"] = rec["sample_id"], rec["condition"]
        for c in cov_cols:
            w[c] = rec[c]
        frames.append(w)
    out = pd.concat(frames, ignore_index=True)
    # locus-major order: a locus's haplotypes are adjacent, so identical ones share an embedding
    # shard and are computed once (genosae.model.embed)
    order = pd.Index(ref_w["window_id"]).get_indexer(out["window_id"])
    out = out.iloc[np.argsort(order, kind="stable")].reset_index(drop=True)
    out["window_id"] = (out["window_id"] + "|" + out["sample_id"].astype(str) + "|h" +
                        out["haplotype"].astype(str))
    return out


def sequence_windows(seqs: pd.DataFrame, *, size: int, stride: int) -> pd.DataFrame:
    """Tile the sequences of a sequence design; each window keeps its substring in ``sequence``.

    ``seqs`` is :func:`~genosae.genome.designs.read_sequence_design`'s table; records named
    ``chrom:start-end`` keep reference coordinates, the others are their own chromosome.
    """
    lengths = seqs["sequence"].str.len()
    regions = pd.DataFrame({"region_id": seqs["region_id"], "chrom": seqs["region_id"], "start": 0,
                            "end": lengths, "strand": "+", "group": seqs["group"]})
    w = make_windows(regions, size=size, stride=stride,
                     chrom_sizes=dict(zip(seqs["region_id"], lengths)))
    full = dict(zip(seqs["region_id"], seqs["sequence"]))
    w["sequence"] = [full[r][s:e] for r, s, e in zip(w["region_id"], w["start"], w["end"])]
    known = seqs.set_index("region_id")
    off = known.loc[w["region_id"], "start"].to_numpy()
    has = pd.notna(off)
    if has.any():
        chrom = known.loc[w["region_id"], "chrom"].to_numpy()
        base = np.where(has, off, 0).astype(np.int64)
        w.loc[has, "chrom"] = chrom[has]
        w["start"] = np.where(has, w["start"] + base, w["start"])
        w["end"] = np.where(has, w["end"] + base, w["end"])
    return w


def read_chrom_sizes(path: str | Path) -> dict[str, int]:
    """``chrom_sizes.tsv`` (``chrom<TAB>length``, no header, as ``prepare-reference`` writes it)."""
    sizes = pd.read_csv(path, sep="\t", header=None, names=["chrom", "length"], dtype={"chrom": str})
    return dict(zip(sizes["chrom"], sizes["length"].astype(int)))


def config_atlas_windows(config: Mapping, reference_dir: str | Path) -> pd.DataFrame:
    """The atlas windows of a config (``atlas``, ``windows.size``) on a prepared reference folder,
    with ``split`` = ``holdout`` on ``atlas.holdout_chroms`` and ``train`` elsewhere."""
    a = config["atlas"]
    windows = atlas_windows(read_chrom_sizes(Path(reference_dir) / "chrom_sizes.tsv"),
                            n_windows=a["n_windows"], size=config["windows"]["size"], seed=a["seed"])
    windows["split"] = np.where(windows["chrom"].isin(a["holdout_chroms"]), "holdout", "train")
    return windows
