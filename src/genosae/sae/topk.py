"""TopK SAE (Gao et al. 2024): exactly ``k`` latents per token, AuxK against dead latents.

The per-token selection is :func:`~genosae.sae.kernels.row_topk` (a numba kernel on CPU, ``torch.topk``
elsewhere)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional as F

from genosae.sae.base import SAE, SAEConfig, register_architecture
from genosae.sae.kernels import row_topk


@dataclass
class TopKSAEConfig(SAEConfig):
    """:class:`~genosae.sae.base.SAEConfig` plus ``k``, the active latents per token."""

    k: int = 32

    @classmethod
    def architecture(cls) -> str:
        return "topk"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.k <= self.d_sae:
            msg = f"k must be in [1, d_sae={self.d_sae}], got {self.k}"
            raise ValueError(msg)


class TopKSAE(SAE):
    """Codes are ``ReLU`` of the ``k`` largest pre-activations of each token (zero elsewhere)."""

    config_class = TopKSAEConfig
    saelens_architecture = "topk"
    #: 1/√3, the row norm of a kaiming-uniform ``nn.Linear`` encoder of unit-norm decoder rows (sparsify's
    #: init): synthetic-benchmark FVU 0.4434 → 0.4200, the model's activations 0.0950 → 0.0949 (README, "Benchmarks")
    encoder_init_ratio = 3 ** -0.5
    cfg: TopKSAEConfig

    def activation(self, pre_BF: torch.Tensor) -> torch.Tensor:
        idx_BK = row_topk(pre_BF, self.cfg.k)
        return torch.zeros_like(pre_BF).scatter_(-1, idx_BK, F.relu(pre_BF.gather(-1, idx_BK)))

    def select(self, pre_BF: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, k = pre_BF.shape[0], self.cfg.k
        idx_BK = row_topk(pre_BF, k)
        rows = torch.arange(B, device=pre_BF.device).repeat_interleave(k)
        return rows, idx_BK.reshape(-1)

    def saelens_cfg(self) -> dict[str, Any]:
        return {"k": self.cfg.k, "rescale_acts_by_decoder_norm": False}


register_architecture(TopKSAEConfig, TopKSAE)
