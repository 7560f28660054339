"""genosae annotate: bigWig values equal activations computed directly, both strands; elements and
labels from the catalogue; browser files; one-line errors."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pyBigWig
import pytest
import torch
from tiny_lms import random_dna
from tracks_helpers import BATCH, D_SAE, REGION, STRIDE, WINDOW, make_run

from genosae.cli import main
from genosae.genome.reference import reverse_complement
from genosae.tracks import annotate, window_layout
from genosae.tracks.annotate import _Elements


# ------------------------------------------------------------------ the direct computation
def direct_values(run, seq: str) -> dict[str, np.ndarray]:
    """Per-base codes ``[len(seq), d_sae]`` per strand, computed window by window with plain loops:
    each base from the window where it is most central (earlier window on a tie)."""
    L = len(seq)
    starts = [0] if L <= WINDOW else sorted({*range(0, L - WINDOW, STRIDE), L - WINDOW})
    out = {s: np.zeros((L, D_SAE), np.float32) for s in "+-"}
    best = np.full(L, -1)
    for s in starts:
        w = seq[s:s + WINDOW]
        n = len(w)
        cent = np.array([min(p, n - 1 - p) for p in range(n)])
        take = cent > best[s:s + n]
        for strand in "+-":
            acts, spans = run.adapter.hidden_states([w if strand == "+" else reverse_complement(w)])[0]
            with torch.no_grad():
                codes = run.sae.encode(acts).numpy()
            per = np.zeros((n, D_SAE), np.float32)
            for t in range(len(acts)):
                if spans.is_special[t]:
                    continue
                for p in range(spans.bp_start[t], spans.bp_end[t]):
                    per[p if strand == "+" else n - 1 - p] = codes[t]
            out[strand][s:s + n][take] = per[take]
        best[s:s + n] = np.maximum(best[s:s + n], cent)
    return out


def runs_above(v: np.ndarray, thr: float) -> list[tuple[int, int, float]]:
    out, i = [], 0
    while i < len(v):
        if v[i] > thr:
            j = i
            while j < len(v) and v[j] > thr:
                j += 1
            out.append((i, j, float(v[i:j].max())))
            i = j
        else:
            i += 1
    return out


def read_elements(path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", comment=None, keep_default_na=False).rename(columns=lambda c: c.lstrip("#"))


# ------------------------------------------------------------------------------ the tests
@pytest.fixture(scope="module")
def region_run(cnn_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("annot")
    chrom, start, end = REGION
    paths = annotate(cnn_run.config, outdir=out, region=f"{chrom}:{start}-{end}", progress=False)
    return cnn_run, out, paths, direct_values(cnn_run, cnn_run.reference.fetch(chrom, start, end))


def test_bigwig_equals_direct_activations_both_strands(region_run):
    run, _out, paths, expected = region_run
    chrom, start, end = REGION
    named = [f for f, lab in run.catalog["label"].items() if lab != "unassigned"]
    assert sorted(p.name for p in paths["tracks"].glob("*.bw")) == sorted(
        f"{f}.{tag}.bw" for f in named for tag in ("plus", "minus"))
    for f in named:
        j = int(f[1:])
        for strand, tag in (("+", "plus"), ("-", "minus")):
            bw = pyBigWig.open(str(paths["tracks"] / f"{f}.{tag}.bw"))
            assert bw.chroms() == run.reference.chrom_sizes  # proper header: every chromosome, FASTA order
            got = np.asarray(bw.values(chrom, start, end))
            np.testing.assert_allclose(got, expected[strand][:, j], rtol=1e-5, atol=1e-6)
            assert np.isnan(bw.values(chrom, start - 1, start)[0]) and np.isnan(bw.values(chrom, end, end + 1)[0])
            iv = np.array(bw.intervals(chrom))
            assert (iv[1:, 0] >= iv[:-1, 1]).all() and (iv[:, 1] > iv[:, 0]).all()  # sorted, non-overlapping
            bw.close()
        assert not np.allclose(expected["+"][:, j], expected["-"][:, j])  # the strands really differ
        bg = (paths["tracks"] / f"{f}.plus.bedGraph").read_text().splitlines()
        assert bg[0].startswith("track type=bedGraph")
        rows = np.array([line.split("\t")[1:] for line in bg[1:]], dtype=float)
        per_base = np.repeat(rows[:, 2], (rows[:, 1] - rows[:, 0]).astype(int))
        np.testing.assert_allclose(per_base, expected["+"][:, j], rtol=1e-6, atol=1e-6)
    meta = pd.read_json(paths["params"], typ="series")
    assert meta["n_windows"] == 15 and meta["windows"]["batch_size"] == BATCH


def test_elements_follow_the_threshold_rule_and_carry_catalogue_labels(region_run):
    run, _out, paths, expected = region_run
    _chrom, start, _ = REGION
    el = read_elements(paths["elements"])
    assert list(el.columns[:6]) == ["chrom", "start", "end", "name", "score", "strand"]
    assert (el["label"] == run.catalog.loc[el["feature"], "label"].to_numpy()).all()
    assert (el["label"] != "unassigned").all()
    want = []
    for f in sorted(set(run.catalog.index[run.catalog["label"] != "unassigned"])):
        j = int(f[1:])
        thr = run.catalog.loc[f, "threshold"] * run.catalog.loc[f, "max_activation"]
        for strand in "+-":
            want += [(start + a, start + b, f, strand, m) for a, b, m in runs_above(expected[strand][:, j], thr)]
    got = list(zip(el["start"], el["end"], el["feature"], el["strand"], el["max_activation"], strict=True))
    assert sorted(g[:4] for g in got) == sorted(w[:4] for w in want) and len(want) > 3
    np.testing.assert_allclose(sorted(g[4] for g in got), sorted(w[4] for w in want), rtol=1e-5)
    assert (el["start"].diff().dropna() >= 0).all() and el["score"].between(0, 1000).all()
    summary = pd.read_csv(paths["summary"], sep="\t", keep_default_na=False)
    counts = el.groupby(["feature", "strand"]).size()
    assert dict(zip(zip(summary["feature"], summary["strand"], strict=True), summary["n_elements"], strict=True)) \
        == counts.to_dict()
    assert set(summary["seq_id"]) == {"chrXVI:20000-21000"}
    assert (summary["label"] == run.catalog.loc[summary["feature"], "label"].to_numpy()).all()


def test_browser_session_and_trackdb_open_the_tracks(region_run):
    _run, out, paths, _ = region_run
    root = ET.parse(paths["igv_session"]).getroot()
    assert root.tag == "Session" and root.get("locus") == "chrXVI:20001-21000"
    assert root.get("genome").endswith("genome.fa")
    res = [r.get("path") for r in root.iter("Resource")]
    for p in res:
        assert (out / p).exists()  # relative to the session, or absolute (outside the output folder)
    assert any(p.endswith(".gff3") for p in res) and "elements.bed" in res
    assert sum(p.endswith(".bw") for p in res) == len(list(paths["tracks"].glob("*.bw")))
    trackdb = paths["trackdb"].read_text()
    assert trackdb.count("bigDataUrl tracks/") == len(list(paths["tracks"].glob("*.bw")))
    assert "container multiWig" in trackdb


def test_fasta_records_keep_coordinates_or_get_their_own(region_run, tmp_path, make_fasta):
    run, _, _paths, expected = region_run
    chrom, start, end = REGION
    own = random_dna(300, 4)
    fasta = make_fasta({f"{chrom}:{start}-{end}": run.reference.fetch(chrom, start, end), "my_seq": own})
    rc = main(["annotate", "--config", str(run.config), "--fasta", str(fasta), "--outdir", str(tmp_path / "fa"),
               "--features", "f3,f10", "--no-progress"])
    assert rc == 0
    mine = direct_values(run, own)
    for f in ("f3", "f10"):
        for strand, tag in (("+", "plus"), ("-", "minus")):
            bw = pyBigWig.open(str(tmp_path / "fa" / "tracks" / f"{f}.{tag}.bw"))
            assert bw.chroms(chrom) == run.reference.chrom_sizes[chrom] and bw.chroms("my_seq") == 300
            np.testing.assert_allclose(bw.values(chrom, start, end), expected[strand][:, int(f[1:])], rtol=1e-5,
                                       atol=1e-6)
            np.testing.assert_allclose(bw.values("my_seq", 0, 300), mine[strand][:, int(f[1:])], rtol=1e-5,
                                       atol=1e-6)
            bw.close()
    session = ET.parse(tmp_path / "fa" / "igv_session.xml").getroot()
    assert session.get("genome") == str(fasta.resolve())  # own records: the FASTA is the genome


@pytest.mark.parametrize(("args", "needle"), [
    (["--region", "chrXVI:5000-1000"], "--region"),
    (["--region", "chrXVI:0-99999999"], "--region"),
    (["--region", "chrNope:1-100"], "unknown chromosome"),
    (["--region", "chrXVI"], "chrom:start-end"),
    (["--fasta", "/no/such/file.fa"], "/no/such/file.fa: FASTA file not found"),
    (["--region", "chrXVI:1-200", "--features", "f99"], "f99"),
])
def test_bad_inputs_give_one_input_error_line(cnn_run, tmp_path, capsys, args, needle):
    rc = main(["annotate", "--config", str(cnn_run.config), "--outdir", str(tmp_path / "x"), "--no-progress", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "Traceback" not in "".join(err)
    assert err[-1].startswith("genosae annotate: error:") and needle in err[-1]  # one line (after any load bars)


def test_mislabelled_sae_is_refused(cnn_run, tmp_path, capsys):
    import json

    sae_dir = cnn_run.outdir / "sae" / "seed0"
    bad = tmp_path / "sae"
    bad.mkdir()
    for p in sae_dir.iterdir():
        (bad / p.name).write_bytes(p.read_bytes())
    cfg = json.loads((bad / "cfg.json").read_text())
    cfg["metadata"]["layer"] = 1
    (bad / "cfg.json").write_text(json.dumps(cfg))
    rc = main(["annotate", "--config", str(cnn_run.config), "--outdir", str(tmp_path / "x"), "--region",
               "chrXVI:1-200", "--sae", str(bad), "--no-progress"])
    assert rc == 2 and "trained on layer 1" in capsys.readouterr().err


def test_multibase_tokens_map_to_every_base(yeast_reference, tmp_path):
    """6-mer tokens (CLS first) of an attention model: every token sees its whole window, so this also
    pins the most-central stitching (the tiny CNN's receptive field is too short to tell windows apart)."""
    run = make_run(tmp_path, "nt_fast", yeast_reference)
    seq = run.reference.fetch("chrXVI", 30_000, 30_400)
    paths = annotate(run.config, outdir=tmp_path / "o", region="chrXVI:30000-30400", features="f0,f7", progress=False)
    exp = direct_values(run, seq)
    for f in ("f0", "f7"):
        for strand, tag in (("+", "plus"), ("-", "minus")):
            with pyBigWig.open(str(paths["tracks"] / f"{f}.{tag}.bw")) as bw:
                np.testing.assert_allclose(bw.values("chrXVI", 30_000, 30_400), exp[strand][:, int(f[1:])],
                                           rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------ unit pieces
@pytest.mark.parametrize(("length", "size", "stride"), [(1000, 128, 64), (1000, 128, 100), (700, 128, 128),
                                                        (90, 128, 64), (129, 128, 1), (1000, 200, 37)])
def test_window_layout_tiles_and_picks_the_most_central_window(length, size, stride):
    start, end, own_s, own_e = window_layout(length, size, stride)
    assert own_s[0] == 0 and own_e[-1] == length and (own_s[1:] == own_e[:-1]).all()
    assert (start[1:] - start[:-1] <= stride).all() and end[-1] == length
    cent = np.full(length, -1)
    owner = np.zeros(length, int)
    for i, (s, e) in enumerate(zip(start, end, strict=True)):
        c = np.minimum(np.arange(e - s), np.arange(e - s)[::-1])
        better = c > cent[s:e]
        owner[s:e][better] = i
        cent[s:e] = np.maximum(cent[s:e], c)
    assert (np.repeat(np.arange(len(start)), own_e - own_s) == owner).all()


def test_elements_join_across_stretches():
    rng = np.random.default_rng(0)
    vals = (rng.random((500, 5)) * (rng.random((500, 5)) < 0.6)).astype(np.float32)
    thr = np.array([0.0, 0.2, 0.5, 0.9, 2.0], np.float32)
    whole = _Elements(thr)
    whole.add(1000, vals)
    parts = _Elements(thr)
    cuts = [0, 1, 2, 60, 61, 250, 499, 500]
    for a, b in itertools.pairwise(cuts):
        parts.add(1000 + a, vals[a:b])
    key = ["feature_index", "start"]
    pd.testing.assert_frame_equal(whole.table().sort_values(key).reset_index(drop=True),
                                  parts.table().sort_values(key).reset_index(drop=True))
    ref = sorted((1000 + a, 1000 + b, f) for f in range(5) for a, b, _ in runs_above(vals[:, f], thr[f]))
    t = whole.table()
    assert sorted(zip(t["start"], t["end"], t["feature_index"], strict=True)) == ref


def test_threshold_rule_order():
    from genosae.tracks import element_thresholds

    cat = pd.DataFrame({"best_concept": ["tRNA", "CDS", "CDS"], "threshold": [0.5, 0.5, np.nan],
                        "max_activation": [4.0, 2.0, 3.0]}, index=["f0", "f1", "f2"])
    align = pd.DataFrame({"feature": ["f0", "f0", "f1"], "concept": ["tRNA", "CDS", "tRNA"],
                          "threshold_abs": [1.5, 9.0, 7.0]})
    thr, rule = element_thresholds(cat, ["f0", "f1", "f2"], align)
    assert thr.tolist() == [1.5, 1.0, 0.0]  # alignment row of the best concept; fraction x max; none
    assert rule == ["alignment.parquet threshold_abs", "threshold x max_activation", "none: > 0"]
    thr, rule = element_thresholds(cat.assign(threshold_abs=[0.25, np.nan, np.nan]), ["f0", "f1"], align)
    assert thr.tolist() == [0.25, 1.0] and rule[0] == "threshold_abs"
    assert element_thresholds(None, ["f3"])[0].tolist() == [0.0]


def test_no_elements_still_writes_every_file(cnn_run, tmp_path):
    cat = cnn_run.catalog.reset_index().assign(threshold_abs=1e9)
    cat.to_csv(tmp_path / "cat.csv", index=False)
    paths = annotate(cnn_run.config, outdir=tmp_path / "o", region="chrXVI:1000-1200", catalog=tmp_path / "cat.csv",
                     features="f1", progress=False)
    assert paths["elements"].read_text().startswith("#chrom\tstart") and len(paths["elements"].read_text().splitlines()) == 1
    assert pd.read_csv(paths["summary"], sep="\t").empty
    assert {p.name for p in paths["tracks"].iterdir()} == {"f1.plus.bw", "f1.minus.bw", "f1.plus.bedGraph",
                                                          "f1.minus.bedGraph"}
