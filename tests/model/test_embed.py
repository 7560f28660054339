"""embed_windows: reference coordinates on both strands, resume after a kill, parallel parts + merge."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from tiny_lms import random_dna

from genosae.errors import InputError
from genosae.genome.reference import reverse_complement
from genosae.model import embed as embed_mod
from genosae.model.adapter import load_model
from genosae.model.embed import embed_windows, fasta_sequences
from genosae.model.store import ActivationStore, merge_stores

CHROMS = {"chrA": random_dna(400, 11, with_n=True), "chrB": random_dna(300, 12)}


@pytest.fixture(scope="module")
def fasta(tmp_path_factory):
    path = tmp_path_factory.mktemp("ref") / "genome.fa"
    path.write_text("".join(f">{c}\n{s}\n" for c, s in CHROMS.items()))
    return path


def _windows() -> pd.DataFrame:
    rows = []
    for i in range(9):
        chrom = "chrA" if i % 2 == 0 else "chrB"
        s = 17 * i
        rows.append((f"w{i}", chrom, s, s + 40 + i, "-" if i % 3 == 0 else "+", f"r{i}", None))
    rows.append(("hap", "chrA", 100, 140, "+", "r9", random_dna(43, 99)))  # haplotype with an insertion
    # a minus-strand haplotype given in window orientation (as cohort_windows writes them)
    rows.append(("hapm", "chrB", 50, 90, "-", "r10", reverse_complement(CHROMS["chrB"][50:90])))
    return pd.DataFrame(rows, columns=["window_id", "chrom", "start", "end", "strand", "region_id", "sequence"])


@pytest.fixture(scope="module")
def cnn(model_dirs):
    return load_model(model_dirs["cnn"], layer=2)


def _assert_same_store(a: ActivationStore, b: ActivationStore) -> None:
    assert [s["window_range"] for s in a.shards] == [s["window_range"] for s in b.shards]
    for x, y in zip(a.iter_shards(), b.iter_shards()):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


@pytest.mark.parametrize("family", ["nt_fast", "bpe"])
@pytest.mark.parametrize("rc", [False, True])
def test_reference_coordinates(model_dirs, fasta, tmp_path, family, rc):
    ad = load_model(model_dirs[family], layer=1)
    w = _windows()
    store = embed_windows(ad, w, fasta_sequences(fasta), tmp_path / "s", windows_per_shard=4, batch_size=3,
                          storage_dtype="float32", progress=False, reverse_complement=rc)
    tt = store.token_table()
    assert store.complete and len(tt) == store.n_tokens and store.manifest["tokenization"] == ad.tokenization
    seqs = fasta_sequences(fasta)(w)
    for wi, row in w.iterrows():
        toks = tt[(tt.window_index == wi)]
        assert toks.token_index.tolist() == list(range(len(toks)))
        for rev in ([False, True] if rc else [False]):
            part = toks[~toks.is_special & (toks.reverse == rev)] if rc else toks[~toks.is_special]
            acts, _ = ad.hidden_states([seqs[wi]], reverse_complement=rev)[0]
            rows = np.flatnonzero((tt.window_index == wi) & ((tt.reverse == rev) if rc else True))
            got = np.concatenate([s["acts"] for s in store.iter_shards()])[rows]
            np.testing.assert_allclose(got, acts.numpy(), atol=1e-6)
            if row.window_id == "hap":  # own sequence: linear from start
                assert part.bp_start.min() == row.start and part.bp_end.max() == row.start + 43
                continue
            ref = CHROMS[row.chrom]
            pieces = [ref[s:e] for s, e in zip(part.bp_start, part.bp_end)]
            # forward-strand reference text of the tokens, in token order
            if (row.strand == "-") != rev:  # the model read the minus strand: tokens run right to left
                assert "".join(pieces[::-1]) == ref[row.start:row.end]
                assert not (row.strand == "+" and not rev)
            else:
                assert "".join(pieces) == ref[row.start:row.end]
            assert (part.bp_start >= row.start).all() and (part.bp_end <= row.end).all()
            assert part.has_n.any() == ("N" in ref[row.start:row.end])


def test_resume_after_kill_matches_uninterrupted(cnn, fasta, tmp_path, monkeypatch):
    w = _windows()
    full = embed_windows(cnn, w, fasta_sequences(fasta), tmp_path / "full", windows_per_shard=3, progress=False)
    calls = {"n": 0}
    real = embed_mod._embed_shard

    def dying(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(embed_mod, "_embed_shard", dying)
    with pytest.raises(KeyboardInterrupt):
        embed_windows(cnn, w, fasta_sequences(fasta), tmp_path / "killed", windows_per_shard=3, progress=False)
    killed = ActivationStore(tmp_path / "killed")
    assert not killed.complete and len(killed.shards) == 1
    monkeypatch.setattr(embed_mod, "_embed_shard", real)
    resumed = embed_windows(cnn, w, fasta_sequences(fasta), tmp_path / "killed", windows_per_shard=3, progress=False)
    assert resumed.complete and resumed.n_tokens == full.n_tokens
    _assert_same_store(resumed, full)
    other = load_model(cnn.source["path"], layer=1)
    with pytest.raises(InputError, match="different settings"):
        embed_windows(other, w, fasta_sequences(fasta), tmp_path / "killed", windows_per_shard=3, progress=False)


def test_parts_merge_equals_single_run(cnn, fasta, tmp_path):
    w = _windows()
    seqs = fasta_sequences(fasta)(w)
    full = embed_windows(cnn, w, seqs, tmp_path / "full", windows_per_shard=2, progress=False)
    parts = [embed_windows(cnn, w, seqs, tmp_path / f"p{i}", windows_per_shard=2, part=(i, 3), progress=False)
             for i in range(3)]
    assert sum(len(p.shards) for p in parts) == len(full.shards) == 6  # 11 windows, 2 per shard
    merged = merge_stores([p.path for p in parts[::-1]], tmp_path / "merged")
    _assert_same_store(merged, full)
    assert merged.token_table().equals(full.token_table())


def test_identical_sequences_run_through_the_model_once(cnn, fasta, tmp_path, monkeypatch):
    w = _windows().iloc[:4]
    seqs = fasta_sequences(fasta)(w)
    dup = pd.concat([w, w.assign(window_id=w["window_id"] + "_copy")], ignore_index=True)
    seen = []
    real = cnn.hidden_states

    def counting(batch, **kw):
        seen.extend(batch)
        return real(batch, **kw)

    monkeypatch.setattr(cnn, "hidden_states", counting)
    store = embed_windows(cnn, dup, seqs + seqs, tmp_path / "dup", windows_per_shard=8,
                          storage_dtype="float32", progress=False)
    assert sorted(seen) == sorted(seqs)  # 8 windows, 4 model inputs
    monkeypatch.setattr(cnn, "hidden_states", real)
    plain = embed_windows(cnn, w, seqs, tmp_path / "plain", storage_dtype="float32", progress=False)
    acts = np.concatenate([s["acts"] for s in store.iter_shards()])
    ref = np.concatenate([s["acts"] for s in plain.iter_shards()])
    np.testing.assert_allclose(acts, np.concatenate([ref, ref]), atol=1e-6)
    tt = store.token_table()
    half = len(tt) // 2
    assert tt["bp_start"].iloc[:half].tolist() == tt["bp_start"].iloc[half:].tolist()


def test_bad_windows(cnn, fasta, tmp_path):
    w = _windows()
    w.loc[1, "end"] = w.loc[1, "start"]
    with pytest.raises(InputError, match="window w1"):
        embed_windows(cnn, w, fasta_sequences(fasta), tmp_path / "s", progress=False)
    w = _windows().iloc[:3]
    seqs = fasta_sequences(fasta)(w)
    seqs[2] = seqs[2][:-1]
    with pytest.raises(InputError, match="window w2"):
        embed_windows(cnn, w, seqs, tmp_path / "s2", progress=False)


def test_storage_dtype_and_batches(cnn, fasta, tmp_path):
    w = _windows()
    st = embed_windows(cnn, w, fasta_sequences(fasta), tmp_path / "s", storage_dtype="bfloat16",
                       windows_per_shard=4, progress=False)
    sh = next(st.iter_shards(framework="torch"))
    assert sh["acts"].dtype == torch.bfloat16
    n = sum(b.shape[0] for b in st.iter_batches(16, exclude_special=True, exclude_n=True))
    tt = st.token_table()
    assert n == int((~tt.is_special & ~tt.has_n).sum()) and tt.has_n.any()


@pytest.mark.parametrize("strand", ["+", "-"])
def test_haplotype_tokens_map_to_exact_reference_bases_after_indels(cnn, fasta, tmp_path, strand):
    from genosae.genome.variants import apply_edits, format_edits

    ref = CHROMS["chrB"]
    s, e = 100, 160
    edits = [(110, ref[110], ref[110] + "TTT"), (130, ref[130:134], ref[130]), (140, ref[140], "N")]
    hap, applied = apply_edits(ref[s:e], s, edits)
    seq = reverse_complement(hap) if strand == "-" else hap
    w = pd.DataFrame({"window_id": ["h"], "chrom": ["chrB"], "start": [s], "end": [e], "strand": [strand],
                      "sequence": [seq], "edits": [format_edits(applied)]})
    store = embed_windows(cnn, w, fasta_sequences(fasta), tmp_path / "s", progress=False, storage_dtype="float32")
    tt = store.token_table()
    tt = tt[~tt.is_special]
    assert len(tt) == len(hap) == 60 + 3 - 3
    # read in forward order, the token bases are the haplotype; each non-inserted one sits on its base
    fwd = tt if strand == "+" else tt.iloc[::-1]
    starts = fwd.bp_start.to_numpy()
    assert (np.diff(starts) >= 0).all() and starts.min() == s and fwd.bp_end.max() == e
    assert set(range(131, 134)).isdisjoint(starts)  # the deleted bases have no token
    assert (starts == 110).sum() == 4  # the anchor and the three inserted bases
    kept = [i for i, p in enumerate(starts) if p not in (110, 140)]
    assert all(hap[i] == ref[starts[i]] for i in kept)
    assert starts[-1] == 159 and starts[10:15].tolist() == [110, 110, 110, 110, 111]
