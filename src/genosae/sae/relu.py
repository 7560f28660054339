"""ReLU SAE with an L1 penalty scaled by decoder row norms (Anthropic, "April update" 2024).

The decoder is not constrained to unit norm; the penalty ``lambda * sum_f |z_f| * ||W_dec[f]||``
makes shrinking the codes while growing the decoder pointless. ``lambda`` warms up linearly over
the first ``l1_warmup_fraction`` of training. Saved to SAELens as architecture ``standard``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from genosae.sae.base import SAE, ForwardOutput, SAEConfig, register_architecture


@dataclass
class ReLUSAEConfig(SAEConfig):
    """Adds ``l1_coefficient`` and its linear warm-up fraction ``l1_warmup_fraction``."""

    l1_coefficient: float = 5.0
    l1_warmup_fraction: float = 0.05

    @classmethod
    def architecture(cls) -> str:
        return "relu"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.l1_coefficient < 0:
            msg = f"l1_coefficient must be >= 0, got {self.l1_coefficient}"
            raise ValueError(msg)


class ReLUSAE(SAE):
    """Codes ``ReLU((x - b_dec) W_enc + b_enc)``; dense forward (codes are not k-sparse)."""

    config_class = ReLUSAEConfig
    unit_norm_decoder = False
    saelens_architecture = "standard"
    cfg: ReLUSAEConfig

    def decoder_init_norm(self) -> float:
        return 0.1

    def activation(self, pre_BF: torch.Tensor) -> torch.Tensor:
        return F.relu(pre_BF)

    def select(self, pre_BF: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows, cols = torch.nonzero(pre_BF > 0, as_tuple=True)
        return rows, cols

    def forward_train(self, x_norm_BD: torch.Tensor) -> ForwardOutput:
        sae_in = x_norm_BD - self.b_dec
        pre = sae_in @ self.W_enc + self.b_enc
        codes = F.relu(pre)
        recon = codes @ self.W_dec + self.b_dec
        rows, cols = torch.nonzero(codes.detach() > 0, as_tuple=True)
        return ForwardOutput(recon, rows, cols, codes.detach()[rows, cols], pre.detach(),
                             sae_in.detach(), codes_BF=codes)

    def aux_loss(self, x_norm_BD: torch.Tensor, out: ForwardOutput) -> torch.Tensor:
        return out.recon_BD.new_zeros(())

    def sparsity_loss(self, out: ForwardOutput, n_tokens: int, step_frac: float) -> torch.Tensor:
        warm = self.cfg.l1_warmup_fraction
        coef = self.cfg.l1_coefficient * (min(1.0, step_frac / warm) if warm > 0 else 1.0)
        norms = torch.linalg.vector_norm(self.W_dec, dim=1)
        return coef * (out.codes_BF * norms).sum(1).mean()


register_architecture(ReLUSAEConfig, ReLUSAE)
