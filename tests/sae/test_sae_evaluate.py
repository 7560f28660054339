import json

import numpy as np
import pandas as pd
import pytest
import torch

from genosae.errors import InputError
from genosae.sae import ReLUSAE, ReLUSAEConfig, evaluate_sae, write_metrics


class _Tiny:
    """Six 2-d tokens in two windows of three."""

    d_model = 2
    n_windows = 2

    def __init__(self, acts):
        self.acts = acts

    def iter_batches(self, batch_size, *, shuffle=True, seed=0, window_mask=None, **kw):
        rows = np.arange(len(self.acts))
        if window_mask is not None:
            rows = rows[np.asarray(window_mask)[rows // 3]]
        for i in range(0, rows.size, batch_size):
            yield self.acts[torch.from_numpy(rows[i:i + batch_size])]


def _identityish_sae():
    # ReLU SAE, no normalisation: codes = relu(W_enc^T x), W_dec rows e1, -e1, e2 (3 latents)
    sae = ReLUSAE(ReLUSAEConfig(d_in=2, d_sae=3, outlier_norm_factor=None))
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor([[1.0, -1.0, 0.0], [0.0, 0.0, 0.5]]))
        sae.W_dec.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]]))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


ACTS = torch.tensor([[1.0, 2.0], [-1.0, 2.0], [2.0, -4.0], [0.5, 0.0], [-3.0, 1.0], [0.0, 0.0]])


def test_metrics_match_hand_computation():
    sae = _identityish_sae()
    m = evaluate_sae(sae, _Tiny(ACTS), n_tokens=100, batch_size=4)
    x = ACTS.numpy().astype(float)
    # hand: x1 is reconstructed exactly, x2 -> 0.5 * relu(x2)
    xh = np.stack([x[:, 0], 0.5 * np.maximum(x[:, 1], 0)], axis=1)
    codes = np.stack([np.maximum(x[:, 0], 0), np.maximum(-x[:, 0], 0),
                      0.5 * np.maximum(x[:, 1], 0)], axis=1)
    err = ((x - xh) ** 2).sum()
    assert m["fvu"] == pytest.approx(err / ((x - x.mean(0)) ** 2).sum())
    assert m["mse"] == pytest.approx(err / x.size)
    cos = [a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) if np.linalg.norm(a) and np.linalg.norm(b)
           else 0.0 for a, b in zip(x, xh)]
    assert m["cosine"] == pytest.approx(np.mean(cos))
    assert m["l0"] == pytest.approx((codes > 0).sum() / 6)
    rate = (codes > 0).mean(0)
    assert m["dead_frac"] == pytest.approx((rate == 0).mean())
    assert m["dense_frac"] == pytest.approx((rate > 0.1).mean())
    assert m["n_tokens"] == 6


def test_window_mask_token_budget_and_outliers():
    sae = _identityish_sae()
    m = evaluate_sae(sae, _Tiny(ACTS), n_tokens=100, window_mask=[False, True])
    assert m["n_tokens"] == 3
    assert evaluate_sae(sae, _Tiny(ACTS), n_tokens=4, batch_size=3)["n_tokens"] == 4
    sae.cfg.outlier_norm_threshold = 3.0  # drops [2, -4] and [-3, 1]
    m = evaluate_sae(sae, _Tiny(ACTS), n_tokens=100)
    assert (m["n_tokens"], m["n_outliers"]) == (4, 2)
    with pytest.raises(InputError, match="no tokens"):
        evaluate_sae(sae, _Tiny(ACTS), n_tokens=10, window_mask=[False, False])


class _FakeAdapter:
    """LM loss = mean squared distance of the transformed hidden state from the clean one."""

    def __init__(self):
        gen = torch.Generator().manual_seed(0)
        self.h = torch.randn(2, 5, 2, generator=gen) + torch.tensor([1.0, 0.5])

    def lm_loss(self, seqs, *, transform=None, mask_rate=0.15, seed=0):
        h = self.h[: len(seqs)]
        out = h if transform is None else transform(h.clone())
        return 1.0 + float((out - h).pow(2).mean())


def test_spliced_loss_and_fraction_recovered(tmp_path):
    sae = _identityish_sae()
    sae.act_mean.copy_(torch.tensor([1.0, 0.5]))
    ad = _FakeAdapter()
    m = evaluate_sae(sae, _Tiny(ACTS), n_tokens=6, adapter=ad, sequences=["ACGT", "GGCC"])
    h = ad.h
    with torch.no_grad():
        l_sae = 1.0 + float((sae(h.reshape(-1, 2)).reshape(h.shape) - h).pow(2).mean())
    l_zero = 1.0 + float(h.pow(2).mean())
    l_mean = 1.0 + float((h - torch.tensor([1.0, 0.5])).pow(2).mean())
    assert m["lm_loss_clean"] == 1.0
    assert m["lm_loss_sae"] == pytest.approx(l_sae)
    assert m["frac_loss_recovered"] == pytest.approx((l_zero - l_sae) / (l_zero - 1.0))
    assert m["frac_loss_recovered_mean_abl"] == pytest.approx((l_mean - l_sae) / (l_mean - 1.0))
    j, c = write_metrics(m, tmp_path / "metrics.json")
    assert json.loads(j.read_text())["fvu"] == pytest.approx(m["fvu"])
    assert pd.read_csv(c)["lm_loss_sae"].iloc[0] == pytest.approx(l_sae)
    with pytest.raises(InputError, match="both"):
        evaluate_sae(sae, _Tiny(ACTS), n_tokens=6, adapter=ad)
