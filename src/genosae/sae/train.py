"""Train an SAE on a stream of activation batches, with exact resume after a kill.

The trainer (:class:`SAETrainer`, ``update(step, x)``) is separate from the models; ``train_sae``
drives it over any *source* with ``d_model`` and ``iter_batches(batch_size, *, shuffle, seed,
exclude_special, exclude_n, window_mask)`` (e.g. :class:`genosae.model.store.ActivationStore`).
Batches are streamed; the store is never loaded whole.

Determinism: the SAE init, the batch order (``seed`` for epoch 0, ``seed + e`` for epoch ``e``) and
every update are seeded; on CPU a resumed run replays the skipped batches of the stream and
continues bit-identically from the checkpoint.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch

from genosae._io import atomic_path, stable_hash, write_table
from genosae.errors import InputError
from genosae.sae.base import SAE, SAEConfig, get_architecture

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
CURVES_CSV = "training_curves.csv"
CURVES_PNG = "training_curves.png"


class ActivationSource(Protocol):
    """What the trainer needs from an activation store."""

    d_model: int

    def iter_batches(self, batch_size: int, *, shuffle: bool, seed: int,
                     **kwargs: Any) -> Iterator[torch.Tensor]: ...


@dataclass
class SAETrainConfig:
    """Everything that defines one SAE training run (``config["sae"]`` plus optimiser details).

    ``d_sae`` defaults to ``expansion_factor * d_model``. The learning rate warms up linearly over
    ``warmup_fraction`` of the steps and decays linearly to 0 over the last ``decay_fraction``.
    ``stats_tokens`` tokens (a separately seeded stream) fit the normalisation, outlier threshold
    and ``b_dec``. ``checkpoint_every`` steps a resumable checkpoint is written; ``log_every``
    steps a row of the training curves.
    """

    architecture: str = "batchtopk"
    expansion_factor: int = 8
    d_sae: int | None = None
    k: int = 32
    l1_coefficient: float = 5.0
    batch_size: int = 2048
    lr: float = 4e-4
    training_tokens: int = 2_000_000
    seed: int = 0
    warmup_fraction: float = 0.05
    decay_fraction: float = 0.2
    adam_betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float | None = 1.0
    stats_tokens: int = 65_536
    checkpoint_every: int = 200
    log_every: int = 10
    exclude_special: bool = True
    exclude_n: bool = True
    sae_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("batch_size", "training_tokens", "stats_tokens", "checkpoint_every",
                     "log_every", "k", "expansion_factor"):
            if getattr(self, name) < 1:
                raise InputError(f"must be >= 1, got {getattr(self, name)}", record=f"sae.{name}")
        if self.lr <= 0:
            raise InputError(f"must be > 0, got {self.lr}", record="sae.lr")
        self.adam_betas = tuple(self.adam_betas)  # type: ignore[assignment]
        get_architecture(self.architecture)

    @property
    def n_steps(self) -> int:
        return math.ceil(self.training_tokens / self.batch_size)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["adam_betas"] = list(self.adam_betas)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SAETrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def from_config(cls, sae_section: dict[str, Any], *, seed: int | None = None,
                    **overrides: Any) -> SAETrainConfig:
        """From the workflow config's ``sae`` section (``seed`` default: first of ``seeds``)."""
        keys = ("architecture", "expansion_factor", "k", "l1_coefficient", "batch_size", "lr",
                "training_tokens")
        kw = {k: sae_section[k] for k in keys if k in sae_section}
        seeds = sae_section.get("seeds") or [0]
        kw["seed"] = seeds[0] if seed is None else seed
        kw.update(overrides)
        return cls(**kw)

    def sae_config(self, d_in: int, metadata: dict[str, Any] | None = None) -> SAEConfig:
        cfg_cls, _ = get_architecture(self.architecture)
        names = {f.name for f in dataclasses.fields(cfg_cls)}
        kw: dict[str, Any] = {"d_in": d_in,
                              "d_sae": self.d_sae or self.expansion_factor * d_in,
                              "metadata": dict(metadata or {})}
        if "k" in names:
            kw["k"] = self.k
        if "l1_coefficient" in names:
            kw["l1_coefficient"] = self.l1_coefficient
        unknown = set(self.sae_options) - names
        if unknown:
            raise InputError(f"unknown SAE options {sorted(unknown)} for {self.architecture!r}",
                             record="sae_options")
        kw.update(self.sae_options)
        return cfg_cls(**kw)


def lr_factor(step: int, n_steps: int, warmup_fraction: float, decay_fraction: float) -> float:
    """Linear warm-up, constant, then linear decay to 0 (multiplier of ``lr`` at ``step``)."""
    warm = max(1, round(warmup_fraction * n_steps)) if warmup_fraction > 0 else 0
    decay = round(decay_fraction * n_steps)
    if warm and step < warm:
        return (step + 1) / warm
    if decay and step >= n_steps - decay:
        return max(0.0, (n_steps - step) / decay)
    return 1.0


class SAETrainer:
    """Adam with warm-up/decay and grad clipping over one SAE; ``update(step, x)`` is one step."""

    def __init__(self, sae: SAE, cfg: SAETrainConfig) -> None:
        self.sae = sae
        self.cfg = cfg
        self.optimizer = torch.optim.Adam(sae.parameters(), lr=cfg.lr, betas=cfg.adam_betas)

    def update(self, step: int, acts_BD: torch.Tensor) -> dict[str, float]:
        """One optimiser step on raw activations; returns the step's metrics (normalised units)."""
        sae, cfg = self.sae, self.cfg
        keep = sae.inlier_mask(acts_BD)
        x = sae.normalize(acts_BD[keep])
        B = x.shape[0]
        if B == 0:
            return {}
        frac = step / max(1, cfg.n_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = cfg.lr * lr_factor(step, cfg.n_steps, cfg.warmup_fraction,
                                             cfg.decay_fraction)
        out = sae.forward_train(x)
        err = (out.recon_BD - x).pow(2).sum(1)
        mse = err.mean()
        aux = sae.aux_loss(x, out)
        sparsity = sae.sparsity_loss(out, B, frac)
        loss = mse + aux + sparsity
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        sae.remove_parallel_grad()
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(sae.parameters(), cfg.grad_clip)
        self.optimizer.step()
        sae.normalize_decoder()
        sae.update_firing(out, B)
        sae.after_step(out, step)
        with torch.no_grad():
            total = (x - x.mean(0)).pow(2).sum()
            fvu = float(err.detach().sum() / total.clamp(min=1e-12))
        return {"loss": float(loss.detach()), "mse": float(mse.detach()), "aux_loss": float(aux.detach()),
                "sparsity_loss": float(sparsity.detach()), "fvu": fvu,
                "l0": out.rows_N.numel() / B,
                "dead_frac": float(sae.dead_mask().float().mean()),
                "lr": self.optimizer.param_groups[0]["lr"], "n_tokens": B}

    def state_dict(self) -> dict[str, Any]:
        return {"sae": self.sae.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sae.load_state_dict(state["sae"])
        self.optimizer.load_state_dict(state["optimizer"])


# ----------------------------------------------------------------------------------- streaming
def iter_source(source: ActivationSource, batch_size: int, *, seed: int,
                window_mask: np.ndarray | None = None, exclude_special: bool = True,
                exclude_n: bool = True, epochs: int | None = None, start_batch: int = 0) -> Iterator[torch.Tensor]:
    """Endless (or ``epochs``-long) stream of shuffled float32 batches; epoch ``e`` uses ``seed + e``.

    ``start_batch`` batches are left out first: sources with ``supports_skip``
    (:class:`~genosae.model.stream.ModelActivationStream`) skip them without computing them, others
    are read and dropped (a store reads its shards again).
    """
    epoch = 0
    skip = int(start_batch)
    while epochs is None or epoch < epochs:
        kwargs: dict[str, Any] = {"shuffle": True, "seed": seed + epoch,
                                  "exclude_special": exclude_special, "exclude_n": exclude_n}
        if window_mask is not None:
            kwargs["window_mask"] = window_mask
        if skip and getattr(source, "supports_skip", False):
            per_pass = source.batches_per_pass(batch_size, **kwargs)  # type: ignore[attr-defined]
            if per_pass == 0:
                raise InputError("the activation source yields no full batch per pass; lower "
                                 "sae.batch_size or add windows", path=getattr(source, "path", None))
            if skip >= per_pass:
                skip -= per_pass
                epoch += 1
                continue
            kwargs["skip_batches"], skip = skip, 0
        n = 0
        for batch in source.iter_batches(batch_size, **kwargs):
            x = batch[0] if isinstance(batch, tuple) else batch
            n += x.shape[0]
            if skip:
                skip -= 1
                continue
            yield torch.as_tensor(x).float()
        if n == 0 and not kwargs.get("skip_batches"):
            raise InputError("the activation source yielded no tokens (empty store or all "
                             "windows masked out); embed more windows or relax the split",
                             path=getattr(source, "path", None))
        epoch += 1


def sample_tokens(source: ActivationSource, n_tokens: int, *, seed: int, batch_size: int = 8192,
                  **kwargs: Any) -> torch.Tensor:
    """The first ``n_tokens`` tokens of a seeded shuffled pass (one epoch at most)."""
    parts, n = [], 0
    for x in iter_source(source, batch_size, seed=seed, epochs=1, **kwargs):
        parts.append(x[: n_tokens - n])
        n += parts[-1].shape[0]
        if n >= n_tokens:
            break
    return torch.cat(parts)


# ------------------------------------------------------------------------------------ training
def train_sae(source: ActivationSource, cfg: SAETrainConfig, out_dir: str | os.PathLike[str], *,
              device: str = "cpu", progress: bool = True, window_mask: np.ndarray | None = None,
              metadata: dict[str, Any] | None = None) -> SAE:
    """Train an SAE on ``source`` and save it (SAELens layout) into ``out_dir``.

    Parameters
    ----------
    source
        Activation store (or any object with ``d_model`` and ``iter_batches``).
    cfg
        Run settings; :attr:`SAETrainConfig.n_steps` optimiser steps of ``batch_size`` tokens.
    out_dir
        Receives ``checkpoint.pt`` (every ``checkpoint_every`` steps; a rerun resumes from it),
        ``training_curves.csv``/``.png`` and the saved SAE (:func:`genosae.sae.io.save_sae`).
    window_mask
        Bool per window of the store: only ``True`` windows train (held-out split).
    metadata
        Provenance stored in the SAE config (model name, layer, hook name, data hash, ...).

    Returns
    -------
    The trained SAE (on ``device``, eval mode).
    """
    from genosae.sae.io import save_sae

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device)
    torch.manual_seed(cfg.seed)
    d_in = int(source.d_model)
    meta = dict(metadata or {})
    run_id = stable_hash({"train": cfg.to_dict(), "d_in": d_in, "meta": meta,
                          "mask": None if window_mask is None else
                          stable_hash(np.asarray(window_mask, dtype=bool).tolist())})
    stream_kw = {"window_mask": window_mask, "exclude_special": cfg.exclude_special,
                 "exclude_n": cfg.exclude_n}
    sae_cfg = cfg.sae_config(d_in, meta)
    _, sae_cls = get_architecture(cfg.architecture)
    sae = sae_cls(sae_cfg, seed=cfg.seed)
    ckpt_path = out_dir / CHECKPOINT_NAME
    start_step, curves, norm_info, tokens_seen = 0, [], {}, 0
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False) if ckpt_path.exists() else None
    if ckpt is not None and ckpt.get("run_id") != run_id:
        log.warning("%s belongs to another run (config or data changed); starting afresh", ckpt_path)
        ckpt = None
    reference = None
    if ckpt is None:
        sample = sample_tokens(source, cfg.stats_tokens, seed=cfg.seed + 1_000_003, **stream_kw)
        norm_info = sae.set_normalization(sample)
        inl = sample[sae.inlier_mask(sample)]
        sae.init_b_dec(sae.normalize(inl))
        reference = inl[:64].clone()
    sae.to(dev)
    trainer = SAETrainer(sae, cfg)
    if ckpt is not None:
        sae.cfg = type(sae_cfg).from_dict(ckpt["sae_cfg"])
        trainer.load_state_dict(ckpt["trainer"])
        start_step, curves = ckpt["step"], ckpt["curves"]
        norm_info, tokens_seen, reference = ckpt["norm_info"], ckpt["tokens_seen"], ckpt["reference"]
        log.info("resuming %s from step %d", out_dir, start_step)
    sae.train()

    # resume: the stream from the checkpoint's batch on (skipped without computing where the source can)
    stream = iter_source(source, cfg.batch_size, seed=cfg.seed, start_batch=min(start_step, cfg.n_steps),
                         **stream_kw)
    bar = _progress(cfg.n_steps, start_step, enabled=progress)
    t0, tok0 = time.perf_counter(), 0
    for step in range(start_step, cfg.n_steps):
        x = next(stream).to(dev)
        m = trainer.update(step, x)
        tokens_seen += x.shape[0]
        tok0 += x.shape[0]
        if m and (step % cfg.log_every == 0 or step == cfg.n_steps - 1):
            curves.append({"step": step, "tokens": tokens_seen, **m})
            if bar is not None:
                rate = tok0 / max(time.perf_counter() - t0, 1e-9)
                bar.set_postfix(tok_s=f"{rate:,.0f}", fvu=f"{m['fvu']:.3f}", l0=f"{m['l0']:.1f}",
                                dead=f"{m['dead_frac']:.2f}")
        if bar is not None:
            bar.update(1)
        if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.n_steps:
            _save_checkpoint(ckpt_path, trainer, step + 1, curves, run_id, norm_info,
                             tokens_seen, reference)
            write_table(pd.DataFrame(curves), out_dir / CURVES_CSV)
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - t0
    _save_checkpoint(ckpt_path, trainer, cfg.n_steps, curves, run_id, norm_info, tokens_seen,
                     reference)
    write_table(pd.DataFrame(curves), out_dir / CURVES_CSV)
    plot_curves(pd.DataFrame(curves), out_dir / CURVES_PNG)
    sae.eval()
    sae.cfg.metadata = {**sae.cfg.metadata, "training": {
        **cfg.to_dict(), "run_id": run_id, "tokens_seen": tokens_seen, "normalization": norm_info,
        "tokens_per_s_last_session": tok0 / max(elapsed, 1e-9)}}
    save_sae(sae, out_dir, reference_inputs=reference)
    return sae


def _save_checkpoint(path: Path, trainer: SAETrainer, step: int, curves: list[dict], run_id: str,
                     norm_info: dict, tokens_seen: int, reference: torch.Tensor | None) -> None:
    state = {"trainer": trainer.state_dict(), "step": step, "curves": list(curves),
             "run_id": run_id, "sae_cfg": trainer.sae.cfg.to_dict(), "norm_info": norm_info,
             "tokens_seen": tokens_seen, "reference": reference}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _progress(total: int, initial: int, *, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="train-sae", unit="step")


def plot_curves(curves: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Loss / FVU / L0 / dead fraction against tokens, one panel each (PNG, atomic)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [c for c in ("loss", "fvu", "l0", "dead_frac") if c in curves]
    fig, axes = plt.subplots(1, len(cols), figsize=(3.2 * len(cols), 2.8), squeeze=False)
    for ax, col in zip(axes[0], cols):
        if len(curves):
            ax.plot(curves["tokens"], curves[col], lw=1)
        ax.set_xlabel("tokens")
        ax.set_title(col)
        if col in ("loss", "fvu") and len(curves) and (curves[col] > 0).all():
            ax.set_yscale("log")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def split_windows(windows: pd.DataFrame, holdout_chroms: list[str] | tuple[str, ...], *,
                  fraction: float = 0.1, seed: int = 0) -> np.ndarray:
    """Held-out mask over windows: every window on ``holdout_chroms`` plus a seeded ``fraction`` of
    the others (``True`` = held out for evaluation, never trained on)."""
    n = len(windows)
    held = windows["chrom"].astype(str).isin(list(holdout_chroms)).to_numpy()
    rest = np.flatnonzero(~held)
    n_pick = round(fraction * rest.size)
    if n_pick:
        pick = np.random.default_rng(seed).choice(rest, size=n_pick, replace=False)
        held[pick] = True
    if held.all() and n:
        raise InputError("every window is held out; nothing is left to train the SAE on",
                         record="atlas.holdout_chroms")
    return held
