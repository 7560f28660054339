"""BatchTopK SAE (Bussmann et al. 2024): the top ``k * B`` latents of a whole batch are active.

Training selects across the batch, so tokens get a variable number of latents averaging ``k``.
Inference cannot depend on the batch: a threshold ``theta`` is estimated during training as an
exponential moving average of the smallest selected activation per batch, and inference is the
JumpReLU ``z = pre * (pre > theta)`` (saved to SAELens as architecture ``jumprelu`` with a
per-feature ``threshold`` vector, every entry equal to the global ``theta``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from genosae.sae.base import SAE, ForwardOutput, SAEConfig, register_architecture


@dataclass
class BatchTopKSAEConfig(SAEConfig):
    """Adds ``k`` (mean active latents per token) and the threshold estimator's settings.

    ``threshold_beta``: EMA decay of the threshold; ``threshold_start_step``: first step whose
    batch minimum enters the estimate (early steps are far from converged).
    """

    k: int = 32
    threshold_beta: float = 0.99
    threshold_start_step: int = 0

    @classmethod
    def architecture(cls) -> str:
        return "batchtopk"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.k <= self.d_sae:
            msg = f"k must be in [1, d_sae={self.d_sae}], got {self.k}"
            raise ValueError(msg)
        if not 0 <= self.threshold_beta < 1:
            msg = f"threshold_beta must be in [0, 1), got {self.threshold_beta}"
            raise ValueError(msg)


class BatchTopKSAE(SAE):
    """Batch-level TopK in training; JumpReLU with the estimated ``threshold [d_sae]`` at inference."""

    config_class = BatchTopKSAEConfig
    saelens_architecture = "jumprelu"
    cfg: BatchTopKSAEConfig

    def __init__(self, cfg: BatchTopKSAEConfig, *, seed: int = 0) -> None:
        super().__init__(cfg, seed=seed)
        # -1: not estimated yet
        self.register_buffer("threshold", torch.full((cfg.d_sae,), -1.0))

    def activation(self, pre_BF: torch.Tensor) -> torch.Tensor:
        if bool((self.threshold < 0).any()):
            msg = "BatchTopK threshold not estimated yet: train the SAE (or load a trained one) first"
            raise RuntimeError(msg)
        return pre_BF * (pre_BF > self.threshold)

    def select(self, pre_BF: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, d_sae = pre_BF.shape
        n = min(self.cfg.k * B, pre_BF.numel())
        flat = pre_BF.reshape(-1).topk(n, sorted=False).indices
        flat = flat[pre_BF.reshape(-1)[flat] > 0]  # ReLU: never select non-positive entries
        flat = flat.sort().values
        return flat // d_sae, flat % d_sae

    @torch.no_grad()
    def after_step(self, out: ForwardOutput, step: int) -> None:
        if step < self.cfg.threshold_start_step or out.vals_N.numel() == 0:
            return
        pos = out.vals_N[out.vals_N > 0]
        if pos.numel() == 0:
            return
        m = float(pos.min())
        cur = float(self.threshold[0])
        beta = self.cfg.threshold_beta
        self.threshold.fill_(m if cur < 0 else beta * cur + (1 - beta) * m)

    def inference_state(self) -> dict[str, torch.Tensor]:
        state = super().inference_state()
        state["threshold"] = self.threshold.detach().clone()
        return state

    @torch.no_grad()
    def load_inference_state(self, state: dict[str, torch.Tensor], act_mean: torch.Tensor,
                             act_scale: float) -> None:
        super().load_inference_state(state, act_mean, act_scale)
        self.threshold.copy_(state["threshold"])

    def saelens_cfg(self) -> dict[str, Any]:
        return {}


register_architecture(BatchTopKSAEConfig, BatchTopKSAE)
