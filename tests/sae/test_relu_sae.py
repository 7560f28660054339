import torch

from genosae.sae import ReLUSAE, ReLUSAEConfig, SAETrainConfig, train_sae


def test_l1_penalty_is_scaled_by_decoder_norms():
    sae = ReLUSAE(ReLUSAEConfig(d_in=4, d_sae=6, l1_coefficient=2.0, l1_warmup_fraction=0.0))
    x = torch.randn(5, 4)
    out = sae.forward_train(x)
    with torch.no_grad():
        sae.W_dec.mul_(3.0)
    expected = 2.0 * (out.codes_BF * sae.W_dec.norm(dim=1)).sum(1).mean()
    assert torch.allclose(sae.sparsity_loss(out, 5, 1.0), expected)
    assert not ReLUSAE.unit_norm_decoder


def test_relu_sae_trains_sparse_codes(synthetic, tmp_path):
    cfg = SAETrainConfig(architecture="relu", d_sae=48, l1_coefficient=0.5, batch_size=256,
                         lr=3e-3, training_tokens=256 * 150, checkpoint_every=10_000,
                         stats_tokens=4096)
    sae = train_sae(synthetic, cfg, tmp_path, progress=False)
    x = synthetic.acts[:1000]
    with torch.no_grad():
        recon = sae(x)
    fvu = float((recon - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum())
    l0 = float((sae.encode(x) > 0).sum(1).float().mean())
    assert fvu < 0.3 and l0 < 24, (fvu, l0)
