"""Code store: the SAE's codes of every stored token, exactly, with the store's token -> base map; a
fraction of the dense store's bytes; resumes; refuses a foreign store or SAE."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from genosae.errors import InputError
from genosae.model.store import ActivationStoreWriter
from genosae.sae.codes import CodeStore, encode_store
from genosae.sae.topk import TopKSAE, TopKSAEConfig


@pytest.fixture()
def store(tmp_path):
    rng = np.random.default_rng(0)
    windows = pd.DataFrame({"window_id": [f"w{i}" for i in range(6)], "chrom": "chrI",
                            "start": np.arange(6) * 100, "end": np.arange(6) * 100 + 100, "strand": "+"})
    w = ActivationStoreWriter(tmp_path / "store", manifest_meta={"model": {"path": "m"}, "layer": 1, "d_model": 64,
                                                                  "tokenization": "char", "config_hash": "x"},
                              windows=windows, storage_dtype="float32")
    for k, (a, b) in enumerate([(0, 2), (2, 4), (4, 6)]):
        n = (b - a) * 100
        win = np.repeat(np.arange(a, b), 100)
        w.write_shard(k, torch.from_numpy(rng.normal(size=(n, 64)).astype(np.float32)), win, np.tile(np.arange(100), b - a),
                      win * 100 + np.tile(np.arange(100), b - a), win * 100 + np.tile(np.arange(100), b - a) + 1,
                      np.zeros(n, bool), np.zeros(n, bool), (a, b), extra={"reverse": np.zeros(n, bool)})
    return w.finalize()


@pytest.fixture()
def sae():
    s = TopKSAE(TopKSAEConfig(d_in=64, d_sae=512, k=8), seed=0)
    return s.eval()


def test_codes_equal_the_sae_on_every_token_with_the_same_token_map(store, sae, tmp_path):
    cs = encode_store(store, sae, tmp_path / "codes", progress=False, chunk_tokens=150)
    assert cs.complete and cs.n_tokens == store.n_tokens == 600 and cs.manifest["nnz"] == 600 * 8
    direct = []
    for sh in store.iter_shards():
        with torch.no_grad():
            direct.append(sae.encode(torch.from_numpy(sh["acts"]).float()).numpy())
    direct = np.concatenate(direct)
    np.testing.assert_array_equal(cs.codes().toarray(), direct)  # float32 values: exact
    tt = store.token_table()
    got = pd.concat([pd.DataFrame({c: s[c] for c in ("window_index", "bp_start", "bp_end", "reverse")})
                     for s in cs.iter_shards()], ignore_index=True)
    for c in ("window_index", "bp_start", "bp_end", "reverse"):
        np.testing.assert_array_equal(got[c].to_numpy(), tt[c].to_numpy())
    assert cs.windows["window_id"].tolist() == store.windows["window_id"].tolist()
    dense_bytes = sum((store.path / s["file"]).stat().st_size for s in store.shards)
    assert cs.nbytes < 0.5 * dense_bytes  # k x 6 + per-token columns vs d_model x 4 (float32 store here)
    assert cs.manifest["index_dtype"] == "int16"


def test_resume_skips_written_shards_and_refuses_another_sae(store, sae, tmp_path, monkeypatch):
    out = tmp_path / "codes"
    first = encode_store(store, sae, out, progress=False)
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.safetensors")}
    (out / "shard-00001.safetensors").unlink()
    calls = []
    orig = store.load_shard
    monkeypatch.setattr(store, "load_shard", lambda i, **kw: calls.append(i) or orig(i, **kw))
    again = encode_store(store, sae, out, progress=False)
    assert calls == [1]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.safetensors")}["shard-00000.safetensors"] \
        == mtimes["shard-00000.safetensors"]
    np.testing.assert_array_equal(again.codes().toarray(), first.codes().toarray())
    other = TopKSAE(TopKSAEConfig(d_in=64, d_sae=512, k=8), seed=1)
    with pytest.raises(InputError, match="another activation store or SAE"):
        encode_store(store, other, out, progress=False)
    with pytest.raises(InputError, match="not a code store"):
        CodeStore(tmp_path)


def test_feature_sources_read_the_same_tokens_and_codes(store, sae, tmp_path):
    """The features step's three sources give the same batches: the code store, the SAE on the fly and
    the in-memory activations; a code store of another SAE is refused."""
    from genosae.features.activations import CodeSource, EncodedSource, feature_activations
    from genosae.features.pipeline import sae_source

    cs = encode_store(store, sae, tmp_path / "codes", progress=False)
    acts = feature_activations(sae, store)
    for batch_size in (150, 10_000):  # 150: one window (100 tokens) per batch; windows never split
        parts = {name: list(src.iter_batches(batch_size)) for name, src in
                 {"codes": CodeSource(cs), "encoded": EncodedSource(sae, store), "memory": acts}.items()}
        for name, batches in parts.items():
            codes = np.concatenate([b.codes.toarray() for b in batches])
            rows = np.concatenate([b.rows for b in batches])
            np.testing.assert_allclose(codes, acts.codes.toarray()[rows], rtol=1e-6, err_msg=name)
            assert sorted(rows.tolist()) == list(range(600)), name
            seen = [w for b in batches for w in set(b.tokens["window_index"])]
            assert len(seen) == len(set(seen)) == 6, name  # whole windows: each in exactly one batch
    assert (CodeSource(cs).window_counts(6) == 100).all()
    other = TopKSAE(TopKSAEConfig(d_in=64, d_sae=512, k=8), seed=1).eval()
    with pytest.raises(InputError, match="another SAE"):
        sae_source(store, other, cs, None)
