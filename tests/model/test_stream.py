"""ModelActivationStream: the tokens a dense store would hold, shuffled in groups; exact, cheap skips;
an SAE trained on it resumes bit-identically after a kill without recomputing the skipped groups."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from tiny_lms import random_dna

from genosae.model.adapter import load_model
from genosae.model.embed import embed_windows
from genosae.model.stream import ModelActivationStream
from genosae.sae import SAETrainConfig, train_sae

GENOME = {"chrA": random_dna(6_000, 3, with_n=True), "chrB": random_dna(4_000, 4)}


@pytest.fixture(scope="module")
def cnn(model_dirs):
    return load_model(model_dirs["cnn"], layer=2, device="cpu", dtype="float32")


def _windows() -> pd.DataFrame:
    rows = [(f"{c}:{s}", c, s, s + 100, "+") for c, n in (("chrA", 6_000), ("chrB", 4_000))
            for s in range(0, n - 100, 100)]
    return pd.DataFrame(rows, columns=["window_id", "chrom", "start", "end", "strand"])


def _seqs(win: pd.DataFrame) -> list[str]:
    return [GENOME[c][s:e] for c, s, e in zip(win["chrom"], win["start"], win["end"])]


class Counting:
    """The adapter, counting the windows it runs the model on."""

    def __init__(self, adapter):
        self.adapter, self.n_model_windows = adapter, 0

    def __getattr__(self, name):
        return getattr(self.adapter, name)

    def hidden_states(self, seqs, **kw):
        self.n_model_windows += len(seqs)
        return self.adapter.hidden_states(seqs, **kw)


@pytest.mark.parametrize("rc", [False, True])
def test_a_pass_serves_the_dense_stores_tokens(cnn, tmp_path, rc):
    w = _windows()
    store = embed_windows(cnn, w, _seqs, tmp_path / "s", storage_dtype="float32", progress=False,
                          reverse_complement=rc)
    dense = torch.cat([b for b in store.iter_batches(10_000, shuffle=False)])
    stream = ModelActivationStream(cnn, w, _seqs, buffer_tokens=1_000, reverse_complement=rc)
    assert stream.windows_per_group == (1_000 // (200 if rc else 100))
    got = list(stream.iter_batches(64, seed=3))
    assert all(b.shape == (64, cnn.d_model) for b in got[:-1]) and 0 < got[-1].shape[0] <= 64  # last: the rest
    assert len(got) == stream.batches_per_pass(64, seed=3)
    x = torch.cat(got)
    # every streamed token is a stored token (float32 both: exact), none twice beyond the store's count
    key = lambda t: [tuple(r) for r in t.numpy().round(5)]  # noqa: E731
    have = pd.Series(key(dense)).value_counts()
    want = pd.Series(key(x)).value_counts()
    assert (want <= have.reindex(want.index).fillna(0)).all()
    n_kept = int(stream.kept_token_counts().sum())
    assert n_kept == dense.shape[0]  # N-free, non-special tokens: the same rule as the store
    assert n_kept - x.shape[0] < 64 * (len(stream._order(3, True, None, 64)) - 1)  # per-group remainders only
    assert not torch.equal(x[:64], dense[:64])  # shuffled
    # a window mask keeps only its windows' tokens
    mask = (w["chrom"] == "chrB").to_numpy()
    xb = torch.cat(list(stream.iter_batches(32, seed=0, window_mask=mask)))
    chr_b = store.iter_batches(10_000, shuffle=False, window_mask=mask)
    have_b = pd.Series(key(torch.cat(list(chr_b)))).value_counts()
    assert (pd.Series(key(xb)).value_counts().index.isin(have_b.index)).all()


def test_skip_batches_is_the_tail_without_running_the_model_on_skipped_groups(cnn):
    w = _windows()
    full = list(ModelActivationStream(cnn, w, _seqs, buffer_tokens=800).iter_batches(50, seed=7))
    counting = Counting(cnn)
    stream = ModelActivationStream(counting, w, _seqs, buffer_tokens=800)
    per_group = [int(stream.kept_token_counts()[g].sum()) // 50 for g in stream._order(7, True, None, 50)]
    skip = per_group[0] + per_group[1] + 3  # into the third group
    tail = list(stream.iter_batches(50, seed=7, skip_batches=skip))
    assert len(tail) == len(full) - skip
    assert all(torch.equal(a, b) for a, b in zip(tail, full[skip:]))
    assert counting.n_model_windows == len(w) - 2 * stream.windows_per_group  # groups 1-2 never ran


def test_sae_on_the_stream_resumes_bit_identically(cnn, tmp_path):
    w = _windows()
    cfg = SAETrainConfig(architecture="topk", d_sae=32, k=4, batch_size=64, lr=2e-3, training_tokens=64 * 30,
                         checkpoint_every=10, log_every=5, stats_tokens=512)
    counting_full = Counting(cnn)
    full = train_sae(ModelActivationStream(counting_full, w, _seqs, buffer_tokens=600), cfg, tmp_path / "full",
                     progress=False)
    probe = ModelActivationStream(cnn, w, _seqs, buffer_tokens=600)

    class Killed(ModelActivationStream):
        drawn = 0

        def iter_batches(self, batch_size, *, seed=0, **kw):
            for b in super().iter_batches(batch_size, seed=seed, **kw):
                if seed < 1_000_000:
                    Killed.drawn += 1
                    if Killed.drawn > 13:
                        raise KeyboardInterrupt
                yield b

    with pytest.raises(KeyboardInterrupt):
        train_sae(Killed(cnn, w, _seqs, buffer_tokens=600), cfg, tmp_path / "resumed", progress=False)
    counting = Counting(cnn)
    resumed = train_sae(ModelActivationStream(counting, w, _seqs, buffer_tokens=600), cfg, tmp_path / "resumed",
                        progress=False)
    for name, t in full.state_dict().items():
        assert torch.equal(t, resumed.state_dict()[name]), name
    # the resumed run skipped the group its 10 checkpointed steps used up (9 batches of ~600 tokens) and
    # the statistics sample (in the checkpoint), computing only the groups from the checkpoint on
    g0 = probe._order(cfg.seed, True, None, 64)[0]
    assert int(probe.kept_token_counts()[g0].sum()) // 64 < 10  # the checkpoint lies past group 0
    stats = min(probe.group_size(8192), len(w))  # sample_tokens reads one 8192-token group of the stats stream
    assert counting.n_model_windows == counting_full.n_model_windows - stats - len(g0)
    assert np.isclose(resumed.cfg.metadata["training"]["tokens_seen"], 64 * 30)
