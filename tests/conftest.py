"""Shared fixtures: the yeast reference (built once per session) and tiny FASTA/GFF/VCF builders."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
#: Where tests keep the built yeast reference between runs (never inside the repository).
TEST_CACHE = Path(os.environ.get("GENOSAE_TEST_CACHE") or Path(tempfile.gettempdir()) / "genosae-test-cache")
YEAST_CACHE = TEST_CACHE / "yeast"
os.environ["GENOSAE_TEST_CACHE"] = str(TEST_CACHE)  # the workflow tests' configs point there too


@pytest.fixture
def one_thread():
    """Torch on one intra-op thread for the test (tiny tensors: more threads only add overhead)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def yeast_reference():
    """:class:`genosae.genome.yeast.YeastReference` (FASTA + GFF3) of S288C, built once into
    ``TEST_CACHE/yeast`` (``$GENOSAE_TEST_CACHE``, default ``$TMPDIR/genosae-test-cache``)."""
    from genosae.genome.yeast import build_yeast_reference

    return build_yeast_reference(YEAST_CACHE)


@pytest.fixture(scope="session")
def yeast_genome(yeast_reference):
    """``(Reference, annotation DataFrame)`` of the yeast default."""
    from genosae.genome.annotation import read_annotation
    from genosae.genome.reference import Reference

    ref = Reference.open(yeast_reference.fasta)
    return ref, read_annotation(yeast_reference.gff3, ref)


@pytest.fixture(scope="session")
def yeast_concepts(yeast_genome):
    """Concepts table of the yeast genome (annotation + sequence concepts, no motifs)."""
    from genosae.genome.concepts import build_concepts

    ref, annotation = yeast_genome
    return build_concepts(annotation, ref)


def random_dna(n: int, seed: int = 0) -> str:
    return "".join(np.random.default_rng(seed).choice(list("ACGT"), size=n))


@pytest.fixture
def make_fasta(tmp_path) -> Callable[..., Path]:
    """``make_fasta({"chr1": "ACGT..."}, name="x.fa", width=60)`` writes a FASTA and returns its path."""

    def _make(records: Mapping[str, str], name: str = "genome.fa", width: int = 60) -> Path:
        path = tmp_path / name
        with open(path, "w") as fh:
            for rec, seq in records.items():
                fh.write(f">{rec}\n")
                for i in range(0, len(seq), width):
                    fh.write(seq[i:i + width] + "\n")
        return path

    return _make


@pytest.fixture
def make_gff(tmp_path) -> Callable[..., Path]:
    """``make_gff([(chrom, feature, start1, end, strand, phase, attrs), ...])`` writes a GFF3."""

    def _make(rows, name: str = "annotation.gff3") -> Path:
        path = tmp_path / name
        lines = ["##gff-version 3"]
        for chrom, feature, start, end, strand, phase, attrs in rows:
            lines.append("\t".join([chrom, "test", feature, str(start), str(end), ".", strand,
                                    str(phase), attrs]))
        path.write_text("\n".join(lines) + "\n")
        return path

    return _make


@pytest.fixture
def small_genome(make_fasta, make_gff):
    """A two-chromosome toy genome with one + gene, one - gene with an intron, and a tRNA.

    Returns ``(fasta, gff3, sequences)``.
    """
    seqs = {"chr1": random_dna(3000, 1), "chr2": random_dna(2000, 2)}
    s1 = list(seqs["chr1"])
    s1[1000:1003] = "ATG"           # + gene CDS 1000..1300 (0-based), stop at 1297
    s1[1297:1300] = "TAA"
    s1[900:907] = "TATAAAA"         # TATA box 100 bp upstream
    s2 = list(seqs["chr2"])
    # - gene: exon A 1400..1500 (5' exon, holds start codon), intron 1200..1400, exon B 1000..1200
    s2[1497:1500] = "CAT"           # ATG on the minus strand
    s2[1398:1400] = "AC"            # intron donor GT on minus strand (revcomp of AC)
    s2[1200:1202] = "CT"            # acceptor AG on minus strand
    s2[1000:1003] = "TTA"           # stop TAA on minus
    seqs = {"chr1": "".join(s1), "chr2": "".join(s2)}
    fasta = make_fasta(seqs)
    gff = make_gff([
        ("chr1", "gene", 1001, 1300, "+", ".", "ID=gene:G1;Name=GENE1;locus_tag=Y1"),
        ("chr1", "CDS", 1001, 1300, "+", 0, "ID=CDS:G1;Name=GENE1;locus_tag=Y1;Parent=mRNA:Y1"),
        ("chr1", "tRNA", 2001, 2072, "-", ".", "ID=tRNA:T1;Name=tA;locus_tag=T1"),
        ("chr2", "gene", 1001, 1500, "-", ".", "ID=gene:G2;Name=GENE2;locus_tag=Y2"),
        ("chr2", "CDS", 1401, 1500, "-", 0, "ID=CDS:G2;Name=GENE2;locus_tag=Y2;Parent=mRNA:Y2"),
        ("chr2", "CDS", 1001, 1200, "-", 2, "ID=CDS:G2;Name=GENE2;locus_tag=Y2;Parent=mRNA:Y2"),
    ])
    return fasta, gff, seqs
