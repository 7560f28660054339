import numpy as np
import pandas as pd
import pytest
import torch

from genosae.errors import InputError
from genosae.sae import SAETrainConfig, SAETrainer, TopKSAE, split_windows, train_sae
from genosae.sae.train import lr_factor

from .conftest import SyntheticSource


def _cfg(**kw):
    base = dict(architecture="topk", d_sae=32, k=3, batch_size=128, lr=2e-3,
                training_tokens=128 * 20, checkpoint_every=10, log_every=5, stats_tokens=1024,
                sae_options={"dead_tokens_threshold": 1000})
    base.update(kw)
    return SAETrainConfig(**base)


class _Killer(SyntheticSource):
    """Raises (like a killed job) once ``kill_at`` batches of the training stream were drawn."""

    def __init__(self, kill_at, **kw):
        super().__init__(**kw)
        self.kill_at = kill_at
        self.n_train = 0

    def iter_batches(self, batch_size, *, seed=0, **kw):
        for b in super().iter_batches(batch_size, seed=seed, **kw):
            if seed < 1_000_000:  # the training stream, not the statistics sample
                self.n_train += 1
                if self.kill_at is not None and self.n_train > self.kill_at:
                    raise KeyboardInterrupt
            yield b


def test_resume_after_kill_is_identical(tmp_path):
    cfg = _cfg()
    full = train_sae(SyntheticSource(n_tokens=3000), cfg, tmp_path / "full", progress=False)
    killer = _Killer(kill_at=13, n_tokens=3000)  # dies during step 13, after the step-10 checkpoint
    with pytest.raises(KeyboardInterrupt):
        train_sae(killer, cfg, tmp_path / "resumed", progress=False)
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)["step"] == 10
    assert not (tmp_path / "resumed" / "cfg.json").exists()
    resumed = train_sae(SyntheticSource(n_tokens=3000), cfg, tmp_path / "resumed", progress=False)
    for name, t in full.state_dict().items():
        assert torch.equal(t, resumed.state_dict()[name]), name
    a = pd.read_csv(tmp_path / "full" / "training_curves.csv")
    b = pd.read_csv(tmp_path / "resumed" / "training_curves.csv")
    pd.testing.assert_frame_equal(a, b)
    # a finished run is not retrained (and its stream not replayed)
    src = SyntheticSource(n_tokens=3000)
    again = train_sae(src, cfg, tmp_path / "full", progress=False)
    assert src.calls == 0
    assert torch.equal(again.W_dec, full.W_dec)


def test_changed_config_does_not_resume_foreign_checkpoint(tmp_path):
    src = SyntheticSource(n_tokens=2000)
    train_sae(src, _cfg(training_tokens=128 * 10), tmp_path, progress=False)
    sae = train_sae(src, _cfg(training_tokens=128 * 10, lr=1e-3), tmp_path, progress=False)
    assert sae.cfg.metadata["training"]["lr"] == 1e-3


def test_auxk_revives_dead_latents():
    torch.manual_seed(0)
    src = SyntheticSource(n_tokens=6000, d=16, n_dirs=40, n_active=4)
    cfg = _cfg(d_sae=64, k=4, batch_size=256, training_tokens=256 * 200, lr=3e-3,
               sae_options={"dead_tokens_threshold": 512, "aux_coefficient": 1.0})
    sae = TopKSAE(cfg.sae_config(16), seed=0)
    sae.set_normalization(src.acts)
    sae.init_b_dec(sae.normalize(src.acts))
    with torch.no_grad():  # kill half of the dictionary: encoder columns far below threshold
        sae.b_enc[32:] = -5.0
    trainer = SAETrainer(sae, cfg)
    x_all = src.acts
    dead = []
    for step in range(cfg.n_steps):
        x = x_all[(step * 256) % 5888:(step * 256) % 5888 + 256]
        m = trainer.update(step, x)
        dead.append(m["dead_frac"])
    assert max(dead[:5]) < 0.6 and max(dead) >= 0.45  # half became dead ...
    assert dead[-1] < 0.5 * max(dead)  # ... and AuxK brought most back


def test_auxk_off_leaves_latents_dead():
    src = SyntheticSource(n_tokens=6000, d=16, n_dirs=40, n_active=4)
    cfg = _cfg(d_sae=64, k=4, batch_size=256, training_tokens=256 * 60, lr=3e-3,
               sae_options={"dead_tokens_threshold": 512, "aux_coefficient": 0.0})
    sae = TopKSAE(cfg.sae_config(16), seed=0)
    sae.set_normalization(src.acts)
    with torch.no_grad():
        sae.b_enc[32:] = -5.0
    trainer = SAETrainer(sae, cfg)
    for step in range(cfg.n_steps):
        m = trainer.update(step, src.acts[step * 64: step * 64 + 256])
    assert m["dead_frac"] >= 0.45


def test_lr_schedule_and_split():
    assert lr_factor(0, 100, 0.1, 0.2) == pytest.approx(0.1)
    assert lr_factor(50, 100, 0.1, 0.2) == 1.0
    assert lr_factor(99, 100, 0.1, 0.2) == pytest.approx(1 / 20)
    w = pd.DataFrame({"chrom": ["chrI"] * 90 + ["chrXVI"] * 10})
    held = split_windows(w, ["chrXVI"], fraction=0.1, seed=3)
    assert held[90:].all() and held[:90].sum() == 9
    assert np.array_equal(held, split_windows(w, ["chrXVI"], fraction=0.1, seed=3))
    with pytest.raises(InputError, match="held out"):
        split_windows(w, ["chrI", "chrXVI"])


def test_outliers_are_excluded():
    src = SyntheticSource(n_tokens=2000)
    acts = src.acts.clone()
    acts[:5] *= 100.0
    sae = TopKSAE(_cfg().sae_config(16))
    info = sae.set_normalization(acts)
    assert info["n_outliers"] == 5
    assert sae.inlier_mask(acts)[:5].sum() == 0 and sae.inlier_mask(acts)[5:].all()
    x = sae.normalize(acts[5:])
    assert float(x.pow(2).sum(1).mean()) == pytest.approx(16.0, rel=1e-3)
