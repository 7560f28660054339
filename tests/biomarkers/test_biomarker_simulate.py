"""simulate writes valid VCFs whose application puts the motif into the case haplotypes."""

import numpy as np
import pandas as pd
import pytest

from genosae.biomarkers import resolve_motif, simulate_cohort
from genosae.biomarkers.simulate import apply_snvs
from genosae.errors import InputError
from genosae.genome.reference import reverse_complement


@pytest.fixture
def tiny_genome(tmp_path):
    rng = np.random.default_rng(0)
    seqs = {c: "".join(rng.choice(list("ACGT"), 60_000)) for c in ("chrA", "chrB")}
    fa = tmp_path / "g.fa"
    fa.write_text("".join(f">{c}\n{s}\n" for c, s in seqs.items()))
    lines = ["##gff-version 3"]
    for c in seqs:
        for i in range(12):
            start, strand = 2000 + i * 4500, "+-"[i % 2]
            lines.append(f"{c}\tsim\tgene\t{start + 1}\t{start + 1000}\t.\t{strand}\t.\t"
                         f"ID=gene:{c}G{i};Name=G{c[-1]}{i};locus_tag={c}G{i}")
            lines.append(f"{c}\tsim\tCDS\t{start + 1}\t{start + 1000}\t.\t{strand}\t0\t"
                         f"ID=cds:{c}G{i};Name=G{c[-1]}{i};locus_tag={c}G{i}")  # coding genes
    gff = tmp_path / "a.gff3"
    gff.write_text("\n".join(lines) + "\n")
    return fa, gff, seqs


def _read_vcf(path):
    rows = [line.split("\t") for line in path.read_text().splitlines() if not line.startswith("#")]
    return pd.DataFrame(rows, columns=["chrom", "pos", "id", "ref", "alt", "qual", "filter",
                                       "info", "format", "gt"]).astype({"pos": int})


def test_vcfs_plant_motif_in_carriers(tiny_genome, tmp_path):
    cyvcf2 = pytest.importorskip("cyvcf2")
    fa, gff, seqs = tiny_genome
    sim = simulate_cohort(fa, gff, tmp_path / "sim", n_cases=4, n_controls=3, n_genes=4,
                          motif="TTACCCGG", fraction_cases=0.75, background_snv_rate=0.01, seed=3)
    assert len(sim.regions) == 12 and len(sim.truth) == 4
    assert list(pd.read_csv(tmp_path / "sim" / "samples.tsv", sep="\t").columns) == [
        "sample_id", "condition", "vcf", "age"]
    bed = pd.read_csv(tmp_path / "sim" / "regions.bed", sep="\t", header=None)
    assert bed.shape == (12, 6) and (bed[2] - bed[1]).eq(500).all()
    carriers = set(sim.truth["carriers"].iloc[0].split(","))
    assert len(carriers) == 3
    for s in sim.samples.itertuples():
        n = sum(1 for _ in cyvcf2.VCF(s.vcf))  # parses as valid VCF
        v = _read_vcf(pd.io.common.Path(s.vcf))
        assert n == len(v) and v["ref"].str.len().eq(1).all()
        # REF matches the reference genome
        assert all(seqs[c][p - 1] == r for c, p, r in zip(v["chrom"], v["pos"], v["ref"]))
        for t in sim.truth.itertuples():
            region_seq = seqs[t.chrom][t.start:t.end]
            hap1 = v[v["gt"].str.split("|").str[0] == "1"]
            hap1 = hap1[(hap1["chrom"] == t.chrom) & (hap1["pos"] > t.start) & (hap1["pos"] <= t.end)]
            seq = apply_snvs(region_seq, t.start, hap1["pos"].to_numpy() - 1, hap1["alt"].to_numpy())
            site = seq[t.motif_start - t.start:t.motif_end - t.start]
            expect = t.motif if t.strand == "+" else reverse_complement(t.motif)
            if s.sample_id in carriers:
                assert site == expect
            else:
                assert "PLANTED" not in ";".join(v["info"])
                if t.n_snvs:
                    assert site != expect


def test_fasta_mode_and_motif_resolution(tiny_genome, tmp_path):
    fa, gff, _ = tiny_genome
    sim = simulate_cohort(fa, gff, tmp_path / "simfa", n_cases=2, n_controls=2, n_genes=2,
                          motif=np.eye(4)[[3, 3, 0, 1, 1, 1, 2]], fraction_cases=1.0,
                          background_snv_rate=0.0, mode="fasta", seed=1)
    assert sim.motif == "TTACCCG"
    case_fa = sim.samples.loc[0, "fasta"]
    text = open(case_fa).read().splitlines()
    recs = {text[i][1:].split()[0]: text[i + 1] for i in range(0, len(text), 2)}
    t = sim.truth.iloc[0]
    expect = t.motif if t.strand == "+" else reverse_complement(t.motif)
    for h in ("h1", "h2"):
        seq = recs[f"{t.region_id}|{h}"]
        assert seq[t.motif_start - t.start:t.motif_end - t.start] == expect
    assert resolve_motif("ttacccg") == ("TTACCCG", "consensus")
    with pytest.raises(InputError):
        simulate_cohort(fa, gff, tmp_path / "x", n_genes=100)


def test_unknown_motif_name_is_an_error_not_reb1():
    consensus, motif_id = resolve_motif("REB1")
    assert consensus == "ATTACCCGG" and motif_id.endswith("REB1")
    with pytest.raises(InputError, match="'REB9'") as err:
        resolve_motif("REB9")
    text = str(err.value)
    assert "Closest: REB1" in text and "load_jaspar" in text and "simulate.motif" in text
    with pytest.raises(InputError, match="not a JASPAR"):
        resolve_motif("NOT_A_MOTIF_XYZ")
