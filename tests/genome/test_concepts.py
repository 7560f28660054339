import time

import numpy as np
import pandas as pd
import pytest
from Bio.Seq import Seq

from genosae.genome.annotation import read_annotation
from genosae.genome.concepts import build_concepts, concept_mask, label_positions, match_pattern
from genosae.genome.reference import Reference

STOPS = {"TAA", "TAG", "TGA"}


def _check_gene(ref, annotation, concepts, gene, translate=True):
    """Concept masks over a gene agree with its GenBank CDS parts, on either strand."""
    cds = annotation[(annotation["feature"] == "CDS") &
                     ((annotation["name"] == gene) | (annotation["gene_id"] == gene))].sort_values("start")
    chrom, strand = cds["chrom"].iat[0], cds["strand"].iat[0]
    lo, hi = int(cds["start"].min()) - 10, int(cds["end"].max()) + 10
    names = ["CDS", "intron", "start_codon", "stop_codon", "splice_donor", "splice_acceptor",
             f"codon_pos1({strand})", f"codon_pos2({strand})", f"codon_pos3({strand})"]
    mask = concept_mask(concepts, chrom, lo, hi, names)
    m = dict(zip(names, mask))
    exon_pos = np.concatenate([np.arange(s, e) for s, e in zip(cds["start"], cds["end"])])
    expected_cds = np.zeros(hi - lo, bool)
    expected_cds[exon_pos - lo] = True
    assert np.array_equal(m["CDS"], expected_cds)
    # spliced CDS in transcription order: translates from M to a stop
    order = exon_pos if strand == "+" else exon_pos[::-1]
    spliced = "".join(ref.fetch(chrom, int(p), int(p) + 1) for p in order).upper()
    if strand == "-":
        spliced = str(Seq(spliced).complement())
    assert len(spliced) % 3 == 0
    if translate:
        protein = str(Seq(spliced).translate())
        assert protein[0] == "M" and protein[-1] == "*" and "*" not in protein[:-1]
    for k in (1, 2, 3):
        expected = np.zeros(hi - lo, bool)
        expected[order[k - 1::3] - lo] = True
        assert np.array_equal(m[f"codon_pos{k}({strand})"], expected), k
    start = np.flatnonzero(m["start_codon"]) + lo
    stop = np.flatnonzero(m["stop_codon"]) + lo
    assert ref.fetch(chrom, start.min(), start.max() + 1, strand).upper() == "ATG"
    assert ref.fetch(chrom, stop.min(), stop.max() + 1, strand).upper() in STOPS
    n_introns = len(cds) - 1
    inside = np.zeros(hi - lo, bool)
    inside[10:-10] = True
    assert np.array_equal(m["intron"], inside & ~expected_cds)
    if n_introns:
        d = np.flatnonzero(m["splice_donor"]) + lo
        a = np.flatnonzero(m["splice_acceptor"]) + lo
        assert ref.fetch(chrom, d.min(), d.max() + 1, strand).upper() == "GT"
        assert ref.fetch(chrom, a.min(), a.max() + 1, strand).upper() == "AG"


@pytest.mark.parametrize("gene", ["ACT1", "PGK1", "RPL28", "TDH3", "YFL039C"])
def test_yeast_genes(yeast_genome, yeast_concepts, gene):
    ref, annotation = yeast_genome
    _check_gene(ref, annotation, yeast_concepts, gene)


def test_yeast_concept_catalogue(yeast_concepts):
    counts = yeast_concepts["concept"].value_counts()
    for c in ["CDS", "intron", "five_prime_flank", "three_prime_flank", "promoter", "tRNA", "ncRNA",
              "LTR", "mobile_element", "rep_origin", "centromere", "telomere", "codon_pos1(+)",
              "codon_pos3(-)", "start_codon", "stop_codon", "splice_donor", "splice_acceptor",
              "TATA_box", "polyA_signal", "GC_rich", "CpG_like", "homopolymer_AT", "homopolymer_GC",
              "tandem_repeat"]:
        assert counts.get(c, 0) > 0, c
    assert 5800 < counts["start_codon"] < 6600
    assert 250 < counts["intron"] < 400


def test_promoter_strand_and_tata(yeast_genome, yeast_concepts):
    ref, _ = yeast_genome
    c = yeast_concepts
    act1 = c[(c["name"] == "ACT1") & (c["concept"] == "promoter")]
    assert act1[["start", "end", "strand"]].values.tolist() == [[54696, 55196, "-"]]
    tata = c[c["concept"] == "TATA_box"].sample(50, random_state=0)
    for chrom, s, e, strand in tata[["chrom", "start", "end", "strand"]].itertuples(index=False):
        seq = ref.fetch(chrom, s, e, strand).upper()
        assert seq[:4] == "TATA" and seq[4] in "AT" and seq[5] == "A" and seq[6] in "AT"


def test_sequence_concepts_small(make_fasta, make_gff):
    seq = "ACGT" * 10 + "A" * 8 + "CGCG" * 2 + "CACACACACACACACA" + "TTGCA" * 4 + "G" * 7 + "ACGT" * 5
    fasta = make_fasta({"c": seq})
    gff = make_gff([("c", "CDS", 1, 30, "+", 0, "ID=x;Name=X")])
    ref = Reference.open(fasta)
    c = build_concepts(read_annotation(gff, ref), ref, gc_window=10, gc_threshold=0.9)
    homo = c[c["concept"].str.startswith("homopolymer")]
    assert homo[["start", "end", "concept", "name"]].values.tolist() == [
        [40, 48, "homopolymer_AT", "A8"], [92, 99, "homopolymer_GC", "G7"]]
    tr = c[c["concept"] == "tandem_repeat"][["start", "end"]].values.tolist()
    assert [48, 72] in tr or any(s <= 56 and e >= 72 for s, e in tr)
    assert any(s <= 72 and e >= 92 for s, e in tr)
    gc = c[c["concept"] == "GC_rich"][["start", "end"]].values.tolist()
    assert all(e - s >= 10 for s, e in gc) and any(s <= 48 < e for s, e in gc)
    assert match_pattern(np.frombuffer(b"TTATAAAAT", np.uint8), "TATAWAW").tolist() == [1]


def test_small_genome_minus_gene(small_genome):
    fasta, gff, _ = small_genome
    ref = Reference.open(fasta)
    annotation = read_annotation(gff, ref)
    c = build_concepts(annotation, ref, promoter_upstream=150)
    _check_gene(ref, annotation, c, "GENE1", translate=False)
    _check_gene(ref, annotation, c, "GENE2", translate=False)
    tata = c[(c["concept"] == "TATA_box") & (c["start"] == 900)]
    assert tata["strand"].tolist() == ["+"]
    prom = c[c["concept"] == "promoter"].set_index("name")
    assert prom.loc["GENE1", ["start", "end"]].tolist() == [850, 1000]
    assert prom.loc["GENE2", ["start", "end"]].tolist() == [1500, 1650]


def test_label_positions_overlaps_and_instances():
    concepts = pd.DataFrame({
        "chrom": ["a", "a", "a", "b", "a"], "start": [0, 5, 20, 0, 3], "end": [30, 8, 25, 10, 9],
        "strand": ["+", "+", "+", "+", "-"],
        "concept": ["X", "Y", "Y", "X", "codon_pos1(-)"], "name": list("pqrst")})
    pos = np.array([0, 6, 22, 29, 30, 5, 8, 2, 7])
    chrom = np.array(["a", "a", "a", "a", "a", "b", "a", "a", "a"])
    member, inst = label_positions(concepts, chrom, pos, ["X", "Y", "codon_pos1(-)", "Z"])
    assert member.shape == (9, 4)
    dense = member.toarray()
    assert dense[:, 0].tolist() == [True, True, True, True, False, True, True, True, True]
    assert dense[:, 1].tolist() == [False, True, True, False, False, False, False, False, True]
    # codon_pos1(-) anchored at end-1 = 8: members 8, 5, ... (not 7)
    assert dense[:, 2].tolist() == [False, False, False, False, False, False, True, False, False]
    assert inst.toarray()[:, 0].tolist() == [1, 1, 1, 1, 0, 4, 1, 1, 1]
    assert inst.toarray()[:, 1].tolist() == [0, 2, 3, 0, 0, 0, 0, 0, 2]
    assert not dense[:, 3].any()


def test_label_positions_speed(yeast_genome, yeast_concepts):
    ref, _ = yeast_genome
    rng = np.random.default_rng(0)
    n = 1_000_000
    chroms = rng.choice(ref.chroms, n)
    pos = (rng.random(n) * 200_000).astype(np.int64)
    names = sorted(yeast_concepts["concept"].unique())
    t = time.perf_counter()
    member, _ = label_positions(yeast_concepts, chroms, pos, names)
    elapsed = time.perf_counter() - t
    assert elapsed < 20, elapsed
    # cross-check one concept against a direct interval test
    j = names.index("tRNA")
    t_rna = yeast_concepts[yeast_concepts["concept"] == "tRNA"]
    sel = np.flatnonzero(chroms == "chrIV")[:5000]
    sub = t_rna[t_rna["chrom"] == "chrIV"]
    direct = ((pos[sel, None] >= sub["start"].to_numpy()) & (pos[sel, None] < sub["end"].to_numpy())).any(1)
    assert np.array_equal(member[sel, j].toarray().ravel(), direct)
