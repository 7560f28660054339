import numpy as np
import pandas as pd
import pytest

from genosae.errors import InputError
from genosae.genome.annotation import read_annotation
from genosae.genome.designs import (
    read_region_design,
    read_samples,
    read_sequence_design,
    region_design_from_genes,
)
from genosae.genome.genes import promoters
from genosae.genome.reference import Reference
from genosae.genome.variants import (
    apply_edits,
    haplotype_positions,
    parse_edits,
    read_vcf,
    sample_haplotype_sequences,
)
from genosae.genome.windows import atlas_windows, cohort_windows, make_windows, window_sequences

VCF_HEADER = ("##fileformat=VCFv4.2\n##contig=<ID=chr1,length=3000>\n##contig=<ID=chr2,length=2000>\n"
              '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
              "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\tS2\n")


def _vcf(tmp_path, seqs, name="v.vcf"):
    s = seqs["chr1"]
    rows = [f"chr1\t101\t.\t{s[100]}\t{'A' if s[100] != 'A' else 'C'}\t.\tPASS\t.\tGT\t1|0\t0|0",
            f"chr1\t111\t.\t{s[110]}\t{s[110]}GG\t.\tPASS\t.\tGT\t0|1\t1|1",
            f"chr1\t121\t.\t{s[120:123]}\t{s[120]}\t.\tPASS\t.\tGT\t1|1\t0|0"]
    path = tmp_path / name
    path.write_text(VCF_HEADER + "\n".join(rows) + "\n")
    return path


def test_haplotypes_apply_snv_and_indels(small_genome, tmp_path):
    fasta, _, seqs = small_genome
    ref = Reference.open(fasta)
    vcf = read_vcf(_vcf(tmp_path, seqs), ref)
    assert vcf.samples == ["S1", "S2"] and vcf.phased.all()
    regions = pd.DataFrame({"region_id": ["r"], "chrom": ["chr1"], "start": [90], "end": [140],
                            "strand": ["+"]})
    hap = sample_haplotype_sequences(ref, vcf, "S1", regions)
    s = seqs["chr1"]
    alt = "A" if s[100] != "A" else "C"
    h0 = s[90:100] + alt + s[101:121] + s[123:140]
    h1 = s[90:111] + "GG" + s[111:121] + s[123:140]
    assert hap["sequence"].tolist() == [h0, h1]
    minus = sample_haplotype_sequences(ref, vcf, "S2", regions.assign(strand="-"))
    from genosae.genome.reference import reverse_complement

    assert minus["sequence"].tolist() == [reverse_complement(s[90:111] + "GG" + s[111:140])] * 2


def test_haplotype_positions_are_exact_after_indels(small_genome, tmp_path):
    fasta, _, seqs = small_genome
    ref = Reference.open(fasta)
    hap = sample_haplotype_sequences(ref, read_vcf(_vcf(tmp_path, seqs), ref), "S1",
                                     pd.DataFrame({"chrom": ["chr1"], "start": [90], "end": [140]}))
    s = seqs["chr1"]
    # h0: SNV at 100 and the 2-bp deletion after 120; h1: the GG insertion after 110 and the deletion
    assert [parse_edits(e) for e in hap["edits"]] == [
        [(100, s[100], "A" if s[100] != "A" else "C"), (120, s[120:123], s[120])],
        [(110, s[110], s[110] + "GG"), (120, s[120:123], s[120])]]
    for seq, edits in zip(hap["sequence"], hap["edits"]):
        pos, inserted = haplotype_positions(90, 140, parse_edits(edits))
        assert len(pos) == len(seq) and (np.diff(pos) >= 0).all()
        own = np.array([b == s[p] for b, p in zip(seq, pos)])
        snv = pos == 100
        assert own[~inserted & ~snv].all()  # every base but the SNV's alt is its reference base
        assert pos[-1] == 139 and 121 not in pos and 122 not in pos  # deleted bases are gone
    pos1, ins1 = haplotype_positions(90, 140, parse_edits(hap["edits"].iat[1]))
    assert ins1.sum() == 2 and (pos1[ins1] == 110).all()  # GG anchored to the base before them
    assert pos1[np.flatnonzero(ins1)[-1] + 1] == 111  # and the base after the insertion is 111, not 113


def test_apply_edits_skips_overlaps_and_maps_mnv_and_complex():
    ref = "ACGTACGTAC"
    seq, applied = apply_edits(ref, 10, [(12, "GT", "TT"), (13, "T", "A"), (15, "CGT", "G")])
    assert seq == "ACTTA" + "G" + "AC" and applied == [(12, "GT", "TT"), (15, "CGT", "G")]
    pos, ins = haplotype_positions(10, 20, applied)
    assert pos.tolist() == [10, 11, 12, 13, 14, 14, 18, 19] and ins.tolist() == [0, 0, 0, 0, 0, 1, 0, 0]


def test_vcf_ref_mismatch(small_genome, tmp_path):
    fasta, _, seqs = small_genome
    ref = Reference.open(fasta)
    wrong = "A" if seqs["chr1"][100] != "A" else "C"
    path = tmp_path / "bad.vcf"
    path.write_text(VCF_HEADER + f"chr1\t101\trs1\t{wrong}\tG\t.\tPASS\t.\tGT\t0|1\t0|0\n")
    with pytest.raises(InputError, match=r"record 1 \(chr1:101\): REF '.' does not match"):
        read_vcf(path, ref)
    empty = tmp_path / "empty.vcf"
    empty.write_text("")
    with pytest.raises(InputError, match="VCF file is empty"):
        read_vcf(empty, ref)


def test_make_windows_exact():
    regions = pd.DataFrame({"region_id": ["a", "b"], "chrom": ["c", "c"], "start": [0, 1000],
                            "end": [1000, 1100], "strand": ["+", "-"], "group": ["x", "y"]})
    w = make_windows(regions, size=400, stride=300, chrom_sizes={"c": 1120})
    assert w[["start", "end"]].values.tolist() == [[0, 400], [300, 700], [600, 1000], [720, 1120]]
    assert w["group"].tolist() == ["x", "x", "x", "y"]
    assert w["window_id"].is_unique
    assert list(w.columns[:6]) == ["window_id", "chrom", "start", "end", "strand", "region_id"]


def test_atlas_windows_nonoverlapping():
    sizes = {"c1": 100_000, "c2": 50_000, "c3": 30_000}
    w = atlas_windows(sizes, n_windows=100, size=512, exclude_chroms=["c3"], seed=1)
    assert len(w) == 100 and set(w["chrom"]) <= {"c1", "c2"}
    for _, g in w.groupby("chrom"):
        assert (g["start"].to_numpy()[1:] >= g["end"].to_numpy()[:-1]).all()
    assert (w["end"] - w["start"] == 512).all()
    assert w.equals(atlas_windows(sizes, n_windows=100, size=512, exclude_chroms=["c3"], seed=1))
    with pytest.raises(InputError, match="holds only"):
        atlas_windows({"c": 1000}, n_windows=5, size=512)


def test_atlas_all_tiles_every_slot_of_every_chromosome():
    sizes = {"c1": 100_000, "c2": 50_000, "c3": 3_000}
    w = atlas_windows(sizes, n_windows="all", size=512, seed=2)
    for c, n in sizes.items():
        g = w[w["chrom"] == c]
        assert (g["start"].to_numpy()[1:] == g["end"].to_numpy()[:-1]).all()  # contiguous tiling
        assert g["start"].min() < 512 and n - g["end"].max() < 512 + 512  # from the offset to the end
        assert len(g) == (n - g["start"].min()) // 512
    with pytest.raises(InputError, match="'all'"):
        atlas_windows(sizes, n_windows="most", size=512)


def test_region_design_and_windows(small_genome, tmp_path):
    fasta, gff, _ = small_genome
    ref = Reference.open(fasta)
    annotation = read_annotation(gff, ref)
    d = region_design_from_genes(annotation, ["GENE2", "NOPE"], upstream=100, downstream=10,
                                 chrom_sizes=ref.chrom_sizes)
    assert d.attrs["unknown_genes"] == ["NOPE"]
    assert d.set_index("gene").loc["GENE2", ["start", "end", "group"]].tolist() == [1490, 1600, "case"]
    assert d.set_index("gene").loc["GENE1", "group"] == "control"
    p = promoters(annotation, ["Y1"], upstream=50, downstream=0)
    assert p[["start", "end", "gene"]].values.tolist() == [[950, 1000, "GENE1"]]
    w = make_windows(d, size=64, stride=64, chrom_sizes=ref.chrom_sizes)
    seqs = window_sequences(w, ref)
    assert all(len(s) == 64 for s in seqs)
    assert seqs[-1] == ref.fetch(w["chrom"].iat[-1], w["start"].iat[-1], w["end"].iat[-1], w["strand"].iat[-1])
    with pytest.raises(InputError, match="none of the 1 genes"):
        region_design_from_genes(annotation, ["NOPE"])


def test_cohort_windows(small_genome, tmp_path):
    fasta, _, seqs = small_genome
    ref = Reference.open(fasta)
    vcf = _vcf(tmp_path, seqs)
    sheet = tmp_path / "samples.tsv"
    sheet.write_text(f"sample_id\tcondition\tvcf\tage\nS1\tcase\t{vcf.name}\t30\nS2\tcontrol\t{vcf}\t40\n")
    samples = read_samples(sheet)
    regions = pd.DataFrame({"region_id": ["r"], "chrom": ["chr1"], "start": [64], "end": [192], "strand": "+"})
    w = cohort_windows(ref, samples, regions, size=64, stride=64)
    assert set(w["sample_id"]) == {"__reference__", "S1", "S2"}
    assert (w["sample_id"] == "__reference__").sum() == 2 and len(w) == 2 + 2 * 2 * 2
    assert w["window_id"].is_unique and (w.loc[w["sample_id"] == "S1", "age"] == 30).all()
    s1h1 = w[(w["sample_id"] == "S2") & (w["haplotype"] == 1) & (w["start"] == 64)]["sequence"].iat[0]
    assert "GG" in s1h1 and len(s1h1) == 66
    # locus-major: all haplotypes of the first window, reference first, then the second window
    assert w["start"].tolist() == [64] * 5 + [128] * 5
    assert w["sample_id"].tolist()[:5] == ["__reference__", "S1", "S1", "S2", "S2"]


@pytest.mark.parametrize(("text", "message"), [
    ("sample_id\tcondition\tvcf\nA\tcase\tx.vcf\nA\tcontrol\tx.vcf\n", "duplicated sample_id 'A'"),
    ("sample_id\tcondition\tvcf\nA\tcase\tx.vcf\nB\tcase\tx.vcf\n", "1 level"),
    ("sample_id\tcondition\tvcf\nA\tcase\tx.vcf\nB\tcontrol\tmissing.vcf\n", "'missing.vcf' of sample 'B' does not exist"),
    ("sample_id\tgroup\n", "needs columns sample_id, condition"),
    ("", "sample sheet is empty"),
])
def test_bad_samples(tmp_path, text, message):
    (tmp_path / "x.vcf").write_text(VCF_HEADER)
    sheet = tmp_path / "samples.tsv"
    sheet.write_text(text)
    with pytest.raises(InputError, match=message):
        read_samples(sheet)


def test_region_table_and_sequences(small_genome, tmp_path, make_fasta):
    fasta, _, _ = small_genome
    ref = Reference.open(fasta)
    t = tmp_path / "regions.tsv"
    t.write_text("#chrom\tstart\tend\tgroup\n1\t0\t100\ta\nchr2\t5\t50\tb\n")
    r = read_region_design(t, ref)
    assert r["chrom"].tolist() == ["chr1", "chr2"] and r["group"].tolist() == ["a", "b"]
    t.write_text("chrom\tstart\tend\tgroup\nchr1\t0\t100\ta\nchr2\t5\t50\ta\n")
    with pytest.raises(InputError, match="'group' column has 1 level"):
        read_region_design(t, ref)
    t.write_text("chrom\tstart\tend\tgroup\nchr1\t0\t100\ta\nchr2\t5\t5000\tb\n")
    with pytest.raises(InputError, match="line 3: interval ends at 5000"):
        read_region_design(t, ref)
    fa_a = make_fasta({"chr1:10-30": "ACGT" * 5}, name="a.fa")
    fa_b = make_fasta({"x2": "GGGG" * 5}, name="b.fa")
    s = read_sequence_design(fasta_by_group={"case": fa_a, "control": fa_b})
    assert s[["region_id", "group", "chrom"]].values.tolist()[0] == ["chr1:10-30", "case", "chr1"]
    assert s["start"].iat[0] == 10 and pd.isna(s["start"].iat[1])
    bad = tmp_path / "seqs.tsv"
    bad.write_text("id\tsequence\tgroup\nq1\tACGZ\ta\nq2\tACGT\tb\n")
    with pytest.raises(InputError, match="'q1' is empty or has non-IUPAC"):
        read_sequence_design(bad)
    assert np.all(read_sequence_design(fasta_by_group={"a": fa_a, "b": fa_b})["sequence"].str.len() == 20)


def test_atlas_windows_stratified_by_chromosome_length():
    # 20 small chromosomes and one large: a uniform draw over all slots leaves some small ones out;
    # the stratified draw gives each its length-proportional share (floor or ceil), for every seed
    sizes = {f"s{i}": 512 * 30 + 100 for i in range(20)} | {"big": 512 * 600 + 100}
    n = 60
    for seed in range(5):
        w = atlas_windows(sizes, n_windows=n, size=512, seed=seed)
        counts = w["chrom"].value_counts()
        # shares: 60 × ~30 / ~1200 = ~1.5 per small chromosome, ~30 for the big one
        assert all(1 <= counts.get(f"s{i}", 0) <= 2 for i in range(20)), (seed, counts.to_dict())
        assert 29 <= counts["big"] <= 31
        assert len(w) == n and set(w["chrom"]) == set(sizes)
        assert w["window_id"].is_unique
        order = pd.Index(list(sizes)).get_indexer(w["chrom"])
        assert (np.diff(order) >= 0).all()  # sorted by chromosome (reference order), then start
        for _, g in w.groupby("chrom"):
            assert (np.diff(g["start"].to_numpy()) >= 512).all()


def test_typed_designs_from_the_config(small_genome, tmp_path):
    from genosae.config import validate_config
    from genosae.genome.designs import (
        CohortDesign,
        RegionDesign,
        SequenceDesign,
        as_design,
        design_from_config,
        design_windows,
    )

    fasta, gff, _ = small_genome
    genes = tmp_path / "genes.txt"
    genes.write_text("GENE2\n")
    seqs = tmp_path / "seqs.tsv"
    seqs.write_text("id\tsequence\tgroup\na\tACGTACGTAC\tx\nb\tTTTTGGGGCC\ty\n")
    config = validate_config({"outdir": str(tmp_path / "out"), "seed": 3,
                              "concepts": {"promoter_upstream": 100, "promoter_downstream": 10},
                              "windows": {"size": 64, "stride": 64},
                              "designs": {"prom": {"kind": "region", "gene_set": str(genes), "max_controls": 5},
                                          "seq": {"kind": "sequence", "sequences": str(seqs)},
                                          "coh": {"kind": "cohort", "simulate": {"n_cases": 3}}}})
    prom = design_from_config(config, "prom")
    assert isinstance(prom, RegionDesign) and prom.unit == "region_id" and prom.kind == "region"
    assert (prom.gene_set, prom.max_controls, prom.promoter_upstream, prom.promoter_downstream, prom.seed) == (
        genes, 5, 100, 10, 3)
    seq = design_from_config(config, "seq")
    assert isinstance(seq, SequenceDesign) and seq.sequences == seqs
    coh = design_from_config(config, "coh")
    assert isinstance(coh, CohortDesign) and coh.unit == "sample_id" and coh.simulate["n_cases"] == 3
    assert coh.samples == tmp_path / "out" / "simulate" / "coh" / "samples.tsv"  # where simulate writes it
    # windows through the typed design, as `genosae windows --design` builds them
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    (ref_dir / "genome.fa").write_bytes(fasta.read_bytes())
    (ref_dir / "annotation.gff3").write_bytes(gff.read_bytes())
    w = design_windows(config, "prom", ref_dir)
    assert set(w["gene"]) == {"GENE1", "GENE2"} and set(w["group"]) == {"case", "control"}
    # GENE2 (-): promoter [TSS + 1 - 10, TSS + 1 + 100) = [1490, 1600), two 64-bp windows
    assert w.loc[w["gene"] == "GENE2", ["start", "end"]].values.tolist() == [[1490, 1554], [1536, 1600]]
    assert design_windows(config, "seq", ref_dir)["sequence"].tolist() == ["ACGTACGTAC", "TTTTGGGGCC"]
    with pytest.raises(InputError, match="sample sheet not found"):  # `genosae simulate` has not run
        design_windows(config, "coh", ref_dir)
    # validated once: unknown names, keys of another kind, equal labels, nothing to build from
    with pytest.raises(InputError, match="no design 'nope'"):
        design_from_config(config, "nope")
    with pytest.raises(InputError, match="gene_set do\\(es\\) not apply to a cohort design"):
        as_design({"kind": "cohort", "gene_set": "x.txt"})
    with pytest.raises(InputError, match="both 'a'"):
        as_design({"kind": "region", "case_label": "a", "control_label": "a"})
    with pytest.raises(InputError, match="needs 'regions' or 'gene_set'"):
        as_design({"kind": "region", "name": "r"}).require_sources()
    assert as_design(prom) is prom and as_design({"kind": "cohort", "name": "toy"}).name == "toy"
