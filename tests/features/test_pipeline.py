"""End to end: run_features on a planted store, dashboards and the CLI parser."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from genosae.features._cli import add_commands
from genosae.features.pipeline import run_features, token_gc
from genosae.genome.motifs import Motif


class PlantedStore:
    """Store-like view of planted data: hidden state = its features, then ``extra`` Gaussian noise dims."""

    def __init__(self, planted, extra: int = 0, seed: int = 0):
        self.windows = planted.windows
        dense = planted.acts.codes.toarray()
        if extra:
            noise = np.random.default_rng(seed).standard_normal((len(dense), extra)).astype(np.float32)
            dense = np.column_stack([dense, noise])
        self.d_model = dense.shape[1]
        t = planted.acts.tokens
        self._shards = []
        for half in np.array_split(np.arange(len(planted.windows)), 2):
            rows = np.flatnonzero(np.isin(t["window_index"].to_numpy(), half))
            self._shards.append({
                "acts": dense[rows], "window_index": t["window_index"].to_numpy()[rows].astype(np.int32),
                "token_index": t["token_index"].to_numpy()[rows].astype(np.int32),
                "bp_start": t["bp_start"].to_numpy()[rows], "bp_end": t["bp_end"].to_numpy()[rows],
                "is_special": np.zeros(len(rows), bool), "has_n": np.zeros(len(rows), bool)})

    def iter_shards(self, **_):
        yield from self._shards


class ReluSAE:
    def __init__(self, perm=(0, 1, 2, 3), d_model: int | None = None):
        self.perm = list(perm)
        self.W_dec = torch.eye(d_model or len(self.perm))[self.perm]

    def encode(self, acts_BD):
        return torch.relu(acts_BD[:, self.perm])


def _concepts(planted) -> pd.DataFrame:
    m = planted.membership[:, 0].toarray().ravel()
    starts = np.flatnonzero(np.diff(np.r_[0, m.astype(int)]) == 1)
    k = len(planted.motif)
    return pd.DataFrame({"chrom": "chr1", "start": starts, "end": starts + k, "strand": "+",
                         "concept": f"motif:{planted.motif}", "name": [f"site{i}" for i in range(len(starts))]})


def test_token_gc(planted):
    gc = token_gc(planted.acts.tokens, planted.windows, planted.sequences, half_width=2)
    s = planted.sequences[0]
    want = sum(b in "GC" for b in s[8:13]) / 5
    assert gc[10] == pytest.approx(want)
    assert gc[0] == pytest.approx(sum(b in "GC" for b in s[0:3]) / 3)


def test_run_features_end_to_end(planted, tmp_path):
    rng = np.random.default_rng(1)
    decoys = [Motif(f"D{i}", f"decoy{i}", rng.dirichlet(np.ones(4) * 0.4, size=8)) for i in range(25)]
    onehot = np.eye(4)[["ACGT".index(b) for b in planted.motif]] * 0.97 + 0.0075
    motifs = [*decoys, Motif("P1", "PLANTED", onehot)]
    store = PlantedStore(planted)
    paths = run_features(
        store, ReluSAE(), tmp_path / "features", concepts=_concepts(planted), motifs=motifs,
        window_sequences=lambda w: [planted.sequences[i] for i in w.index], sae_replicate=ReluSAE((1, 0, 2, 3)),
        top_examples=15, flank=8, n_random=3, make_logos=True, n_null=100,
    )
    cat = pd.read_csv(paths["feature_catalog"]).set_index("feature")
    assert cat.loc["f0", "captured"] and cat.loc["f0", "f1"] == 1.0
    # the raw best Tomtom match is the planted motif, but in this 4-dimensional store every random
    # direction is a quarter planted feature: the random-direction null matches it as well, so f0 is
    # not named — and a random direction recovers its sites nearly as well, so the sites do not
    # credit the SAE either. The null winning is reported, not hidden.
    assert cat.loc["f0", "best_motif"] == "PLANTED" and cat.loc["f0", "motif_q"] < 1e-6
    assert cat.loc["f0", "motif_status"] == "no_match" and cat["motif_name"].isna().all()
    summary = json.loads(paths["summary"].read_text())
    naming = summary["motif_naming"]
    assert naming["null"]["random_directions"]["p_threshold"] < 1e-10 and naming["n_named"] == 0
    peaks = summary["peak_rss_mb_after"]  # a high-water mark after each timed part, in their order
    assert list(peaks) == [k for k in summary["timings_s"] if k != "total"]
    assert list(peaks.values()) == sorted(peaks.values()) and peaks["write"] > 50
    assert naming["n_tried"] == 4 and set(naming["null"]) >= {"random_sites", "random_directions"}
    capture = pd.read_csv(paths["motif_capture"])
    assert len(capture) == 1 and capture.loc[0, "sae_unit"] == "f0" and capture.loc[0, "sae_f1"] == 1.0
    assert capture.loc[0, "random_f1"] > 0.9 and not capture.loc[0, "captured"]
    assert capture.loc[0, "n_sites_calibration"] == capture.loc[0, "n_sites_heldout"] == 60
    assert summary["motif_capture"]["n_units"] == {"sae": 4, "neuron": 8, "random": 3}
    names = pd.read_csv(paths["motif_names"]).set_index("motif")
    assert names.loc["PLANTED", "n_best_match"] >= 1 and names["n_named"].sum() == 0
    assert cat.loc["f0", "match"] == "f1" and bool(cat.loc["f0", "replicates"])
    assert not cat.loc[["f1", "f2", "f3"], "captured"].any()
    sig = pd.read_csv(paths["feature_concepts"])
    assert (sig["q"] <= 0.05).all() and "f0" in set(sig["feature"])
    summ = pd.read_csv(paths["baseline_summary"]).set_index("concept")
    assert {"best_sae_f1", "best_neuron_f1", "best_random_f1"} <= set(summ.columns)
    assert summ["best_sae_f1"].iloc[0] == 1.0
    import anndata as ad

    adata = ad.read_h5ad(paths["feature_acts_h5ad"])
    assert adata.shape == (len(planted.windows), 4) and set(adata.layers) == {"max", "mean"}
    assert adata.var.loc["f0", "best_concept"] == f"motif:{planted.motif}"
    index = paths["dashboards"].read_text()
    assert "feature_f0.html" in index and "http" not in index
    page = (paths["dashboards"].parent / "feature_f0.html").read_text()
    assert "data:image/png;base64," in page and "rgba(220,40,40,1.00)" in page
    assert "<script src" not in page


def test_cli_parser():
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["features", "--config", "c.yaml", "--store", "s", "--sae", "a",
                              "--sae-replicate", "b"])
    assert args.reference_dir == "results/reference" and args.out == "results/features"
    assert args.sae_replicate == "b" and callable(args.func)


def test_cli_features_on_real_store_and_sae(planted, tmp_path):
    from genosae.cli import main
    from genosae.genome.motifs import write_meme
    from genosae.model.store import ActivationStoreWriter
    from genosae.sae.io import save_sae
    from genosae.sae.relu import ReLUSAE, ReLUSAEConfig

    store = PlantedStore(planted)
    w = ActivationStoreWriter(tmp_path / "store", windows=planted.windows, storage_dtype="float32",
                              manifest_meta={"model": {"id": "test"}, "layer": 0, "d_model": 4,
                                             "tokenization": "char", "config_hash": "x"})
    lo = 0
    for i, s in enumerate(store.iter_shards()):
        hi = int(s["window_index"].max()) + 1
        w.write_shard(i, s["acts"].astype(np.float32), s["window_index"], s["token_index"], s["bp_start"],
                      s["bp_end"], s["is_special"], s["has_n"], window_range=(lo, hi))
        lo = hi
    w.finalize()
    save_sae(ReLUSAE(ReLUSAEConfig(d_in=4, d_sae=6), seed=0), tmp_path / "sae")
    ref = tmp_path / "ref"
    ref.mkdir()
    (ref / "genome.fa").write_text(">chr1\n" + planted.genome + "\n")
    _concepts(planted).to_csv(ref / "concepts.tsv.gz", sep="\t", index=False)
    rng = np.random.default_rng(2)
    write_meme([Motif(f"D{i}", f"d{i}", rng.dirichlet(np.ones(4), size=8)) for i in range(5)], ref / "motifs.meme")
    cfg = yaml.safe_load(open("config/config.yaml"))
    cfg["features"]["motif_null_pseudofeatures"] = 50  # a quick null; the default is 1000
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    rc = main(["features", "--config", str(tmp_path / "config.yaml"), "--store", str(tmp_path / "store"),
               "--sae", str(tmp_path / "sae"), "--reference-dir", str(ref), "--out", str(tmp_path / "out"),
               "--baseline-tokens", "2000", "--no-logos"])
    assert rc == 0
    cat = pd.read_csv(tmp_path / "out" / "feature_catalog.csv")
    assert len(cat) == 6 and (tmp_path / "out" / "dashboards" / "index.html").exists()
    # the motif columns come through the CLI with the config's parameters
    assert {"motif_name", "motif_status", "motif_label", "best_motif", "motif_q"} <= set(cat.columns)
    assert set(cat["motif_status"]) <= {"too_few_sites", "uninformative", "no_match", "named"}
    naming = json.loads((tmp_path / "out" / "features.json").read_text())["motif_naming"]
    assert naming["null"]["random_sites"]["n_pseudo"] == 50 and naming["params"]["min_sites"] == 50
    capture = pd.read_csv(tmp_path / "out" / "motif_capture.csv")
    assert list(capture["motif_id"]) == ["TGACTCAGG"] and {"sae_f1", "neuron_f1", "random_f1"} <= set(capture)
    assert main(["features", "--config", "config/config.yaml", "--store", str(tmp_path / "store"),
                 "--sae", str(tmp_path / "sae"), "--reference-dir", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "out2")]) == 2


def test_run_features_names_a_planted_jaspar_motif(jaspar_planted, jaspar_fungi, tmp_path):
    """REB1 sampled into 160 of 240 windows of yeast-like sequence; 58 noise dims beside the features."""
    from genosae.genome.motifs import motif_concepts, scan_motifs

    d = jaspar_planted
    chosen = [m for m in jaspar_fungi if m.name in {"REB1", "GCN4", "MCM1", "RAP1"}]
    concepts = motif_concepts(scan_motifs(chosen, {"chr1": d.genome}, threshold=1e-4))
    store = PlantedStore(d, extra=58)
    paths = run_features(
        store, ReluSAE(tuple(range(6)), d_model=store.d_model), tmp_path / "features", concepts=concepts,
        motifs=jaspar_fungi, window_sequences=lambda w: [d.sequences[i] for i in w.index], n_random=20,
        make_logos=False, n_null=200, capture_min_sites=10,
    )
    cat = pd.read_csv(paths["feature_catalog"]).set_index("feature")
    assert cat.loc["f0", "motif_status"] == "named" and cat.loc["f0", "motif_name"] in {"REB1", "NSI1"}
    assert cat.loc["f0", "motif_label"] == cat.loc["f0", "motif_name"]
    assert cat.loc["f0", "motif_label_source"] in {"tomtom+sites", "tomtom"}
    assert bool(cat.loc["f0", "motif_name_flagged"])  # 1 of 6 features: more than 5 %
    noise = cat.drop(index="f0")
    assert noise["motif_name"].isna().all() and noise["motif_label"].isna().all()
    capture = pd.read_csv(paths["motif_capture"]).set_index("motif_name")
    reb1 = capture.loc["REB1"]
    assert reb1["sae_unit"] == "f0" and reb1["sae_f1"] >= 0.8 and bool(reb1["captured"])
    assert reb1["sae_f1"] > reb1["random_f1"] + 0.3 and reb1["neuron_n_units"] == 2 * store.d_model
    assert not bool(capture.loc["GCN4", "captured"]) and capture.loc["GCN4", "sae_f1"] < 0.2
    naming = json.loads(paths["summary"].read_text())["motif_naming"]
    assert naming["n_named"] == 1 and naming["n_tried"] == 6
    assert naming["expected_false_names"] < 0.5 and naming["flagged_motifs"] == [cat.loc["f0", "motif_name"]]
    assert naming["background"][0] == pytest.approx(0.31, abs=0.02)  # A+T from the sequence, not uniform
    names = pd.read_csv(paths["motif_names"]).set_index("motif")
    assert names.loc[cat.loc["f0", "motif_name"], "n_named"] == 1 and bool(names.loc[cat.loc["f0", "motif_name"], "flagged"])


def test_control_model_decides_what_counts_as_captured(planted, tmp_path):
    """A concept counts only where the trained model's SAE beats the control model's SAE."""
    kw = dict(concepts=_concepts(planted), n_random=3, make_logos=False, n_null=20)
    concept = f"motif:{planted.motif}"
    # a control whose SAE sees only noise: the planted feature stays captured
    paths = run_features(PlantedStore(planted), ReluSAE(), tmp_path / "a",
                         control_store=PlantedStore(planted, extra=4, seed=3),
                         control_sae=ReluSAE((4, 5, 6, 7), d_model=8), control_out=tmp_path / "a_control", **kw)
    cat = pd.read_csv(paths["feature_catalog"]).set_index("feature")
    summ = pd.read_csv(paths["baseline_summary"]).set_index("concept")
    assert cat.loc["f0", "captured"] and summ.loc[concept, "best_control_f1"] < 0.5
    summary = json.loads(paths["summary"].read_text())
    assert summary["n_candidates"]["control"] == 4 and summary["control"]["n_captured_features"] == 0
    assert pd.read_csv(tmp_path / "a_control" / "feature_catalog.csv")["captured"].sum() == 0
    # a control that carries the planted feature as well (a permutation of the same units): nothing counts
    paths = run_features(PlantedStore(planted), ReluSAE(), tmp_path / "b", control_store=PlantedStore(planted),
                         control_sae=ReluSAE((1, 0, 2, 3)), control_out=tmp_path / "b_control", **kw)
    cat = pd.read_csv(paths["feature_catalog"]).set_index("feature")
    assert cat.loc["f0", "f1"] == 1.0 and not cat["captured"].any()
    assert pd.read_parquet(paths["alignment"]).query("feature == 'f0' and concept == @concept")["control_f1"].iloc[0] == 1.0
    control_cat = pd.read_csv(tmp_path / "b_control" / "feature_catalog.csv").set_index("feature")
    assert control_cat.loc["f1", "captured"]  # the control on its own does capture it
    assert json.loads(paths["summary"].read_text())["control"]["captured_concepts"] == [concept]


def test_control_store_must_hold_the_same_windows(planted, tmp_path):
    from genosae.errors import InputError

    other = PlantedStore(planted)
    other.windows = planted.windows.iloc[::-1].reset_index(drop=True)
    other.path = tmp_path / "control_store"
    with pytest.raises(InputError, match="atlas windows"):
        run_features(PlantedStore(planted), ReluSAE(), tmp_path / "c", concepts=_concepts(planted), n_random=3,
                     make_logos=False, control_store=other, control_sae=ReluSAE())
