import pytest
import torch

from genosae.errors import InputError
from genosae.sae import SAETrainConfig, TopKSAE, TopKSAEConfig, get_architecture, train_sae
from genosae.sae.base import ARCHITECTURES, register_architecture, sparse_decode, to_dense

from .conftest import match_directions


def test_registry_refuses_duplicates_and_unknown():
    get_architecture("topk")
    assert {"topk", "batchtopk", "relu"} <= set(ARCHITECTURES)
    with pytest.raises(ValueError, match="already registered"):
        register_architecture(TopKSAEConfig, TopKSAE)
    with pytest.raises(InputError, match="unknown SAE architecture"):
        get_architecture("gated")


def test_config_round_trip():
    cfg = TopKSAEConfig(d_in=8, d_sae=32, k=4, metadata={"layer": 3})
    d = cfg.to_dict()
    assert d["architecture"] == "topk"
    assert TopKSAEConfig.from_dict(d) == cfg
    with pytest.raises(ValueError, match="k must be"):
        TopKSAEConfig(d_in=8, d_sae=4, k=5)


def test_sparse_training_path_matches_dense_autograd():
    torch.manual_seed(0)
    sae = TopKSAE(TopKSAEConfig(d_in=6, d_sae=20, k=3, b_dec_init="zeros"), seed=1)
    with torch.no_grad():
        sae.b_enc.normal_()
        sae.b_dec.normal_()
    x = torch.randn(9, 6)
    out = sae.forward_train(x)
    loss = (out.recon_BD - x).pow(2).sum()
    grads = torch.autograd.grad(loss, [sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec])
    # reference: plain dense autograd through the same selection
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    codes = torch.zeros_like(pre).scatter(1, pre.topk(3, dim=1).indices,
                                          torch.relu(pre.topk(3, dim=1).values))
    recon = codes @ sae.W_dec + sae.b_dec
    ref = torch.autograd.grad((recon - x).pow(2).sum(), [sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec])
    assert torch.allclose(out.recon_BD, recon, atol=1e-5)
    for g, r in zip(grads, ref):
        assert torch.allclose(g, r, atol=1e-4)
    dense = to_dense(out.rows_N, out.cols_N, out.vals_N.detach(), (9, 20))
    assert torch.allclose(dense @ sae.W_dec, sparse_decode(out.rows_N, out.cols_N, out.vals_N,
                                                            sae.W_dec, 9), atol=1e-5)


def test_topk_recovers_true_directions(synthetic, tmp_path):
    cfg = SAETrainConfig(architecture="topk", d_sae=48, k=3, batch_size=256, lr=1e-2,
                         training_tokens=256 * 250, checkpoint_every=10_000, log_every=50,
                         stats_tokens=4096, sae_options={"dead_tokens_threshold": 5000})
    sae = train_sae(synthetic, cfg, tmp_path, progress=False)
    best = match_directions(sae.W_dec.detach(), synthetic.dirs)
    assert (best > 0.9).all(), best
    codes = sae.encode(synthetic.acts[:100])
    assert ((codes > 0).sum(1) <= 3).all()
    assert (tmp_path / "training_curves.csv").exists()
    assert (tmp_path / "training_curves.png").stat().st_size > 0
