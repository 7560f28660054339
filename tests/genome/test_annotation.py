import pytest

from genosae.errors import InputError
from genosae.genome.annotation import read_annotation, write_gff3
from genosae.genome.reference import Reference


def test_yeast_annotation(yeast_genome):
    _, a = yeast_genome
    act1 = a[(a["name"] == "ACT1") & (a["feature"] == "CDS")].sort_values("start")
    # GenBank YFL039C: complement(join(53260..54377, 54687..54696))
    assert act1[["chrom", "start", "end", "strand"]].values.tolist() == [
        ["chrVI", 53259, 54377, "-"], ["chrVI", 54686, 54696, "-"]]
    assert set(act1["gene_id"]) == {"YFL039C"}
    assert 5800 < a.loc[a["feature"] == "CDS", "gene_id"].nunique() < 6600
    assert (a["feature"] == "tRNA").sum() > 250


def test_formats_agree(make_fasta, tmp_path):
    ref = Reference.open(make_fasta({"chrI": "A" * 1000}))
    gtf = tmp_path / "a.gtf"
    gtf.write_text('I\tsrc\tCDS\t11\t40\t.\t-\t0\tgene_id "YX1"; transcript_id "T1"; gene_name "ABC1";\n')
    bed = tmp_path / "a.bed"
    bed.write_text("track name=x\nchrI\t10\t40\tABC1\t0\t-\n")
    g = read_annotation(gtf, ref)
    b = read_annotation(bed, ref)
    assert g[["chrom", "start", "end", "strand", "name", "gene_id", "parent", "phase"]].iloc[0].tolist() \
        == ["chrI", 10, 40, "-", "ABC1", "YX1", "T1", 0]
    assert b[["chrom", "start", "end", "strand", "name"]].iloc[0].tolist() == ["chrI", 10, 40, "-", "ABC1"]
    out = tmp_path / "norm.gff3"
    write_gff3(g, out, ref.chrom_sizes)
    again = read_annotation(out, ref)
    assert again[["chrom", "start", "end", "strand", "name", "gene_id", "phase"]].equals(
        g[["chrom", "start", "end", "strand", "name", "gene_id", "phase"]])


@pytest.mark.parametrize(("name", "text", "message"), [
    ("a.gff3", "chrI\ts\tgene\t10\t2000\t.\t+\t.\tID=g\n", r"line 1: interval ends at 2000, past the end"),
    ("a.gff3", "##gff-version 3\nchrI\ts\tgene\t50\t20\t.\t+\t.\tID=g\n", r"line 2: start > end"),
    ("a.gff3", "chrQ\ts\tgene\t1\t20\t.\t+\t.\tID=g\n", r"line 1: unknown chromosome 'chrQ'"),
    ("a.gff3", "chrI\ts\tgene\t1\t20\n", r"line 1: a GFF3 line needs 9 tab-separated columns"),
    ("a.gff3", "chrI\ts\tgene\tx\t20\t.\t+\t.\tID=g\n", r"line 1: start/end must be integers"),
    ("a.bed", "chrI\t0\t1001\n", r"line 1: interval ends at 1001"),
    ("a.bed", "chrI\t0\t10\nchrI\t30\t10\n", r"line 2: start > end"),
    ("a.bed", "# header\nchrM\t0\t10\n", r"line 2: unknown chromosome 'chrM'"),
    ("a.bed", "# only a comment\n", "has no features"),
    ("a.gtf", 'chrI\ts\tCDS\t1\t9\t.\t*\t0\tgene_id "g";\n', "strand must be"),
])
def test_bad_annotation(make_fasta, tmp_path, name, text, message):
    ref = Reference.open(make_fasta({"chrI": "ACGT" * 250}))
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        read_annotation(path, ref)
