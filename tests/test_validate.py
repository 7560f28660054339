import pytest
import yaml

from genosae.errors import InputError
from genosae.validate import validate_inputs


def _config(tmp_path, small_genome, **over):
    fasta, gff, _ = small_genome
    motifs = tmp_path / "m.meme"
    motifs.write_text("MOTIF T1 X\nletter-probability matrix: w= 2\n1 0 0 0\n0 1 0 0\n")
    cfg = {"reference": {"source": "files", "fasta": str(fasta), "annotation": str(gff)},
           "motifs": {"source": "file", "file": str(motifs)}, "model": {"path": str(tmp_path)}}
    cfg.update(over)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_validate_ok(tmp_path, small_genome):
    genes = tmp_path / "genes.txt"
    genes.write_text("GENE1\nMISSING1\n")
    summary = validate_inputs(_config(tmp_path, small_genome,
                                      designs={"p": {"kind": "region", "gene_set": str(genes)}}))
    assert "2 sequences" in summary and "1 genes matched, 1 unknown (MISSING1)" in summary


@pytest.mark.parametrize(("over", "message"), [
    ({"bogus": 1}, "unknown key"),
    ({"threads": "two"}, "key 'threads'"),
    ({"motifs": {"source": "file", "file": "/no/such.meme"}}, "does not exist"),
])
def test_validate_config_errors(tmp_path, small_genome, over, message):
    with pytest.raises(InputError, match=message):
        validate_inputs(_config(tmp_path, small_genome, **over))


def test_validate_opens_samples(tmp_path, small_genome):
    sheet = tmp_path / "samples.tsv"
    sheet.write_text("sample_id\tcondition\tfasta\nA\tcase\tnope.fa\nB\tcontrol\tnope.fa\n")
    bed = tmp_path / "regions.bed"
    bed.write_text("chr1\t0\t100\tr1\n")
    with pytest.raises(InputError, match=r"'nope\.fa' of sample 'A' does not exist"):
        validate_inputs(_config(tmp_path, small_genome,
                                designs={"c": {"kind": "cohort", "samples": str(sheet),
                                               "regions": str(bed)}}))


def test_validate_bad_fasta(tmp_path, small_genome):
    bad = tmp_path / "bad.fa"
    bad.write_text(">a\nACGT\n>a\nACGT\n")
    path = _config(tmp_path, small_genome)
    cfg = yaml.safe_load(path.read_text())
    cfg["reference"]["fasta"] = str(bad)
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(InputError, match="duplicate record name 'a'"):
        validate_inputs(path)
