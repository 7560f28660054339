"""Simulate a case/control cohort with a planted motif in case promoters (ground truth for recovery).

Outputs in ``out_dir``:

``samples.tsv``
    ``sample_id, condition, vcf`` (or ``fasta``), ``age``: one row per sample. Paths are written as
    ``out_dir/...`` exactly as ``out_dir`` was given (relative to the working directory of the run).
``vcf/<sample>.vcf``
    VCF 4.2, one sample column, phased diploid genotypes (planted SNVs ``1|1``, background SNVs
    heterozygous or homozygous), sorted in FASTA chromosome order; INFO ``PLANTED`` flags planted SNVs.
``fasta/<sample>.fa`` (FASTA mode)
    One record per region and haplotype, ``>region_id|h1``, promoter sequence on the + strand with the
    sample's variants applied.
``regions.bed``
    BED6 (no header) of every promoter: ``chrom, start, end, region_id, 0, strand``; the planted ones
    and about twice as many others.
``truth.tsv``
    One row per planted locus: ``region_id, gene_id, name, chrom, start, end, strand, motif, motif_id,
    motif_start, motif_end, n_snvs, carriers`` (comma-separated case sample ids).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from genosae._io import atomic_path, write_table
from genosae.errors import InputError
from genosae.genome.genes import promoters
from genosae.genome.reference import reverse_complement
from genosae.genome.windows import REFERENCE_SAMPLE

log = logging.getLogger(__name__)

DEFAULT_MOTIF = "TTACCCG"  # REB1 core
Mode = Literal["vcf", "fasta"]


def resolve_motif(motif: str | np.ndarray, *, tax_group: str = "fungi") -> tuple[str, str]:
    """Consensus sequence and id of a motif: an ACGT string, a PWM ``[L, 4]`` or a JASPAR name.

    Names are looked up in JASPAR (pyjaspar's bundled database, ``CORE``, ``tax_group``; the newest
    version of the matrix). A name that is not there raises :class:`~genosae.errors.InputError`
    naming it, the closest names and how to list them all (no silent default motif).
    """
    if isinstance(motif, np.ndarray):
        pwm = np.asarray(motif, dtype=float)
        if pwm.ndim != 2 or pwm.shape[1] != 4:
            raise InputError(f"PWM must be [L, 4], got {pwm.shape}", record="simulate.motif")
        return "".join("ACGT"[i] for i in pwm.argmax(axis=1)), "pwm"
    text = str(motif).strip()
    if text and set(text.upper()) <= set("ACGT"):
        return text.upper(), "consensus"
    try:
        from pyjaspar import jaspardb
    except ImportError as err:
        msg = (f"motif {text!r} is a name, and JASPAR names need pyjaspar ({err}); install it "
               "(`pip install pyjaspar`) or give an ACGT consensus")
        raise InputError(msg, record="simulate.motif") from err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Biopython's "Zero motifs returned" for an unknown name
        found = jaspardb().fetch_motifs_by_name(text)
    hits = [m for m in found if str(getattr(m, "tax_group", tax_group)).lower() == tax_group.lower()]
    if hits:
        m = sorted(hits, key=lambda m: m.matrix_id)[-1]
        return str(m.consensus).upper(), f"{m.matrix_id} {m.name}"
    import difflib

    from genosae.genome.motifs import load_jaspar

    names = sorted({m.name for m in load_jaspar(tax_group=tax_group)})
    upper = {n.upper(): n for n in names}
    close = [upper[c] for c in difflib.get_close_matches(text.upper(), list(upper), n=5, cutoff=0.6)]
    hint = f" Closest: {', '.join(close)}." if close else ""
    msg = (f"motif {text!r} is not a JASPAR CORE {tax_group} motif name (nor an ACGT consensus)."
           f"{hint} List the {len(names)} names with: python -c \"from genosae.genome.motifs import "
           f"load_jaspar; print(sorted({{m.name for m in load_jaspar(tax_group='{tax_group}')}}))\"")
    raise InputError(msg, record="simulate.motif")


@dataclass
class SimulatedCohort:
    """Paths and tables written by :func:`simulate_cohort`."""

    out_dir: Path
    samples: pd.DataFrame
    regions: pd.DataFrame
    truth: pd.DataFrame
    variants: pd.DataFrame
    motif: str


def candidate_promoters(annotation: pd.DataFrame, chrom_sizes: dict[str, int],
                        upstream: int = 500) -> pd.DataFrame:
    """Full-length, non-overlapping promoters ``[TSS - upstream, TSS)`` of coding genes.

    The promoters of :func:`genosae.genome.genes.promoters` (the TSS rule of the concept masks and
    the region designs) on the chromosomes of ``chrom_sizes``, keeping those not cut by a
    chromosome end and overlapping no other. Columns ``chrom, start, end, strand, gene_id, name``.
    """
    ann = annotation[annotation["chrom"].isin(list(chrom_sizes))]
    prom = promoters(ann, upstream=upstream, downstream=0, chrom_sizes=chrom_sizes)
    prom = prom[prom["end"] - prom["start"] == upstream]
    prom = prom.rename(columns={"region_id": "gene_id", "gene": "name"}).astype({"gene_id": str, "name": str})
    prom = prom[["chrom", "start", "end", "strand", "gene_id", "name"]]
    prom = prom.drop_duplicates("gene_id").sort_values(["chrom", "start"]).reset_index(drop=True)
    prev_end = prom.groupby("chrom")["end"].shift(1).fillna(-1).to_numpy()
    next_start = prom.groupby("chrom")["start"].shift(-1).fillna(np.inf).to_numpy()
    alone = (prom["start"].to_numpy() >= prev_end) & (prom["end"].to_numpy() <= next_start)
    return prom[alone].reset_index(drop=True)


def simulate_design(config: dict, design: str, out_dir: str | Path, *, fasta: str | Path | None = None,
                    annotation: str | Path | None = None, reference_dir: str | Path | None = None,
                    mode: Mode = "vcf") -> SimulatedCohort:
    """:func:`simulate_cohort` with the ``simulate`` section of the cohort design ``design``.

    The reference is :func:`genosae.genome.reference.reference_files` of ``fasta``,
    ``annotation``, ``reference_dir`` and the config; promoters are ``concepts.promoter_upstream``
    long and the seed is the config's.
    """
    from genosae.genome.designs import CohortDesign, design_from_config
    from genosae.genome.reference import reference_files

    d = design_from_config(config, design)
    sim = d.simulate if isinstance(d, CohortDesign) else None
    if not sim:
        raise InputError(f"design has no 'simulate' section (a {d.kind} design)", record=d.key("simulate"))
    fa, ann = reference_files(config, fasta=fasta, annotation=annotation, reference_dir=reference_dir).require()
    return simulate_cohort(
        fa, ann, out_dir, n_cases=sim["n_cases"], n_controls=sim["n_controls"], n_genes=sim["n_genes"],
        motif=sim["motif"], fraction_cases=sim["fraction_cases"],
        background_snv_rate=sim["background_snv_rate"], seed=config.get("seed", 0),
        promoter_upstream=config["concepts"]["promoter_upstream"], mode=mode,
        case_label=d.case_label, control_label=d.control_label)


def _gt(rng: np.random.Generator, n: int, ploidy: int) -> np.ndarray:
    if ploidy == 1:
        return np.full(n, "1", dtype=object)
    return rng.choice(np.array(["0|1", "1|0", "1|1"], dtype=object), size=n, p=[0.4, 0.4, 0.2])


def simulate_cohort(
    fasta: str | Path,
    annotation: str | Path,
    out_dir: str | Path,
    *,
    n_cases: int = 12,
    n_controls: int = 12,
    n_genes: int = 30,
    motif: str | np.ndarray = "REB1",
    fraction_cases: float = 0.8,
    background_snv_rate: float = 0.001,
    seed: int = 0,
    promoter_upstream: int = 500,
    motif_offset: int = 100,
    regions_per_gene: int = 3,
    ploidy: int = 2,
    mode: Mode = "vcf",
    case_label: str = "case",
    control_label: str = "control",
    chroms: list[str] | None = None,
) -> SimulatedCohort:
    """Write a simulated cohort: per-sample VCFs (or FASTAs), samples.tsv, regions.bed, truth.tsv.

    ``n_genes`` promoters are planted: in ``round(fraction_cases * n_cases)`` case samples (the
    carriers) SNVs turn the promoter sequence ending ``motif_offset`` bp upstream of the TSS into the
    motif (read on the gene's strand). Every sample also gets background SNVs at
    ``background_snv_rate`` per base over all regions (never on a carrier's planted bases).
    ``chroms`` restricts the promoters to some chromosomes.
    """
    from genosae.genome.annotation import read_annotation
    from genosae.genome.reference import Reference

    if mode not in ("vcf", "fasta"):
        raise InputError(f"mode must be 'vcf' or 'fasta', got {mode!r}", record="mode")
    if ploidy not in (1, 2):
        raise InputError("ploidy must be 1 or 2", record="ploidy")
    rng = np.random.default_rng(seed)
    ref = Reference.open(fasta)
    ann = read_annotation(annotation, ref)
    sizes = {c: s for c, s in ref.chrom_sizes.items() if chroms is None or c in chroms}
    seq_motif, motif_id = resolve_motif(motif)
    L = len(seq_motif)
    if motif_offset + L > promoter_upstream:
        raise InputError(f"motif ({L} bp) at offset {motif_offset} does not fit a "
                         f"{promoter_upstream} bp promoter", record="simulate.motif_offset")
    prom = candidate_promoters(ann, sizes, promoter_upstream)
    n_regions = n_genes * regions_per_gene
    if len(prom) < n_regions:
        raise InputError(f"only {len(prom)} usable promoters (full-length, non-overlapping, of genes with "
                         f"CDS rows) for {n_regions} regions; lower n_genes", path=annotation)
    chrom_order = {c: i for i, c in enumerate(ref.chrom_sizes)}
    chosen = prom.iloc[np.sort(rng.choice(len(prom), n_regions, replace=False))]
    chosen = chosen.sort_values(["chrom", "start"], key=lambda c: c.map(chrom_order) if c.name == "chrom"
                                else c).reset_index(drop=True)
    chosen["sequence"] = [ref.fetch(r.chrom, int(r.start), int(r.end)) for r in chosen.itertuples()]
    ok = ~chosen["sequence"].str.upper().str.contains("N")
    chosen = chosen[ok].reset_index(drop=True)
    chosen["region_id"] = chosen["gene_id"]
    planted_idx = rng.choice(len(chosen), min(n_genes, len(chosen)), replace=False)
    chosen["planted"] = False
    chosen.loc[planted_idx, "planted"] = True

    samples = pd.DataFrame({
        "sample_id": [f"case_{i + 1:02d}" for i in range(n_cases)]
        + [f"control_{i + 1:02d}" for i in range(n_controls)],
        "condition": [case_label] * n_cases + [control_label] * n_controls,
    })
    samples["age"] = np.round(rng.normal(50, 10, len(samples)), 1)
    n_carriers = round(fraction_cases * n_cases)
    carriers = np.sort(rng.choice(n_cases, n_carriers, replace=False))
    carrier_ids = samples["sample_id"].to_numpy()[carriers]

    # planted SNVs: the motif in gene orientation, ending motif_offset bp before the TSS
    truth_rows, planted = [], []
    for r in chosen[chosen["planted"]].itertuples():
        if r.strand == "+":
            m_end = int(r.end) - motif_offset
            m_start, site = m_end - L, seq_motif
        else:
            m_start = int(r.start) + motif_offset
            m_end, site = m_start + L, reverse_complement(seq_motif)
        ref_site = r.sequence[m_start - int(r.start):m_end - int(r.start)].upper()
        diff = [i for i in range(L) if ref_site[i] != site[i]]
        for i in diff:
            planted.append((r.chrom, m_start + i, ref_site[i], site[i], r.region_id))
        truth_rows.append({
            "region_id": r.region_id, "gene_id": r.gene_id, "name": r.name, "chrom": r.chrom,
            "start": int(r.start), "end": int(r.end), "strand": r.strand, "motif": seq_motif,
            "motif_id": motif_id, "motif_start": m_start, "motif_end": m_end, "n_snvs": len(diff),
            "carriers": ",".join(carrier_ids),
        })
    truth = pd.DataFrame(truth_rows)
    planted_df = pd.DataFrame(planted, columns=["chrom", "pos0", "ref", "alt", "region_id"])

    # background SNVs: per sample, Binomial count per region at uniform positions
    total_bp = (chosen["end"] - chosen["start"]).to_numpy()
    var_rows = []
    planted_keys = set(zip(planted_df["chrom"], planted_df["pos0"]))
    for sid in samples["sample_id"]:  # loop over samples × regions, not bases
        is_carrier = sid in set(carrier_ids)
        counts = rng.binomial(total_bp, background_snv_rate)
        for r_i in np.flatnonzero(counts):
            r = chosen.iloc[r_i]
            offs = np.unique(rng.choice(int(total_bp[r_i]), counts[r_i], replace=False))
            for o in offs:
                pos0 = int(r.start) + int(o)
                if is_carrier and (r.chrom, pos0) in planted_keys:
                    continue
                ref_b = r.sequence[o].upper()
                alt_b = rng.choice([b for b in "ACGT" if b != ref_b])
                var_rows.append((sid, r.chrom, pos0, ref_b, alt_b, False, r.region_id))
        if is_carrier:
            for v in planted_df.itertuples():
                var_rows.append((sid, v.chrom, int(v.pos0), v.ref, v.alt, True, v.region_id))
    variants = pd.DataFrame(var_rows, columns=["sample_id", "chrom", "pos0", "ref", "alt",
                                               "planted", "region_id"])
    variants["gt"] = np.where(variants["planted"], "1" if ploidy == 1 else "1|1",
                              _gt(rng, len(variants), ploidy))
    variants = variants.sort_values(["sample_id", "chrom", "pos0"],
                                    key=lambda c: c.map(chrom_order) if c.name == "chrom" else c)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    col = "vcf" if mode == "vcf" else "fasta"
    paths = []
    for sid in samples["sample_id"]:
        sv = variants[variants["sample_id"] == sid]
        if mode == "vcf":
            path = out / "vcf" / f"{sid}.vcf"
            _write_vcf(path, sid, sv, ref.chrom_sizes, str(fasta))
        else:
            path = out / "fasta" / f"{sid}.fa"
            _write_sample_fasta(path, chosen, sv, ploidy)
        paths.append(str(path))
    samples[col] = paths
    samples = samples[["sample_id", "condition", col, "age"]]
    regions = chosen[["chrom", "start", "end", "region_id", "strand", "gene_id", "name", "planted"]]
    write_table(samples, out / "samples.tsv")
    bed = regions.assign(score=0)[["chrom", "start", "end", "region_id", "score", "strand"]]
    with atomic_path(out / "regions.bed") as tmp:
        bed.to_csv(tmp, sep="\t", header=False, index=False)
    write_table(truth, out / "truth.tsv")
    return SimulatedCohort(out_dir=out, samples=samples, regions=regions.reset_index(drop=True),
                           truth=truth, variants=variants.reset_index(drop=True), motif=seq_motif)


def _write_vcf(path: Path, sample: str, variants: pd.DataFrame, chrom_sizes: dict[str, int],
               reference: str) -> None:
    header = ["##fileformat=VCFv4.2", "##source=genosae-simulate", f"##reference={reference}"]
    header += [f"##contig=<ID={c},length={n}>" for c, n in chrom_sizes.items()]
    header += ['##INFO=<ID=PLANTED,Number=0,Type=Flag,Description="SNV creating the planted motif">',
               '##INFO=<ID=REGION,Number=1,Type=String,Description="Simulated region id">',
               '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
               "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT",
                          sample])]
    info = np.where(variants["planted"], "PLANTED;REGION=", "REGION=") + variants["region_id"].astype(str)
    body = (variants["chrom"].astype(str) + "\t" + (variants["pos0"] + 1).astype(str) + "\t.\t"
            + variants["ref"] + "\t" + variants["alt"] + "\t.\tPASS\t" + info + "\tGT\t"
            + variants["gt"])
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(header + body.tolist()) + "\n")


def apply_snvs(sequence: str, start: int, pos0: np.ndarray, alt: np.ndarray) -> str:
    """Apply SNVs (reference positions ``pos0``) to ``sequence`` that starts at ``start``."""
    arr = np.frombuffer(sequence.encode(), dtype=np.uint8).copy()
    if len(pos0):
        arr[np.asarray(pos0, dtype=np.int64) - start] = np.frombuffer(
            "".join(alt).encode(), dtype=np.uint8)
    return arr.tobytes().decode()


def _write_sample_fasta(path: Path, regions: pd.DataFrame, variants: pd.DataFrame, ploidy: int) -> None:
    lines = []
    for r in regions.itertuples():
        rv = variants[variants["region_id"] == r.region_id]
        for h in range(ploidy):
            gt = rv["gt"].str.split("|").str[h] if ploidy == 2 else rv["gt"]
            hv = rv[gt.to_numpy() == "1"]
            seq = apply_snvs(r.sequence, int(r.start), hv["pos0"].to_numpy(), hv["alt"].to_numpy())
            lines += [f">{r.region_id}|h{h + 1} {r.chrom}:{r.start}-{r.end}({r.strand})", seq]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


@dataclass
class SyntheticActivations:
    """Feature activations of a synthetic cohort with one planted feature (see
    :func:`synthetic_activations`)."""

    codes: sp.csr_matrix
    tokens: pd.DataFrame
    windows: pd.DataFrame
    samples: pd.DataFrame
    feature_names: list[str]
    planted_feature: str
    planted_regions: list[str]
    carriers: list[str]


def synthetic_activations(
    *,
    n_case: int = 8,
    n_control: int = 8,
    n_regions: int = 10,
    n_planted: int = 3,
    n_features: int = 24,
    tokens_per_window: int = 30,
    planted: int = 7,
    effect: float = 3.0,
    fraction_cases: float = 1.0,
    planted_tokens: int = 8,
    density: float = 0.08,
    seed: int = 0,
    reference: bool = True,
    motif: str = DEFAULT_MOTIF,
) -> SyntheticActivations:
    """A cohort's SAE-like activations without a model: one window per sample × region.

    Every feature has sparse exponential background activations, identical in distribution in both
    groups. In carrier cases (``fraction_cases`` of them), feature ``planted`` fires with
    ``effect`` (+ U(0,1)) on ``planted_tokens`` tokens of each planted region, and the window
    ``sequence`` carries ``motif`` there, so sequence baselines see the same signal. A
    ``__reference__`` sample (condition ``reference``) is added when ``reference``.
    """
    rng = np.random.default_rng(seed)
    samples = [f"case_{i:02d}" for i in range(n_case)] + [f"ctrl_{i:02d}" for i in range(n_control)]
    cond = ["case"] * n_case + ["control"] * n_control
    carriers = [str(x) for x in np.asarray(samples[:n_case])[
        np.sort(rng.choice(n_case, round(fraction_cases * n_case), replace=False))]]
    if reference:
        samples.append(REFERENCE_SAMPLE)
        cond.append("reference")
    regions = [f"R{i:02d}" for i in range(n_regions)]
    planted_regions = [regions[i] for i in np.sort(rng.choice(n_regions, n_planted, replace=False))]
    s_idx, r_idx = np.meshgrid(np.arange(len(samples)), np.arange(n_regions), indexing="ij")
    s_idx, r_idx = s_idx.ravel(), r_idx.ravel()
    n_win = s_idx.size
    start = 1000 * (r_idx + 1)
    hit = np.isin(np.asarray(samples)[s_idx], carriers) & np.isin(np.asarray(regions)[r_idx],
                                                                 planted_regions)
    # every sample carries the region's reference sequence with rare background SNVs (and the
    # __reference__ sample exactly the reference), so per-locus variant calls are meaningful
    acgt = np.frombuffer(b"ACGT", dtype=np.uint8)
    bases = acgt[rng.integers(0, 4, (n_regions, tokens_per_window))][r_idx]
    snv = (rng.random(bases.shape) < 0.01) & (np.asarray(samples)[s_idx] != REFERENCE_SAMPLE)[:, None]
    bases[snv] = acgt[(np.searchsorted(acgt, bases[snv]) + rng.integers(1, 4, int(snv.sum()))) % 4]
    m = np.frombuffer(motif.encode(), dtype=np.uint8)
    off = 10
    bases[np.ix_(np.flatnonzero(hit), off + np.arange(min(m.size, tokens_per_window - off)))] = \
        m[: tokens_per_window - off]
    windows = pd.DataFrame({
        "window_id": [f"{samples[s]}:{regions[r]}" for s, r in zip(s_idx, r_idx)],
        "chrom": "chrI", "start": start, "end": start + tokens_per_window, "strand": "+",
        "region_id": np.asarray(regions)[r_idx], "sample_id": np.asarray(samples)[s_idx],
        "condition": np.asarray(cond)[s_idx], "name": [f"GENE{r}" for r in r_idx],
        "sequence": [row.tobytes().decode() for row in bases],
    })
    n_tok = n_win * tokens_per_window
    noise = sp.random(n_tok, n_features, density=density, format="coo", random_state=seed,
                      data_rvs=lambda k: rng.exponential(1.0, k))
    hit_t = (np.flatnonzero(hit)[:, None] * tokens_per_window + off
             + np.arange(planted_tokens)[None, :]).ravel()
    keep = ~((noise.col == planted) & np.isin(noise.row, hit_t))
    rows = np.r_[noise.row[keep], hit_t]
    cols = np.r_[noise.col[keep], np.full(hit_t.size, planted)]
    vals = np.r_[noise.data[keep], effect + rng.random(hit_t.size)]
    codes = sp.csr_matrix((vals.astype(np.float32), (rows, cols)), shape=(n_tok, n_features))
    win_of_tok = np.repeat(np.arange(n_win), tokens_per_window)
    tok_in_win = np.tile(np.arange(tokens_per_window), n_win)
    tokens = pd.DataFrame({
        "window_index": win_of_tok, "token_index": tok_in_win, "chrom": "chrI",
        "bp_start": start[win_of_tok] + tok_in_win, "bp_end": start[win_of_tok] + tok_in_win + 1,
        "window_id": windows["window_id"].to_numpy()[win_of_tok],
    })
    sheet = pd.DataFrame({"sample_id": samples, "condition": cond,
                          "age": rng.normal(50, 10, len(samples)).round(1)})
    return SyntheticActivations(codes, tokens, windows, sheet, [f"f{i}" for i in range(n_features)],
                                f"f{planted}", planted_regions, carriers)
