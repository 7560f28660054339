import gzip

import numpy as np
import pytest

from genosae.errors import InputError
from genosae.genome.reference import Reference, reverse_complement


def test_yeast_facts(yeast_genome):
    ref, _ = yeast_genome
    assert len(ref.chrom_sizes) == 16
    assert ref.chroms[0] == "chrI" and ref.chroms[-1] == "chrXVI"
    assert ref.chrom_sizes["chrIII"] == 316_620
    assert sum(ref.chrom_sizes.values()) == 12_071_326
    for alias in ("chrIII", "III", "3", "chr3", "BK006937.2", "BK006937"):
        assert ref.resolve(alias) == "chrIII"


def test_fetch_strands_and_mask(make_fasta):
    ref = Reference.open(make_fasta({"c1": "ACGTacgtNNNNAAC", "c2": "GGGG"}, width=4))
    assert ref.chrom_sizes == {"c1": 15, "c2": 4}
    assert ref.fetch("c1", 0, 8) == "ACGTacgt"
    assert ref.fetch("c1", 2, 6, "-") == "gtAC"
    assert reverse_complement("ACGTNRY") == "RYNACGT"
    assert ref.is_masked("c1", 2, 10).tolist() == [False, False, True, True, True, True, False, False]
    runs = ref.n_runs("c1")
    assert runs[["start", "end"]].values.tolist() == [[8, 12]]


def test_user_alias(make_fasta):
    ref = Reference.open(make_fasta({"NC_001133.9": "ACGT" * 10}), aliases={"yeast1": "NC_001133.9"})
    assert ref.resolve("yeast1") == "NC_001133.9"
    assert ref.resolve("NC_001133") == "NC_001133.9"


def test_bgzip_fasta(tmp_path):
    from Bio import bgzf

    path = tmp_path / "g.fa.gz"
    with bgzf.BgzfWriter(str(path), "wb") as fh:
        fh.write(b">c1\nACGTACGTAC\nGTAC\n")
    ref = Reference.open(path)
    assert ref.fetch("c1", 8, 14) == "ACGTAC"


@pytest.mark.parametrize(("text", "message"), [
    ("ACGT\n>c1\nACGT\n", "no FASTA header"),
    (">c1\nACGT\n>c1\nACGT\n", "duplicate record name 'c1'"),
    (">c1\nACGT\n>c2\nACXT\n", "record 'c2' has non-IUPAC character 'X'"),
    ("", "empty"),
    (">c1\n>c2\nACGT\n", "record 'c1' has no sequence"),
    (">c1\nACGTAC\nAC\nACGTAC\n", "cannot index the FASTA"),
])
def test_bad_fasta(tmp_path, text, message):
    path = tmp_path / "bad.fa"
    path.write_text(text)
    with pytest.raises(InputError, match=message) as err:
        Reference.open(path)
    assert "bad.fa" in str(err.value)


def test_non_iupac_reports_line(tmp_path):
    path = tmp_path / "bad.fa"
    path.write_text(">c1\nACGT\nACGT\n>c2\nAC\nA!\n")
    with pytest.raises(InputError, match=r"bad\.fa, line 6: record 'c2'"):
        Reference.open(path)


def test_fake_gzip(tmp_path):
    path = tmp_path / "genome.fa.gz"
    path.write_text(">c1\nACGT\n")
    with pytest.raises(InputError, match="not gzip-compressed"):
        Reference.open(path)


def test_plain_gzip_refused(tmp_path):
    path = tmp_path / "genome.fa.gz"
    path.write_bytes(gzip.compress(b">c1\nACGT\n"))
    with pytest.raises(InputError, match="bgzip"):
        Reference.open(path)


def test_unknown_chrom_and_range(make_fasta):
    ref = Reference.open(make_fasta({"chrA": "ACGT" * 5}))
    with pytest.raises(InputError, match="unknown chromosome 'chrZ'; known names: chrA"):
        ref.resolve("chrZ")
    with pytest.raises(InputError, match="outside the chromosome"):
        ref.fetch("chrA", 10, 30)
    assert np.array_equal(ref.array("chrA")[:4], np.frombuffer(b"ACGT", np.uint8))


def test_chrom_sort_key_natural_order():
    from genosae.genome.reference import chrom_sort_key

    names = ["chrM", "chrX", "chrIV", "chr10", "chrI", "chrIX", "chr2", "chrXVI", "scaffold_1"]
    assert sorted(names, key=chrom_sort_key) == ["chrI", "chr2", "chrIV", "chrIX", "chrX", "chr10",
                                                  "chrXVI", "chrM", "scaffold_1"]


def test_encode_bases_is_the_one_encoder():
    from genosae.features.motifs import encode_sequences
    from genosae.genome.reference import complement_codes, decode_bases, encode_bases
    from genosae.model.lm import VOCAB, build_tokenizer, token_ids

    every = bytes(range(256))
    codes = encode_bases(every)
    expect = np.full(256, 5, np.uint8)
    for i, b in enumerate(b"ACGTN"):
        expect[b] = expect[b | 0x20] = i
    np.testing.assert_array_equal(codes, expect)
    text = "ACGTNacgtnRYW-"
    np.testing.assert_array_equal(encode_bases(text), encode_bases(text.encode()))
    np.testing.assert_array_equal(encode_bases(np.frombuffer(text.encode(), np.uint8)), encode_bases(text))
    assert "".join(decode_bases(encode_bases(text))) == "ACGTNACGTNNNNN"
    assert "".join(decode_bases(complement_codes(encode_bases("ACGTN")))) == "TGCAN"
    # the callers read it: motif sites merge N and others into 4, the LM gives tokenizer ids
    assert encode_sequences([text])[0].tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 4, 4, 4, 4]
    tok = build_tokenizer()
    assert token_ids(text).tolist() == tok(text, add_special_tokens=False)["input_ids"]
    assert token_ids("R").tolist() == [VOCAB["[UNK]"]]


def test_reference_files_is_the_one_resolver(tmp_path, make_fasta, yeast_reference, monkeypatch):
    import genosae.genome.reference as reference_module
    from genosae.genome.reference import ReferenceFiles, reference_files

    fa = make_fasta({"c1": "ACGT"}, name="mine.fa")
    ann = tmp_path / "mine.gtf"
    ann.write_text("")
    files_cfg = {"reference": {"source": "files", "fasta": str(fa), "annotation": str(ann)}}
    yeast_cfg = {"reference": {"source": "yeast", "cache_dir": str(yeast_reference.fasta.parent)}}
    # 1. explicit paths win over everything
    assert reference_files(yeast_cfg, fasta=fa, annotation=ann) == ReferenceFiles(fa, ann)
    # 2. a reference folder: prepare-reference's names first, else any FASTA / annotation there
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    for name in ("genome.fa", "annotation.gff3", "aaa.fa", "aaa.gtf"):
        (prepared / name).write_text("")
    assert reference_files(files_cfg, reference_dir=prepared) == (prepared / "genome.fa", prepared / "annotation.gff3")
    other = tmp_path / "other"
    other.mkdir()
    (other / "b.fasta").write_text("")
    (other / "a.fa").write_text("")
    assert reference_files(files_cfg, reference_dir=other) == (other / "a.fa", ann)  # the rest from the config
    assert reference_files(files_cfg, reference_dir=tmp_path / "absent") == (fa, ann)
    # 3. the config: files, or the yeast genome built into cache_dir (only with build)
    assert reference_files(files_cfg) == (fa, ann)
    assert reference_files(yeast_cfg) == (yeast_reference.fasta, yeast_reference.gff3)
    assert reference_files(yeast_cfg, build=False) == (None, None)
    missing = {"reference": {"source": "files", "fasta": str(fa), "annotation": None}}
    assert reference_files(missing).require(annotation=False).fasta == fa
    with pytest.raises(InputError, match="no reference annotation") as err:
        reference_files(missing).require()
    assert err.value.record == "reference.annotation"
    with pytest.raises(InputError, match="no reference FASTA"):
        reference_files({"reference": {"source": "files"}}).require(annotation=False)
    # 4. no config: the FASTA given, else the bundled yeast genome
    assert reference_files(fasta=fa) == (fa, None)
    monkeypatch.setattr(reference_module, "DEFAULT_YEAST_CACHE", str(yeast_reference.fasta.parent))
    assert reference_files().fasta == yeast_reference.fasta
