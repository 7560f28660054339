"""Activation store: write/resume/refuse, readers, streaming batches, merge of parallel parts."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from genosae.errors import InputError
from genosae.model.store import ActivationStore, ActivationStoreWriter, merge_stores

D = 8
META = {"model": {"path": "tiny", "revision": None, "config_sha": "abc"}, "layer": 2, "d_model": D,
        "tokenization": "char", "config_hash": "h1"}


def _windows(n: int = 6) -> pd.DataFrame:
    return pd.DataFrame({"window_id": [f"w{i:02d}" for i in range(n)], "chrom": ["chrI"] * 3 + ["chrII"] * (n - 3),
                         "start": np.arange(n) * 10, "end": np.arange(n) * 10 + 5, "strand": "+",
                         "region_id": "r"})


def _shard(a: int, b: int, per: int = 5, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed + a)
    n = (b - a) * per
    wi = np.repeat(np.arange(a, b), per)
    ti = np.tile(np.arange(per), b - a)
    special = ti == 0
    return dict(acts=rng.normal(size=(n, D)).astype(np.float32), window_index=wi, token_index=ti,
                bp_start=np.where(special, -1, wi * 10 + ti - 1), bp_end=np.where(special, -1, wi * 10 + ti),
                is_special=special, has_n=(ti == per - 1) & (wi == a), window_range=(a, b))


def _write(path, shards, windows=None, dtype="float16", meta=META):
    w = ActivationStoreWriter(path, manifest_meta=meta, windows=_windows() if windows is None else windows,
                              storage_dtype=dtype)
    for idx, (a, b) in shards:
        w.write_shard(idx, **_shard(a, b))
    return w


def test_roundtrip_and_token_table(tmp_path):
    store = _write(tmp_path / "s", [(0, (0, 2)), (1, (2, 4)), (2, (4, 6))], dtype="float32").finalize()
    assert store.n_tokens == 30 and store.d_model == D and store.complete
    assert list(store.windows["window_id"]) == [f"w{i:02d}" for i in range(6)]
    acts = np.concatenate([s["acts"] for s in store.iter_shards()])
    expect = np.concatenate([_shard(a, b)["acts"] for a, b in [(0, 2), (2, 4), (4, 6)]])
    np.testing.assert_array_equal(acts, expect)
    tt = store.token_table()
    assert list(tt.columns) == ["window_index", "token_index", "bp_start", "bp_end", "is_special", "has_n",
                                "chrom", "window_id"]
    assert len(tt) == 30 and tt["chrom"].iloc[-1] == "chrII" and tt["window_id"].iloc[7] == "w01"
    assert tt["bp_start"].dtype == np.int64 and tt["is_special"].dtype == bool


def test_float16_storage_refuses_overflow(tmp_path):
    """bfloat16 (Evo 2) or float32 activations beyond float16's range are refused, not stored as inf."""
    w = ActivationStoreWriter(tmp_path / "s", manifest_meta=META, windows=_windows(), storage_dtype="float16")
    shard = _shard(0, 2)
    shard["acts"] = torch.from_numpy(shard["acts"]).to(torch.bfloat16)
    w.write_shard(0, **shard)  # in range: fine
    shard["acts"][3, 1] = 7.0e4
    with pytest.raises(InputError, match=r"reach 7\.0\d*e\+04, beyond float16's range") as err:
        w.write_shard(1, **shard)
    assert err.value.record == "embed.storage_dtype"
    ActivationStoreWriter(tmp_path / "f32", manifest_meta=META, windows=_windows(),
                          storage_dtype="float32").write_shard(0, **shard)  # float32 holds it


def test_bfloat16_storage(tmp_path):
    store = _write(tmp_path / "s", [(0, (0, 6))], dtype="bfloat16").finalize()
    sh = next(store.iter_shards(framework="torch"))
    assert sh["acts"].dtype == torch.bfloat16
    np.testing.assert_allclose(next(store.iter_shards())["acts"], _shard(0, 6)["acts"], rtol=1e-2, atol=1e-2)


def test_resume_and_refuse(tmp_path):
    _write(tmp_path / "s", [(0, (0, 2))])
    w = ActivationStoreWriter(tmp_path / "s", manifest_meta=META, windows=_windows())
    assert w.completed_shards() == {0}
    with pytest.raises(InputError, match="layer"):
        ActivationStoreWriter(tmp_path / "s", manifest_meta={**META, "layer": 3}, windows=_windows())
    with pytest.raises(InputError, match="windows_hash"):
        ActivationStoreWriter(tmp_path / "s", manifest_meta=META, windows=_windows(7))
    with pytest.raises(InputError, match="config_hash"):
        ActivationStoreWriter(tmp_path / "s", manifest_meta={**META, "config_hash": "h2"}, windows=_windows())


def test_partial_shard_never_read(tmp_path):
    _write(tmp_path / "s", [(0, (0, 2))])
    # a stray shard file (e.g. a killed writer's rename without manifest update) and a temp file
    (tmp_path / "s" / "shard-00001.safetensors").write_bytes(b"garbage")
    (tmp_path / "s" / ".shard-00002.safetensors.x.tmp").write_bytes(b"garbage")
    store = ActivationStore(tmp_path / "s")
    assert store.n_tokens == 10 and len(list(store.iter_shards())) == 1
    assert sum(b.shape[0] for b in store.iter_batches(4, exclude_special=False, exclude_n=False)) == 10


def test_iter_batches_filters_shuffles_deterministically(tmp_path):
    store = _write(tmp_path / "s", [(0, (0, 2)), (1, (2, 4)), (2, (4, 6))], dtype="float32").finalize()
    tt = store.token_table()
    allacts = np.concatenate([s["acts"] for s in store.iter_shards()])
    mask = np.array([True, False, True, True, False, True])
    kw = dict(shuffle=True, seed=3, window_mask=mask, buffer_shards=2, with_index=True)
    b1 = list(store.iter_batches(4, **kw))
    b2 = list(store.iter_batches(4, **kw))
    idx = torch.cat([i for _, i in b1]).numpy()
    np.testing.assert_array_equal(idx, torch.cat([i for _, i in b2]).numpy())
    assert all(x.shape == (4, D) for x, _ in b1[:-1]) and b1[0][0].dtype == torch.float32
    expect = tt.index[~tt.is_special & ~tt.has_n & mask[tt.window_index]].to_numpy()
    assert sorted(idx.tolist()) == expect.tolist()
    assert idx.tolist() != sorted(idx.tolist())  # shuffled
    np.testing.assert_array_equal(torch.cat([x for x, _ in b1]).numpy(), allacts[idx])
    other = torch.cat([i for _, i in store.iter_batches(4, **{**kw, "seed": 4})]).numpy()
    assert other.tolist() != idx.tolist()
    ordered = torch.cat([i for _, i in store.iter_batches(7, shuffle=False, with_index=True)]).numpy()
    assert ordered.tolist() == tt.index[~tt.is_special & ~tt.has_n].tolist()


def test_merge_parts(tmp_path):
    w0 = _write(tmp_path / "p0", [(0, (0, 2)), (2, (4, 6))])
    w0.finalize()
    w1 = _write(tmp_path / "p1", [(1, (2, 4))])
    with pytest.raises(InputError, match="unfinished"):
        merge_stores([tmp_path / "p0", tmp_path / "p1"], tmp_path / "m")
    w1.finalize()
    with pytest.raises(InputError, match="cover window 2"):
        merge_stores([tmp_path / "p0"], tmp_path / "m")
    merged = merge_stores([tmp_path / "p0", tmp_path / "p1"], tmp_path / "m")
    assert [s["index"] for s in merged.shards] == [0, 1, 2] and merged.n_tokens == 30
    whole = _write(tmp_path / "whole", [(0, (0, 2)), (1, (2, 4)), (2, (4, 6))]).finalize()
    for a, b in zip(merged.iter_shards(), whole.iter_shards()):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    assert json.loads((tmp_path / "m" / "manifest.json").read_text())["complete"]
    _write(tmp_path / "p2", [(3, (0, 1))], meta={**META, "layer": 5}).finalize()
    with pytest.raises(InputError, match="layer"):
        merge_stores([tmp_path / "p0", tmp_path / "p2"], tmp_path / "m2")


def test_not_a_store(tmp_path):
    with pytest.raises(InputError, match="not an activation store"):
        ActivationStore(tmp_path)
