"""The one promoter definition (genosae.genome.genes) and its three readers."""

import numpy as np
import pandas as pd

from genosae.biomarkers.simulate import candidate_promoters
from genosae.genome.annotation import read_annotation
from genosae.genome.concepts import build_concepts
from genosae.genome.designs import region_design_from_genes
from genosae.genome.genes import coding_genes, promoters, stranded_interval
from genosae.genome.reference import Reference


def _genome(make_fasta, make_gff):
    """chr1 (5 kb): P1 + with a 70 bp 5' UTR 80 bp from the chromosome start, M1 - with a 40 bp 5' UTR and an intron, C1 + without a
    gene record (CDS-only), E1 - 30 bp from the chromosome end (its promoter is clipped)."""
    fasta = make_fasta({"chr1": "".join(np.random.default_rng(4).choice(list("ACGT"), 5000))})
    gff = make_gff([
        ("chr1", "gene", 81, 400, "+", ".", "ID=gene:P1;Name=PLUS;locus_tag=P1"),
        ("chr1", "CDS", 151, 400, "+", 0, "ID=CDS:P1;Name=PLUS;locus_tag=P1;Parent=mRNA:P1"),
        ("chr1", "gene", 1001, 1640, "-", ".", "ID=gene:M1;Name=MINUS;locus_tag=M1"),
        ("chr1", "CDS", 1401, 1600, "-", 0, "ID=CDS:M1;Name=MINUS;locus_tag=M1;Parent=mRNA:M1"),
        ("chr1", "CDS", 1001, 1200, "-", 2, "ID=CDS:M1;Name=MINUS;locus_tag=M1;Parent=mRNA:M1"),
        ("chr1", "CDS", 3001, 3300, "+", 0, "ID=CDS:C1;Name=CDSONLY;locus_tag=C1;Parent=mRNA:C1"),
        ("chr1", "gene", 4001, 4970, "-", ".", "ID=gene:E1;Name=END;locus_tag=E1"),
        ("chr1", "CDS", 4001, 4970, "-", 0, "ID=CDS:E1;Name=END;locus_tag=E1;Parent=mRNA:E1"),
    ])
    ref = Reference.open(fasta)
    return ref, read_annotation(gff, ref)


def test_tss_rule_and_promoters_on_both_strands(make_fasta, make_gff):
    ref, annotation = _genome(make_fasta, make_gff)
    genes = coding_genes(annotation).set_index("gene_id")
    # TSS = 5' end of the gene record (UTRs included), else of the CDS span; 0-based first base
    assert genes["tss"].to_dict() == {"P1": 80, "M1": 1639, "C1": 3000, "E1": 4969}
    assert genes.loc["M1", ["start", "end"]].tolist() == [1000, 1600]  # the CDS span is kept
    p = promoters(annotation, upstream=100, downstream=10, chrom_sizes=ref.chrom_sizes).set_index("region_id")
    assert p[["start", "end"]].to_dict("index") == {
        "P1": {"start": 0, "end": 90},         # + : [TSS - 100, TSS + 10), clipped at 0
        "M1": {"start": 1630, "end": 1740},    # - : [TSS + 1 - 10, TSS + 1 + 100)
        "C1": {"start": 2900, "end": 3010},
        "E1": {"start": 4960, "end": 5000},    # clipped at the chromosome end
    }
    assert p.loc["M1", "gene"] == "MINUS" and p.loc["M1", "strand"] == "-"
    only = promoters(annotation, ["minus", "E1"], upstream=100, downstream=0)
    assert only["region_id"].tolist() == ["M1", "E1"] and only["end"].tolist() == [1740, 5070]
    lo, hi = stranded_interval(np.array(["chr1"] * 2), np.array([50, 50]), np.array(["+", "-"]),
                               upstream=0, downstream=20)
    assert lo.tolist() == [50, 31] and hi.tolist() == [70, 51]


def test_concepts_designs_and_simulator_share_the_promoters(make_fasta, make_gff):
    ref, annotation = _genome(make_fasta, make_gff)
    sizes = ref.chrom_sizes
    expect = promoters(annotation, upstream=100, downstream=0, chrom_sizes=sizes)
    expect = expect[expect["end"] > expect["start"]]
    concepts = build_concepts(annotation, ref, promoter_upstream=100, promoter_downstream=0)
    conc = concepts[concepts["concept"] == "promoter"].sort_values("start")
    key = ["start", "end", "strand"]
    pd.testing.assert_frame_equal(conc[key].reset_index(drop=True),
                                  expect.sort_values("start")[key].reset_index(drop=True))
    design = region_design_from_genes(annotation, ["PLUS"], upstream=100, downstream=0, chrom_sizes=sizes)
    pd.testing.assert_frame_equal(design.set_index("region_id")[key].sort_index(),
                                  expect.set_index("region_id")[key].sort_index())
    sim = candidate_promoters(annotation, sizes, 100)  # full-length, non-overlapping ones
    assert sim["gene_id"].tolist() == ["M1", "C1"]
    pd.testing.assert_frame_equal(sim.set_index("gene_id")[key],
                                  expect.set_index("region_id").loc[["M1", "C1"], key].rename_axis("gene_id"))
