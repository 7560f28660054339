"""Activations from a fake store/SAE, save/load, baselines, catalogue pieces, replicate matching."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from scipy import stats

from genosae._io import read_json
from genosae.errors import InputError
from genosae.features.activations import (
    FeatureActs,
    WindowActs,
    calibration_windows,
    feature_activations,
    iter_token_batches,
    neuron_activations,
    neuron_units,
    random_direction_activations,
    random_units,
    segment_max,
    segment_sum,
    store_mean,
    window_activations,
    window_split,
)
from genosae.features.alignment import (
    align_concepts,
    align_source,
    align_store,
    token_concepts,
    trivial_f1,
)
from genosae.features.catalog import (
    baseline_summary,
    build_catalog,
    feature_statistics,
    match_saes,
    strand_alignment,
    window_feature_matrix,
    write_feature_anndata,
)
from genosae.features.motifs import codon_preference, top_sites


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


class ChromStore:
    """Store-like: 20 windows on each of chrI, chrII and chrXVI (one shard per chromosome, position order).

    Hidden dimension 0 is 2.0 on the tokens of one 8-bp "site" per window of chrII and chrXVI (the
    concept) and 0 elsewhere; the other dimensions are noise. A prefix of the store (chrI) holds no site.
    """

    chroms = ("chrI", "chrII", "chrXVI")

    def __init__(self, d_model: int = 4, n_per_chrom: int = 20, width: int = 64, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.d_model, self.width = d_model, width
        rows = [(c, i * 1000) for c in self.chroms for i in range(n_per_chrom)]
        self.windows = pd.DataFrame({"window_id": [f"{c}:{s}" for c, s in rows], "chrom": [c for c, _ in rows],
                                     "start": [s for _, s in rows], "end": [s + width for _, s in rows],
                                     "strand": "+", "region_id": "atlas"})
        sites = []
        self._shards = []
        for ci, c in enumerate(self.chroms):
            wi = np.repeat(np.arange(ci * n_per_chrom, (ci + 1) * n_per_chrom), width)
            ti = np.tile(np.arange(width), n_per_chrom)
            bp = self.windows["start"].to_numpy()[wi] + ti
            acts = rng.standard_normal((len(wi), d_model)).astype(np.float32)
            acts[:, 0] = 0.0
            if c != "chrI":
                for w in np.unique(wi):
                    s0 = int(self.windows.at[w, "start"]) + int(rng.integers(4, width - 12))
                    sites.append((c, s0, s0 + 8))
                    acts[(wi == w) & (bp >= s0) & (bp < s0 + 8), 0] = 2.0
            self._shards.append({"acts": acts, "window_index": wi.astype(np.int32), "token_index": ti.astype(np.int32),
                                 "bp_start": bp.astype(np.int64), "bp_end": (bp + 1).astype(np.int64),
                                 "is_special": np.zeros(len(wi), bool), "has_n": np.zeros(len(wi), bool)})
        self.concepts = pd.DataFrame({"chrom": [c for c, _, _ in sites], "start": [s for _, s, _ in sites],
                                      "end": [e for _, _, e in sites], "strand": "+", "concept": "site",
                                      "name": [f"s{i}" for i in range(len(sites))]})

    def iter_shards(self, **_):
        yield from self._shards


class IdentitySAE:
    def __init__(self, d: int = 4):
        self.W_dec = torch.eye(d)

    def encode(self, acts_BD):
        return torch.relu(acts_BD)


def test_baselines_are_centred_splits_and_projections(fake_store):
    x = np.concatenate([s["acts"][~s["is_special"]] for s in fake_store.iter_shards()])
    mean = x.mean(0)
    np.testing.assert_allclose(store_mean(fake_store), mean, rtol=1e-6, atol=1e-7)  # every shard, not the first
    n = neuron_activations(fake_store)
    assert n.n_features == 2 * fake_store.d_model and n.feature_names[:4] == ["n0+", "n0-", "n1+", "n1-"]
    dense = n.codes.toarray()
    np.testing.assert_allclose(dense[:, 0::2], np.maximum(x - mean, 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dense[:, 1::2], np.maximum(mean - x, 0), rtol=1e-5, atol=1e-6)
    r1 = random_direction_activations(fake_store, 5, seed=3)
    r2 = random_direction_activations(fake_store, 5, seed=3)
    assert r1.n_features == 5 and (r1.codes != r2.codes).nnz == 0
    dirs = random_units(fake_store.d_model, 5, 3).W_DU
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=0), 1.0, rtol=1e-6)
    np.testing.assert_allclose(r1.codes.toarray(), np.maximum((x - mean) @ dirs, 0), rtol=1e-5, atol=1e-6)
    assert 0.3 < r1.codes.nnz / np.prod(r1.codes.shape) < 0.7  # centred: each direction fires on about half
    assert (random_direction_activations(fake_store, 5, seed=4).codes != r1.codes).nnz > 0


def test_iter_token_batches_yields_whole_windows(fake_store):
    ref = feature_activations(IdentitySAE(), fake_store).tokens
    got = list(iter_token_batches(fake_store, batch_size=40))
    tokens = pd.concat([t for _, t in got], ignore_index=True)
    pd.testing.assert_frame_equal(tokens, ref)
    x = np.concatenate([s["acts"][~s["is_special"]] for s in fake_store.iter_shards()])
    np.testing.assert_array_equal(np.concatenate([a for a, _ in got]), x)
    assert all(len(t) <= 40 for _, t in got) and len(got) == 4  # 2 windows of 16 per batch, 3 per shard
    seen = [set(t["window_index"]) for _, t in got]
    assert sum(len(w) for w in seen) == len(set().union(*seen)) == 6  # no window in two batches
    assert [len(t) for _, t in iter_token_batches(fake_store, batch_size=5)] == [16] * 6  # one window alone
    assert sum(len(t) for _, t in iter_token_batches(fake_store, max_tokens=20)) == 20


def test_calibration_windows_holds_out_the_chromosome():
    store = ChromStore()
    cal, rule = calibration_windows(store.windows, holdout_chroms=["chrXVI"])
    assert rule == "chromosome" and (~cal).sum() == 20 and set(store.windows.loc[~cal, "chrom"]) == {"chrXVI"}
    # no window of the held-out chromosome has tokens (e.g. a --max-tokens prefix): seeded random half
    present = (store.windows["chrom"] != "chrXVI").to_numpy()
    cal2, rule2 = calibration_windows(store.windows, holdout_chroms=["chrXVI"], seed=1, present=present)
    assert rule2 == "random" and (cal2 == window_split(60, seed=1)).all()
    assert calibration_windows(store.windows)[1] == "random"


def test_align_store_streams_the_whole_store_like_in_memory():
    store = ChromStore()
    cal_w, _ = calibration_windows(store.windows, holdout_chroms=["chrXVI"])
    mean = store_mean(store)
    units = {"neuron": neuron_units(store.d_model, mean), "random": random_units(store.d_model, 6, 2, mean)}
    got = align_store(store, units, store.concepts, concept_names=["site"], calibration_windows=cal_w,
                      batch_size=100)
    for kind, acts in (("neuron", neuron_activations(store, mean=mean)),
                       ("random", random_direction_activations(store, 6, 2, mean=mean))):
        memb, _, _ = token_concepts(acts.tokens, store.concepts, ["site"])
        win = acts.tokens["window_index"].to_numpy()
        want = align_concepts(acts.codes, memb, None, calibration_mask=cal_w[win], concept_names=["site"],
                              feature_names=acts.feature_names, window_index=win)
        pd.testing.assert_frame_equal(got[kind], want, check_exact=False, rtol=1e-6)
    n0 = got["neuron"].set_index("feature").loc["n0+"]
    # 20 held-out windows, each with its site: z reaches its bound sqrt(20), p = t_19 tail there
    assert n0["f1"] == 1.0 and n0["n_windows"] == 20 and n0["n_windows_hit"] == 20 and n0["captured"]
    assert n0["z"] == pytest.approx(np.sqrt(20)) and n0["p"] == pytest.approx(stats.t.sf(np.sqrt(20), 19))


def test_run_features_baselines_cover_every_chromosome(tmp_path):
    """The site lives on chrII and chrXVI only; a chrI prefix (the old ``baseline_tokens``) saw none."""
    from genosae.features.pipeline import run_features

    store = ChromStore()
    prefix = 20 * store.width  # every chrI token, nothing else
    paths = run_features(store, IdentitySAE(), tmp_path / "f", concepts=store.concepts, holdout_chroms=["chrXVI"],
                         baseline_tokens=prefix, n_random=6, make_logos=False, progress=False)
    summ = pd.read_csv(paths["baseline_summary"]).set_index("concept")
    row = summ.loc["site"]
    assert row["best_neuron_f1"] == 1.0 and row["best_neuron_feature"] == "n0+"
    assert row["best_sae_f1"] == 1.0 and row["best_sae_feature"] == "f0"
    assert (row["n_sae_candidates"], row["n_neuron_candidates"], row["n_random_candidates"]) == (4, 8, 6)
    assert row["best_random_f1"] < 1.0
    info = read_json(paths["summary"])
    assert info["split"] == {"rule": "chromosome", "holdout_chroms": ["chrXVI"], "seed": 0,
                             "n_calibration_windows": 40, "n_heldout_windows": 20}
    assert info["n_candidates"] == {"sae": 4, "neuron": 8, "random": 6}
    al = pd.read_parquet(paths["alignment"]).set_index(["feature", "concept"])
    assert al.loc[("f0", "site"), "n_windows"] == 20 and al.loc[("f0", "site"), "captured"]


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


def test_strand_alignment_scores_each_orientation_on_its_own():
    """f0 fires exactly on the sites of the + windows and never on - windows: F1 1 forward, 0 reverse."""
    n_win, L = 10, 30
    windows = pd.DataFrame({"window_id": [f"w{i}" for i in range(n_win)], "chrom": "chr1",
                            "start": np.arange(n_win) * L, "end": np.arange(n_win) * L + L,
                            "strand": ["+"] * 5 + ["-"] * 5})
    pos = np.arange(n_win * L)
    w = pos // L
    tokens = pd.DataFrame({"window_index": w, "token_index": pos % L, "chrom": "chr1", "bp_start": pos,
                           "bp_end": pos + 1, "strand": windows["strand"].to_numpy()[w],
                           "window_id": windows["window_id"].to_numpy()[w], "has_n": False})
    site = pos[pos % 3 == 1]
    concepts = pd.DataFrame({"chrom": "chr1", "start": site, "end": site + 1, "strand": "+", "concept": "site",
                             "name": [f"s{i}" for i in range(site.size)]})
    codes = np.zeros((pos.size, 2), np.float32)
    codes[:, 0] = (pos % 3 == 1) & (pos < 5 * L)
    codes[::2, 1] = 1.0
    acts = FeatureActs(sp.csr_matrix(codes), tokens, ["f0", "f1"])
    cal = np.arange(n_win) % 2 == 0
    best = pd.Series(["site", "site"], index=["f0", "f1"])
    for batch_size in (30, 1000):  # one window per batch or all at once: the same counts
        st = strand_alignment(acts, windows, concepts, cal, ["site"], best, batch_size=batch_size)
        assert st.loc["f0", "f1_forward"] == 1.0 and st.loc["f0", "f1_reverse"] == 0.0
        assert 0 < st.loc["f1", "f1_forward"] < 1
    one = strand_alignment(acts, windows.assign(strand="+"), concepts, cal, ["site"], best)
    assert one.empty


def test_build_catalog_on_planted(planted):
    a = align_concepts(planted.acts.codes, planted.membership, planted.instances,
                       calibration_mask=planted.cal_tokens, concept_names=planted.concept_names,
                       window_index=planted.acts.tokens["window_index"].to_numpy())
    genes = pd.DataFrame({"chrom": ["chr1"], "start": [0], "end": [50], "name": ["GENE1"]})
    cat = build_catalog(feature_statistics(planted.acts), a, sites=top_sites(planted.acts, n_top=3), genes=genes)
    assert list(cat.index) == ["f0", "f1", "f2", "f3"]
    assert cat.loc["f0", "best_concept"] == f"motif:{planted.motif}" and cat.loc["f0", "captured"]
    assert cat.loc["f0", "label"] == f"motif:{planted.motif} (F1 1.00)"
    assert cat.loc["f1", "label"] == "unassigned"
    assert cat.loc["f0", "frequency"] == pytest.approx(planted.membership[:, 0].sum() / planted.acts.n_tokens)
    assert cat.loc["f0", "top_loci"].count("chr1:") == 3 and "GENE1" in cat.loc["f0", "top_loci"]
    assert cat.loc["f0", "q50"] <= cat.loc["f0", "q99"] <= cat.loc["f0", "max_activation"]
    assert cat.loc["f0", "f1_calibration"] == 1.0 and (cat["n_concept_candidates"] == 2).all()


def test_baseline_summary_same_rule_and_candidate_counts():
    # neuron set: n1 is best on held-out (0.9) but n0 on calibration (0.8 vs 0.3): the summary must
    # report n0 and its held-out F1 (0.2), not the held-out maximum
    base = dict(concept="c", prevalence=0.1, trivial_f1=trivial_f1(0.1))
    sae = pd.DataFrame([dict(base, feature=f"f{i}", f1_calibration=0.1 * i, f1=0.05 * i) for i in range(5)])
    neu = pd.DataFrame([dict(base, feature="n0", f1_calibration=0.8, f1=0.2),
                        dict(base, feature="n1", f1_calibration=0.3, f1=0.9)])
    summ = baseline_summary({"sae": sae, "neuron": neu}).loc["c"]
    assert summ["best_neuron_feature"] == "n0" and summ["best_neuron_f1"] == 0.2
    assert summ["best_neuron_f1_calibration"] == 0.8
    assert summ["best_sae_feature"] == "f4" and summ["best_sae_f1"] == pytest.approx(0.2)
    assert (summ["n_sae_candidates"], summ["n_neuron_candidates"]) == (5, 2)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_logo_pngs_serial_and_parallel(tmp_path, n_jobs):
    from genosae.features.motifs import logo_pngs

    rng = np.random.default_rng(0)
    pwms = {f"f{i}": rng.dirichlet(np.full(4, 0.5), size=9) for i in range(5)}
    out = logo_pngs(pwms, tmp_path, n_jobs=n_jobs, progress=False)
    assert list(out) == list(pwms)
    for name, path in out.items():
        assert path == tmp_path / f"{name}.png" and path.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("sparse", [False, True])
def test_segment_sum_and_max_against_a_loop(sparse):
    rng = np.random.default_rng(3)
    x = (rng.random((60, 7)) * (rng.random((60, 7)) > 0.6)).astype(np.float32)
    seg = rng.integers(0, 9, 60)
    seg[seg == 4] = 5  # segment 4 has no rows
    w = rng.random(60)
    xs = sp.csr_matrix(x) if sparse else x
    total, mx, wsum = segment_sum(xs, seg, 10), segment_max(xs, seg, 10), segment_sum(xs, seg, 10, weights=w)
    assert sp.issparse(total) == sparse and sp.issparse(mx) == sparse
    dense = (lambda a: a.toarray()) if sparse else np.asarray
    for s in range(10):
        rows = seg == s
        np.testing.assert_allclose(dense(total)[s], x[rows].sum(0), rtol=1e-6)
        np.testing.assert_allclose(dense(wsum)[s], (w[rows, None] * x[rows]).sum(0), rtol=1e-6)
        np.testing.assert_array_equal(dense(mx)[s], x[rows].max(0) if rows.any() else 0)
    assert dense(mx).dtype == np.float32 and dense(total).dtype == np.float32


def test_window_aggregates_agree_across_callers(fake_store, fake_sae_factory):
    """WindowActs (profiles' input), the catalogue's window matrix and the unit profiles all take
    the same segmented maximum."""
    from genosae.biomarkers.profiles import region_profiles

    acts = feature_activations(fake_sae_factory(), fake_store)
    n_win = len(fake_store.windows)
    wa = WindowActs.from_codes(acts.codes, acts.tokens, n_win, feature_names=acts.feature_names)
    mx, _ = window_feature_matrix(acts, n_win)
    np.testing.assert_array_equal(mx.toarray(), wa.max)
    pair = np.arange(n_win) // 2  # units of two windows
    windows = fake_store.windows.assign(region_id=[f"u{i}" for i in pair], group=np.where(pair % 2, "a", "b"))
    adata = region_profiles(wa, None, windows)
    np.testing.assert_array_equal(adata.layers["max"], np.maximum(wa.max[0::2], wa.max[1::2]))


def test_feature_anndata_streamed_equals_in_memory(fake_store, fake_sae_factory, tmp_path):
    """The h5ad written block by block holds exactly the in-memory window matrices, whatever the
    batch size, with empty rows for windows without tokens; out-of-order batches are refused."""
    import anndata as ad

    acts = feature_activations(fake_sae_factory(), fake_store)
    windows = fake_store.windows
    n_win = len(windows)
    keep = acts.tokens["window_index"].to_numpy() != 1  # window 1 has no tokens: a gap inside
    acts = acts.subset_tokens(keep)
    mx, mean = window_feature_matrix(acts, n_win)
    dense_codes = acts.codes.toarray()
    win = acts.tokens["window_index"].to_numpy()
    for w in range(n_win):
        rows = win == w
        np.testing.assert_array_equal(mx[w].toarray()[0], dense_codes[rows].max(0) if rows.any() else 0)
        np.testing.assert_allclose(mean[w].toarray()[0], dense_codes[rows].mean(0) if rows.any() else 0, rtol=1e-6)
    catalog = pd.DataFrame({"label": [f"L{i}" for i in range(acts.n_features)]},
                           index=pd.Index(acts.feature_names, name="feature"))
    for batch_size in (5, 100_000):
        path = write_feature_anndata(acts, windows, catalog, tmp_path / f"b{batch_size}.h5ad",
                                     uns={"layer": 3}, batch_size=batch_size)
        adata = ad.read_h5ad(path)
        assert adata.shape == (n_win, acts.n_features)
        assert list(adata.obs_names) == windows["window_id"].astype(str).tolist()
        np.testing.assert_array_equal(adata.X.toarray(), mx.toarray())
        np.testing.assert_array_equal(adata.layers["max"].toarray(), mx.toarray())
        np.testing.assert_array_equal(adata.layers["mean"].toarray(), mean.toarray())
        assert adata.var.loc["f2", "label"] == "L2" and adata.uns["genosae"]["layer"] == 3
    assert adata.X[1].nnz == 0 and adata.X[0].nnz > 0

    class Reversed:  # a source breaking the ascending-window contract
        feature_names = acts.feature_names

        def iter_batches(self, batch_size: int = 65_536):
            return reversed(list(acts.iter_batches(5)))

    with pytest.raises(ValueError, match="ascending window order"):
        write_feature_anndata(Reversed(), windows, catalog, tmp_path / "bad.h5ad")
    assert not (tmp_path / "bad.h5ad").exists()


def test_feature_statistics_streamed_equal_in_memory(fake_store, fake_sae_factory):
    """Counts and maxima are exact whatever the batch; quantiles within one log bin (0.7 %) of numpy's."""
    acts = feature_activations(fake_sae_factory(), fake_store)
    for batch_size in (7, 100_000):
        st = feature_statistics(acts, batch_size=batch_size,
                                gc_content=lambda t: np.interp(t["bp_start"].to_numpy(), [0, 10_000], [0, 1]))
        csc = acts.codes.tocsc()
        for f in range(acts.n_features):
            d = csc.data[csc.indptr[f]:csc.indptr[f + 1]]
            assert st.iloc[f]["n_active"] == d.size
            if d.size:
                assert st.iloc[f]["max_activation"] == pytest.approx(d.max())
                for q, col in ((0.5, "q50"), (0.9, "q90"), (0.99, "q99")):
                    assert st.iloc[f][col] == pytest.approx(np.quantile(d, q), rel=0.01)
        y = np.interp(acts.tokens["bp_start"].to_numpy(), [0, 10_000], [0, 1])
        x = acts.codes.toarray()
        for f in range(acts.n_features):
            if x[:, f].std() > 0 and y.std() > 0:
                assert st.iloc[f]["gc_corr"] == pytest.approx(np.corrcoef(x[:, f], y)[0, 1], abs=1e-6)


def test_align_source_streamed_equals_in_memory(planted):
    """The streamed alignment (whole-window batches of any size) gives align_concepts' table exactly;
    domain recall counts an instance once per window it lies in."""
    from genosae.features.alignment import window_instances

    acts, w = planted.acts, planted.acts.tokens["window_index"].to_numpy()
    cal_w = np.zeros(int(w.max()) + 1, bool)
    cal_w[np.unique(w[planted.cal_tokens])] = True
    want = align_concepts(acts.codes, planted.membership, window_instances(planted.instances, w, len(cal_w)),
                          calibration_mask=cal_w[w], concept_names=planted.concept_names, window_index=w)
    inst = planted.instances.tocsc()
    rows = []
    for c, name in enumerate(planted.concept_names):  # the concepts table behind membership/instances
        col = inst[:, c].tocoo()
        ids = pd.DataFrame({"pos": col.row, "id": col.data}).groupby("id")["pos"].agg(["min", "max"])
        rows.append(pd.DataFrame({"chrom": "chr1", "start": ids["min"].to_numpy(), "end": ids["max"].to_numpy() + 1,
                                  "strand": "+", "concept": name, "name": [f"{c}_{i}" for i in ids.index]}))
    concepts = pd.concat(rows, ignore_index=True)
    for batch_size in (50, 10**6):
        got = align_source(acts, concepts, concept_names=planted.concept_names, calibration_windows=cal_w,
                           batch_size=batch_size)
        pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-9)
