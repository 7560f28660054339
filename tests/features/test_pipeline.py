"""End to end: run_features on a planted store, dashboards and the CLI parser."""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import pytest
import torch

from genosae.features._cli import add_commands
from genosae.features.pipeline import run_features, token_gc
from genosae.genome.motifs import Motif


class PlantedStore:
    """Store-like view of the planted data: hidden state = the four planted features (+ special tokens)."""

    def __init__(self, planted):
        self.windows = planted.windows
        self.d_model = 4
        dense = planted.acts.codes.toarray()
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
    def __init__(self, perm=(0, 1, 2, 3)):
        self.perm = list(perm)
        self.W_dec = torch.eye(4)[self.perm]

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
        top_examples=15, flank=8, baseline_tokens=3000, n_random=3, make_logos=True,
    )
    for p in paths.values():
        assert p.exists(), p
    cat = pd.read_csv(paths["feature_catalog"]).set_index("feature")
    assert cat.loc["f0", "captured"] and cat.loc["f0", "f1"] == 1.0
    assert cat.loc["f0", "best_motif"] == "PLANTED" and cat.loc["f0", "motif_q"] < 0.05
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
    rc = main(["features", "--config", "config/config.yaml", "--store", str(tmp_path / "store"),
               "--sae", str(tmp_path / "sae"), "--reference-dir", str(ref), "--out", str(tmp_path / "out"),
               "--baseline-tokens", "2000", "--no-logos"])
    assert rc == 0
    cat = pd.read_csv(tmp_path / "out" / "feature_catalog.csv")
    assert len(cat) == 6 and (tmp_path / "out" / "dashboards" / "index.html").exists()
    assert main(["features", "--config", "config/config.yaml", "--store", str(tmp_path / "store"),
                 "--sae", str(tmp_path / "sae"), "--reference-dir", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "out2")]) == 2
