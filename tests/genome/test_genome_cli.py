import gzip
import json

import pandas as pd
import yaml

from genosae.cli import main


def test_prepare_reference_and_windows(small_genome, tmp_path, capsys):
    fasta, gff, _ = small_genome
    motifs = tmp_path / "m.meme"
    motifs.write_text("MEME version 4\n\nMOTIF T1 TATA\nletter-probability matrix: alength= 4 w= 4\n"
                      "0 0 0 1\n1 0 0 0\n0 0 0 1\n1 0 0 0\n")
    genes = tmp_path / "genes.txt"
    genes.write_text("GENE2\n")
    seqs = tmp_path / "seqs.tsv"
    seqs.write_text("id\tsequence\tgroup\nq1\t" + "ACGT" * 40 + "\ta\nq2\t" + "GGCA" * 10 + "\tb\n")
    config = {"reference": {"source": "files", "fasta": str(fasta), "annotation": str(gff)},
              "motifs": {"source": "file", "file": str(motifs), "pvalue": 1e-2},
              "atlas": {"n_windows": 10, "holdout_chroms": ["chr2"]},
              "windows": {"size": 64, "stride": 32},
              "model": {"path": str(tmp_path)},
              "designs": {"prom": {"kind": "region", "gene_set": str(genes)},
                          "seq": {"kind": "sequence", "sequences": str(seqs)}}}
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    out = tmp_path / "ref"
    assert main(["prepare-reference", "--config", str(cfg), "--outdir", str(out)]) == 0
    for name in ("genome.fa", "genome.fa.fai", "annotation.gff3", "chrom_sizes.tsv", "concepts.tsv.gz",
                 "motifs.meme", "motif_hits.tsv.gz", "summary.json"):
        assert (out / name).exists(), name
    concepts = pd.read_csv(out / "concepts.tsv.gz", sep="\t")
    assert "motif:T1 TATA" in set(concepts["concept"]) and "CDS" in set(concepts["concept"])
    assert json.loads((out / "summary.json").read_text())["n_chroms"] == 2
    with gzip.open(out / "motif_hits.tsv.gz", "rt") as fh:
        assert fh.readline().strip().split("\t")[:4] == ["chrom", "start", "end", "strand"]
    atlas = tmp_path / "atlas.windows.tsv"
    assert main(["windows", "--config", str(cfg), "--reference-dir", str(out), "--atlas", "--out", str(atlas)]) == 0
    w = pd.read_csv(atlas, sep="\t")
    assert len(w) == 10 and set(w.loc[w["chrom"] == "chr2", "split"]) <= {"holdout"}
    prom = tmp_path / "prom.windows.tsv"
    assert main(["windows", "--config", str(cfg), "--reference-dir", str(out), "--design", "prom",
                 "--out", str(prom)]) == 0
    w = pd.read_csv(prom, sep="\t")
    assert set(w["group"]) == {"case", "control"} and (w["end"] - w["start"] == 64).all()
    sq = tmp_path / "seq.windows.tsv"
    assert main(["windows", "--config", str(cfg), "--reference-dir", str(out), "--design", "seq",
                 "--out", str(sq)]) == 0
    w = pd.read_csv(sq, sep="\t")
    assert w["sequence"].str.len().max() == 64 and set(w["group"]) == {"a", "b"}
    assert main(["windows", "--config", str(cfg), "--reference-dir", str(out), "--design", "nope",
                 "--out", str(sq)]) == 2
    assert "no design 'nope'" in capsys.readouterr().err
