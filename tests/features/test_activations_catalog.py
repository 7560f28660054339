"""Activations from a fake store/SAE, save/load, baselines, catalogue pieces, replicate matching."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from genosae.errors import InputError
from genosae.features.activations import (
    FeatureActs,
    WindowActs,
    feature_activations,
    neuron_activations,
    random_direction_activations,
    window_activations,
    window_split,
)
from genosae.features.alignment import align_concepts
from genosae.features.catalog import (
    baseline_summary,
    build_catalog,
    match_saes,
    strand_alignment,
    window_feature_matrix,
)
from genosae.features.motifs import codon_preference


def test_feature_activations_match_dense_encode(fake_store, fake_sae_factory, tmp_path):
    sae = fake_sae_factory()
    acts = feature_activations(sae, fake_store, batch_size=7)
    shards = list(fake_store.iter_shards())
    x = np.concatenate([s["acts"][~s["is_special"]] for s in shards])
    want = sae.encode(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(acts.codes.toarray(), want, rtol=1e-6)
    assert acts.codes.nnz == (want != 0).sum() and acts.codes.dtype == np.float32
    assert (acts.tokens["bp_start"] >= 0).all() and len(acts.tokens) == len(x)
    assert set(acts.tokens["strand"]) == {"+", "-"}
    assert acts.tokens["window_id"].iloc[0] == "w0"
    back = FeatureActs.load(acts.save(tmp_path / "acts"))
    assert (back.codes != acts.codes).nnz == 0
    pd.testing.assert_frame_equal(back.tokens, acts.tokens)
    assert back.feature_names == acts.feature_names
    part = feature_activations(sae, fake_store, max_tokens=20)
    assert part.n_tokens == 20
    with pytest.raises(InputError, match=r"meta\.json"):
        FeatureActs.load(tmp_path)


@pytest.mark.parametrize("batch_size", [5, 4096])  # batches that split windows, and whole shards
def test_window_activations_stream_equals_token_level(fake_store, fake_sae_factory, tmp_path, batch_size):
    sae = fake_sae_factory()
    acts = feature_activations(sae, fake_store)
    wa = window_activations(sae, fake_store, threshold=0.1, batch_size=batch_size, progress=False)
    ref = WindowActs.from_codes(acts.codes, acts.tokens, 6, feature_names=acts.feature_names, threshold=0.1)
    dense = acts.codes.toarray()
    win = acts.tokens["window_index"].to_numpy()
    for w in range(6):  # naive per-window loop as the reference
        np.testing.assert_allclose(wa.sum[w], dense[win == w].sum(axis=0), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(wa.max[w], dense[win == w].max(axis=0), rtol=1e-6)
        np.testing.assert_array_equal(wa.n_active[w], (dense[win == w] > 0.1).sum(axis=0))
    assert wa.n_tokens.tolist() == [16] * 6  # the special token of each window is left out
    for name in ("sum", "max", "n_active", "n_tokens"):
        np.testing.assert_allclose(getattr(wa, name), getattr(ref, name), rtol=1e-5, atol=1e-5)
    back = WindowActs.load(wa.save(tmp_path / "wa"))
    np.testing.assert_array_equal(back.sum, wa.sum)
    assert back.feature_names == wa.feature_names and back.threshold == 0.1
    with pytest.raises(InputError, match="meta"):
        WindowActs.load(tmp_path)


def test_baselines(fake_store):
    n = neuron_activations(fake_store)
    assert n.n_features == 2 * fake_store.d_model and n.feature_names[:2] == ["n0+", "n0-"]
    dense = n.codes.toarray()
    assert not ((dense[:, 0::2] > 0) & (dense[:, 1::2] > 0)).any()  # one direction at a time
    r1 = random_direction_activations(fake_store, 5, seed=3)
    r2 = random_direction_activations(fake_store, 5, seed=3)
    assert r1.n_features == 5 and (r1.codes != r2.codes).nnz == 0
    assert (r1.codes.data > 0).all()


def test_window_split_is_seeded_half():
    a, b = window_split(101, seed=1), window_split(101, seed=1)
    assert (a == b).all() and a.sum() == 50
    assert not (a == window_split(101, seed=2)).all()


def test_window_feature_matrix_bruteforce(fake_store, fake_sae_factory):
    acts = feature_activations(fake_sae_factory(), fake_store)
    mx, mean = window_feature_matrix(acts, len(fake_store.windows))
    dense = acts.codes.toarray()
    w = acts.tokens["window_index"].to_numpy()
    for i in range(len(fake_store.windows)):
        np.testing.assert_allclose(mx.toarray()[i], dense[w == i].max(0), rtol=1e-6)
        np.testing.assert_allclose(mean.toarray()[i], dense[w == i].mean(0), rtol=1e-5)


def test_match_saes_finds_permutation():
    rng = np.random.default_rng(0)
    wa = rng.standard_normal((20, 8))
    perm = rng.permutation(20)
    wb = wa[perm] + 0.01 * rng.standard_normal((20, 8))
    for method in ("hungarian", "max"):
        m = match_saes(wa, wb, method=method)
        inv = np.argsort(perm)
        assert list(m["match"]) == [f"f{j}" for j in inv]
        assert (m["match_cosine"] > 0.99).all() and m["replicates"].all()
    ca = pd.Series(["tRNA"] + [None] * 19, index=[f"f{i}" for i in range(20)])
    cb = pd.Series([None] * 20, index=[f"f{i}" for i in range(20)])
    cb[f"f{np.argsort(perm)[0]}"] = "tRNA"
    m = match_saes(wa, wb, best_concept_a=ca, best_concept_b=cb)
    assert m["replicates"].tolist() == [True] + [False] * 19
    with pytest.raises(ValueError, match="method"):
        match_saes(wa, wb, method="greedy")


def test_codon_preference_and_strand_alignment():
    n = 300
    names = [f"codon_pos{k}({s})" for s in "+-" for k in (1, 2, 3)] + ["other"]
    memb = np.zeros((n, 7), bool)
    memb[:150, 0] = np.arange(150) % 3 == 0
    memb[:150, 1] = np.arange(150) % 3 == 1
    memb[:150, 2] = np.arange(150) % 3 == 2
    codes = np.zeros((n, 2), np.float32)
    codes[:150, 0] = memb[:150, 1]  # fires on frame 2 (+)
    codes[::2, 1] = 1.0
    cp = codon_preference(sp.csr_matrix(codes), sp.csr_matrix(memb), names)
    assert cp.loc["f0", "frame_pref"] == 2 and cp.loc["f0", "frame_share"] == 1.0
    assert cp.loc["f0", "cds_strand_pref"] == "+" and cp.loc["f0", "cds_fraction"] == 1.0
    assert codon_preference(sp.csr_matrix(codes), sp.csr_matrix(memb[:, 6:]), ["other"]).empty
    tokens = pd.DataFrame({"strand": np.where(np.arange(n) < 150, "+", "-")})
    cal = np.arange(n) % 2 == 0
    best = pd.Series(["codon_pos2(+)", "other"], index=["f0", "f1"])
    st = strand_alignment(sp.csr_matrix(codes), sp.csr_matrix(memb), tokens, cal, names, best,
                          feature_names=["f0", "f1"])
    assert st.loc["f0", "f1_forward"] == 1.0 and st.loc["f0", "f1_reverse"] == 0.0
    one = strand_alignment(sp.csr_matrix(codes), sp.csr_matrix(memb), tokens.assign(strand="+"), cal, names,
                           best, feature_names=["f0", "f1"])
    assert one.empty


def test_build_catalog_on_planted(planted):
    a = align_concepts(planted.acts.codes, planted.membership, planted.instances,
                       calibration_mask=planted.cal_tokens, concept_names=planted.concept_names)
    genes = pd.DataFrame({"chrom": ["chr1"], "start": [0], "end": [50], "name": ["GENE1"]})
    cat = build_catalog(planted.acts, a, genes=genes)
    assert list(cat.index) == ["f0", "f1", "f2", "f3"]
    assert cat.loc["f0", "best_concept"] == f"motif:{planted.motif}" and cat.loc["f0", "captured"]
    assert cat.loc["f0", "label"] == f"motif:{planted.motif} (F1 1.00)"
    assert cat.loc["f1", "label"] == "unassigned"
    assert cat.loc["f0", "frequency"] == pytest.approx(planted.membership[:, 0].sum() / planted.acts.n_tokens)
    assert cat.loc["f0", "top_loci"].count("chr1:") == 3 and "GENE1" in cat.loc["f0", "top_loci"]
    assert cat.loc["f0", "q50"] <= cat.loc["f0", "q99"] <= cat.loc["f0", "max_activation"]
    summ = baseline_summary({"sae": a, "neuron": a.assign(f1=a["f1"] / 2)})
    assert summ.loc[f"motif:{planted.motif}", "best_sae_f1"] == 1.0
    assert summ.loc[f"motif:{planted.motif}", "best_neuron_f1"] == 0.5


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_logo_pngs_serial_and_parallel(tmp_path, n_jobs):
    from genosae.features.motifs import logo_pngs

    rng = np.random.default_rng(0)
    pwms = {f"f{i}": rng.dirichlet(np.full(4, 0.5), size=9) for i in range(5)}
    out = logo_pngs(pwms, tmp_path, n_jobs=n_jobs, progress=False)
    assert list(out) == list(pwms)
    for name, path in out.items():
        assert path == tmp_path / f"{name}.png" and path.read_bytes()[:4] == b"\x89PNG"
