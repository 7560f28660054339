"""Small variants from a VCF (cyvcf2) applied to the reference, per sample and haplotype."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from genosae.errors import InputError
from genosae.genome.reference import Reference, reverse_complement

log = logging.getLogger(__name__)


@dataclass
class VcfData:
    """Records and genotypes of one VCF.

    Attributes
    ----------
    records
        ``chrom`` (FASTA name), ``pos`` (0-based), ``ref``, ``alts`` (tuple), ``id``, ``line``.
    samples
        Sample names in file order.
    genotypes
        ``int16 [n_records, n_samples, 2]`` allele indices (0 = REF, -1 = missing).
    phased
        ``bool [n_records, n_samples]``.
    """

    path: Path
    records: pd.DataFrame
    samples: list[str]
    genotypes: np.ndarray
    phased: np.ndarray


def read_vcf(path: str | Path, reference: Reference) -> VcfData:
    """Read a VCF/BCF and check every REF allele against ``reference`` (mismatches are refused)."""
    from cyvcf2 import VCF

    path = Path(path)
    if not path.exists():
        raise InputError("VCF file not found; fix the path", path=path)
    if path.stat().st_size == 0:
        raise InputError("the VCF file is empty; it needs a '##fileformat=VCF' header", path=path)
    if path.suffix == ".gz" and path.read_bytes()[:2] != b"\x1f\x8b":
        raise InputError("named .gz but is not gzip-compressed; compress it with `bgzip`", path=path)
    try:
        vcf = VCF(str(path), gts012=False, strict_gt=False)
    except (OSError, Exception) as err:
        raise InputError(f"cannot read as VCF ({err}); check the header", path=path) from None
    samples = list(vcf.samples)
    rows, gts, phased = [], [], []
    for i, v in enumerate(vcf, start=1):
        chrom = reference.aliases.get(v.CHROM)
        where = f"record {i} ({v.CHROM}:{v.POS})"
        if chrom is None:
            raise InputError(f"unknown chromosome '{v.CHROM}'; known: "
                             f"{', '.join(reference.chroms[:20])}", path=path, record=where)
        pos = v.POS - 1
        end = pos + len(v.REF)
        if end > reference.chrom_sizes[chrom]:
            raise InputError(f"REF runs past the end of {chrom}", path=path, record=where)
        ref_seq = reference.fetch(chrom, pos, end).upper()
        if ref_seq != v.REF.upper():
            raise InputError(f"REF '{v.REF}' does not match the reference '{ref_seq}'; was the VCF "
                             "made on another assembly?", path=path, record=where)
        rows.append((chrom, pos, v.REF.upper(), tuple(a.upper() for a in v.ALT), v.ID or ".", i))
        if samples:
            g = np.asarray(v.genotype.array()) if hasattr(v, "genotype") else None
            gt = np.full((len(samples), 2), -1, dtype=np.int16)
            if g is not None and g.size:
                gt[:, : min(2, g.shape[1] - 1)] = g[:, : min(2, g.shape[1] - 1)]
                ph = g[:, -1].astype(bool)
            else:
                ph = np.zeros(len(samples), dtype=bool)
            gts.append(gt)
            phased.append(ph)
    vcf.close()
    records = pd.DataFrame(rows, columns=["chrom", "pos", "ref", "alts", "id", "line"])
    n = len(records)
    genotypes = np.stack(gts) if gts else np.zeros((n, len(samples), 2), dtype=np.int16)
    phase = np.stack(phased) if phased else np.zeros((n, len(samples)), dtype=bool)
    return VcfData(path, records, samples, genotypes, phase)


Edit = tuple[int, str, str]
"""One applied allele: ``(pos, ref, alt)`` with ``pos`` 0-based on the reference."""


def apply_edits(ref: str, start: int, edits: Sequence[Edit]) -> tuple[str, list[Edit]]:
    """Apply sorted ``(pos, ref, alt)`` edits to ``ref`` (the reference from ``start``).

    An edit overlapping one already applied is skipped. Returns the haplotype and the edits applied.
    """
    out, applied, cur = [], [], 0
    for pos, r, a in edits:
        off = pos - start
        if off < cur:  # overlaps an applied variant
            continue
        out.append(ref[cur:off])
        out.append(a)
        applied.append((int(pos), r, a))
        cur = off + len(r)
    out.append(ref[cur:])
    return "".join(out), applied


def format_edits(edits: Sequence[Edit]) -> str:
    """``pos:REF:ALT`` joined by ``;`` (the ``edits`` column of haplotype windows); ``""`` for none."""
    return ";".join(f"{p}:{r}:{a}" for p, r, a in edits)


def parse_edits(text: object) -> list[Edit]:
    """Inverse of :func:`format_edits` (empty, NA or ``None`` give no edits)."""
    if not isinstance(text, str) or not text:
        return []
    out = []
    for item in text.split(";"):
        pos, r, a = item.split(":")
        out.append((int(pos), r, a))
    return out


def haplotype_positions(start: int, end: int, edits: Sequence[Edit]) -> tuple[np.ndarray, np.ndarray]:
    """Reference coordinate of every base of the haplotype ``apply_edits`` makes from ``[start, end)``.

    Bases outside the edits keep their reference position (those after an indel shifted back by its
    length); within an edit, the bases ``ref`` and ``alt`` share as a prefix map to their own
    positions, then a same-length remainder maps base to base (SNVs, MNVs) and any other remainder
    (inserted bases, the new bases of a complex allele) takes the position of the reference base
    before it and is flagged ``inserted``. Deleted reference bases have no haplotype base.

    Returns
    -------
    positions
        ``int64 [len(haplotype)]`` 0-based reference coordinates, non-decreasing.
    inserted
        ``bool [len(haplotype)]``: the base has no reference base of its own.
    """
    pos_parts, ins_parts, cur = [], [], start
    for pos, r, a in edits:
        pos_parts.append(np.arange(cur, pos, dtype=np.int64))
        ins_parts.append(np.zeros(pos - cur, dtype=bool))
        common = next((i for i, (x, y) in enumerate(zip(r, a)) if x != y), min(len(r), len(a)))
        rest_r, rest_a = len(r) - common, len(a) - common
        pos_parts.append(np.arange(pos, pos + common, dtype=np.int64))
        ins_parts.append(np.zeros(common, dtype=bool))
        if rest_r == rest_a:
            pos_parts.append(np.arange(pos + common, pos + len(r), dtype=np.int64))
            ins_parts.append(np.zeros(rest_a, dtype=bool))
        else:
            pos_parts.append(np.full(rest_a, pos + common - 1, dtype=np.int64))
            ins_parts.append(np.ones(rest_a, dtype=bool))
        cur = pos + len(r)
    pos_parts.append(np.arange(cur, end, dtype=np.int64))
    ins_parts.append(np.zeros(end - cur, dtype=bool))
    positions, inserted = np.concatenate(pos_parts), np.concatenate(ins_parts)
    positions = np.maximum(positions, start)  # an insertion at the very first base anchors to it
    return positions, inserted


def sample_haplotype_sequences(reference: Reference, vcf: VcfData | str | Path, sample: str,
                               regions: pd.DataFrame) -> pd.DataFrame:
    """Each region's sequence on both haplotypes of ``sample``.

    Variants wholly inside a region are applied (SNVs, MNVs, small indels; symbolic alleles skipped).
    Genotypes are used in their GT order; for unphased heterozygous calls that order is arbitrary
    (a warning says so).

    Returns
    -------
    DataFrame ``region_id, chrom, start, end, strand, haplotype, sequence, edits`` (two rows per
    region, reverse-complemented on ``-``; ``edits`` are the applied alleles, :func:`format_edits`,
    from which :func:`haplotype_positions` gives every base's reference coordinate).
    """
    data = vcf if isinstance(vcf, VcfData) else read_vcf(vcf, reference)
    if sample not in data.samples:
        raise InputError(f"sample '{sample}' is not in the VCF (samples: {', '.join(data.samples[:20])})",
                         path=data.path)
    j = data.samples.index(sample)
    gt = data.genotypes[:, j, :]
    het_unphased = (gt[:, 0] != gt[:, 1]) & ~data.phased[:, j] & (gt >= 0).all(axis=1)
    if het_unphased.any():
        log.warning("%s: sample %s has %d unphased heterozygous calls; haplotypes follow GT order",
                    data.path, sample, int(het_unphased.sum()))
    rec = data.records
    r = regions.reset_index(drop=True)
    if "region_id" not in r:
        r = r.assign(region_id=r["chrom"] + ":" + r["start"].astype(str) + "-" + r["end"].astype(str))
    strand = r["strand"] if "strand" in r else pd.Series("+", index=r.index)
    out = []
    by_chrom = {c: np.flatnonzero(rec["chrom"].to_numpy() == c) for c in rec["chrom"].unique()}
    pos_all = rec["pos"].to_numpy(np.int64)
    ref_len = rec["ref"].str.len().to_numpy(np.int64) if len(rec) else np.zeros(0, np.int64)
    for i, (rid, chrom, s, e) in enumerate(r[["region_id", "chrom", "start", "end"]]
                                           .itertuples(index=False, name=None)):
        chrom = reference.resolve(chrom)
        s, e = int(s), int(e)
        ref = reference.fetch(chrom, s, e)
        idx = by_chrom.get(chrom, np.zeros(0, np.int64))
        idx = idx[(pos_all[idx] >= s) & (pos_all[idx] + ref_len[idx] <= e)]
        idx = idx[np.argsort(pos_all[idx], kind="stable")]
        for h in (0, 1):
            var = []
            for k in idx:
                allele = int(gt[k, h])
                if allele <= 0:
                    continue
                alt = rec["alts"].iat[k][allele - 1]
                if not alt or alt.startswith("<") or alt in {"*", "."}:
                    continue
                var.append((int(pos_all[k]), rec["ref"].iat[k], alt))
            seq, applied = apply_edits(ref, s, var)
            if strand.iat[i] == "-":
                seq = reverse_complement(seq)
            out.append((rid, chrom, s, e, strand.iat[i], h, seq, format_edits(applied)))
    return pd.DataFrame(out, columns=["region_id", "chrom", "start", "end", "strand", "haplotype",
                                      "sequence", "edits"])
