import torch

from genosae.sae import BatchTopKSAE, BatchTopKSAEConfig, SAETrainConfig, train_sae

from .conftest import match_directions


def test_batch_selection_keeps_k_per_token_on_average():
    sae = BatchTopKSAE(BatchTopKSAEConfig(d_in=4, d_sae=10, k=2))
    pre = torch.randn(6, 10)
    rows, cols = sae.select(pre)
    assert rows.numel() <= 12 and bool((rows[1:] >= rows[:-1]).all())
    chosen = pre[rows, cols]
    assert bool((chosen > 0).all())
    # the selected entries are the largest of the whole batch
    rest = pre.clone()
    rest[rows, cols] = -torch.inf
    assert float(rest.max()) <= float(chosen.min())


def test_batchtopk_recovers_directions_and_threshold_inference(synthetic, tmp_path):
    cfg = SAETrainConfig(architecture="batchtopk", d_sae=48, k=3, batch_size=256, lr=1e-2,
                         training_tokens=256 * 250, checkpoint_every=10_000, log_every=50,
                         stats_tokens=4096, sae_options={"dead_tokens_threshold": 5000})
    sae = train_sae(synthetic, cfg, tmp_path, progress=False)
    assert (match_directions(sae.W_dec.detach(), synthetic.dirs) > 0.9).all()
    thr = sae.threshold
    assert float(thr.min()) > 0 and torch.all(thr == thr[0])
    # inference (JumpReLU at the estimated threshold) keeps about k latents per token
    l0 = float((sae.encode(synthetic.acts[:2000]) > 0).sum(1).float().mean())
    assert 1.5 <= l0 <= 6.0, l0
