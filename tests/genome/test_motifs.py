import numpy as np
import pytest

from genosae.errors import InputError
from genosae.genome.motifs import (
    Motif,
    load_jaspar,
    motif_concepts,
    read_motif_file,
    scan_motifs,
    write_meme,
)
from genosae.genome.reference import Reference, reverse_complement


def _planted():
    site = "TTACCCGGAT"
    pwm = np.full((len(site), 4), 0.01)
    pwm[np.arange(len(site)), ["ACGT".index(b) for b in site]] = 0.97
    seq = list(np.random.default_rng(7).choice(list("ACGT"), 2000))
    seq[100:110] = site
    seq[1500:1510] = reverse_complement(site)
    return Motif("TEST1", "planted", pwm / pwm.sum(1, keepdims=True)), "".join(seq)


def test_planted_sites_both_strands(make_fasta):
    motif, seq = _planted()
    hits = scan_motifs([motif], {"s1": seq}, threshold=1e-5)
    found = hits[["chrom", "start", "end", "strand", "motif_id", "motif_name"]].values.tolist()
    assert ["s1", 100, 110, "+", "TEST1", "planted"] in found
    assert ["s1", 1500, 1510, "-", "TEST1", "planted"] in found
    assert len(found) == 2
    assert (hits["p_value"] < 1e-5).all()
    ref = Reference.open(make_fasta({"chrA": seq}))
    again = scan_motifs([motif], ref, threshold=1e-5)
    assert again[["start", "strand"]].values.tolist() == [[100, "+"], [1500, "-"]]
    c = motif_concepts(again)
    assert set(c["concept"]) == {"motif:TEST1 planted"}
    assert list(c.columns) == ["chrom", "start", "end", "strand", "concept", "name"]


def test_meme_and_jaspar_roundtrip(tmp_path):
    motif, _ = _planted()
    path = tmp_path / "m.meme"
    write_meme([motif], path)
    back = read_motif_file(path)
    assert back[0].id == "TEST1" and back[0].name == "planted"
    np.testing.assert_allclose(back[0].pwm, motif.pwm, atol=1e-6)
    jas = tmp_path / "m.jaspar"
    jas.write_text(">MA9999.1 FOO\nA [ 10 0 0 ]\nC [ 0 10 0 ]\nG [ 0 0 5 ]\nT [ 0 0 5 ]\n")
    m = read_motif_file(jas)[0]
    assert (m.id, m.name, m.consensus[:2]) == ("MA9999.1", "FOO", "AC")
    np.testing.assert_allclose(m.pwm[2], [0, 0, 0.5, 0.5])


def test_load_jaspar_fungi():
    motifs = load_jaspar()
    assert len(motifs) > 100
    reb1 = [m for m in motifs if m.name.upper() == "REB1"]
    assert reb1 and "TTACCCG" in reb1[0].consensus
    assert all(np.allclose(m.pwm.sum(1), 1) for m in motifs)


@pytest.mark.parametrize(("text", "message"), [
    ("MOTIF X\nletter-probability matrix: w= 2\n0.5 0.5 0\n0.2 0.3 0.5 0\n", "a row needs 4 numbers"),
    ("MOTIF X\n", "no 'letter-probability matrix' line"),
    ("hello\n", "not a MEME or JASPAR"),
    ("", "empty"),
    (">M1 A\nA [1 2]\nC [1]\nG [1 2]\nT [1 2]\n", "differ in length"),
])
def test_bad_motif_files(tmp_path, text, message):
    path = tmp_path / "bad.meme"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        read_motif_file(path)


def test_unknown_jaspar_release():
    with pytest.raises(InputError, match=r"JASPAR1999.*available: JASPAR"):
        load_jaspar("JASPAR1999")


def test_fimo_hits_become_one_site_per_palindrome_for_motif_capture():
    """A palindromic site is hit on both strands; motif capture counts it once (genome → features contract)."""
    from genosae.features.motif_capture import motif_sites

    site = "GTGACGTCAC"  # its own reverse complement
    assert reverse_complement(site) == site
    pwm = np.full((len(site), 4), 0.01)
    pwm[np.arange(len(site)), ["ACGT".index(b) for b in site]] = 0.97
    motif = Motif("PAL1", "pal", pwm / pwm.sum(1, keepdims=True))
    seq = list(np.random.default_rng(3).choice(list("ACGT"), 3000))
    for s in (200, 1200, 2500):
        seq[s:s + len(site)] = site
    hits = scan_motifs([motif], {"s1": "".join(seq)}, threshold=1e-5)
    assert len(hits) == 6 and set(hits["strand"]) == {"+", "-"}
    sites = motif_sites(motif_concepts(hits))
    assert sites[["start", "end"]].values.tolist() == [[200, 210], [1200, 1210], [2500, 2510]]
    assert set(sites["motif_id"]) == {"PAL1"} and set(sites["motif_name"]) == {"pal"}
