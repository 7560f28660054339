"""Reconstruction, sparsity and spliced-in language-model metrics of a trained SAE.

Reconstruction metrics are accumulated over streamed batches in model units (float64 sums):

- ``fvu`` = sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 (fraction of variance unexplained)
- ``mse`` = mean over tokens and dimensions of (x - x_hat)^2
- ``cosine`` = mean over tokens of cos(x, x_hat)
- ``l0`` = mean active latents per token
- ``dead_frac`` = latents that never fire; ``dense_frac`` = latents firing on > 10% of tokens

With an ``adapter`` (``lm_loss(seqs, *, transform=None)``) and ``sequences``, the model's masked-LM
loss is measured clean and with the layer's hidden state replaced by the SAE reconstruction, by
zeros and by the mean activation; ``frac_loss_recovered = (L_zero - L_sae) / (L_zero - L_clean)``
(``frac_loss_recovered_mean_abl`` uses the mean ablation instead of zeros).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch

from genosae._io import write_json, write_table
from genosae.errors import InputError
from genosae.sae.base import SAE
from genosae.sae.train import ActivationSource, iter_source

DENSE_FIRING_RATE = 0.1


class LMAdapter(Protocol):
    def lm_loss(self, seqs: Sequence[str], *,
                transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                **kwargs: Any) -> float: ...


@torch.no_grad()
def evaluate_sae(sae: SAE, source: ActivationSource, *, n_tokens: int,
                 window_mask: np.ndarray | None = None, adapter: LMAdapter | None = None,
                 sequences: Sequence[str] | None = None, batch_size: int = 4096, seed: int = 0,
                 exclude_outliers: bool = True, lm_kwargs: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
    """Metrics of ``sae`` on up to ``n_tokens`` shuffled tokens of ``source``.

    Parameters
    ----------
    window_mask
        Bool per window: evaluate only these windows (the held-out split).
    adapter, sequences
        Both given: also the spliced-in LM losses (see module docstring).
    exclude_outliers
        Skip tokens beyond the SAE's outlier norm threshold (its training rule).
    lm_kwargs
        Passed to every ``adapter.lm_loss`` call (e.g. ``mask_rate``, ``seed``).

    Returns
    -------
    dict with ``n_tokens``, ``n_outliers``, ``fvu``, ``mse``, ``cosine``, ``l0``, ``dead_frac``,
    ``dense_frac``, ``d_sae``, ``architecture`` and, with an adapter, ``lm_loss_clean``,
    ``lm_loss_sae``, ``lm_loss_zero``, ``lm_loss_mean``, ``frac_loss_recovered``,
    ``frac_loss_recovered_mean_abl``, ``n_sequences``.
    """
    if n_tokens < 1:
        raise InputError(f"n_tokens must be >= 1, got {n_tokens}", record="sae.eval_tokens")
    if (adapter is None) != (sequences is None):
        raise InputError("the spliced-in LM loss needs both an adapter and sequences",
                         record="adapter")
    sae.eval()
    dev = sae.W_enc.device
    D, Fdim = sae.d_in, sae.d_sae
    n = n_out = 0
    sq_err = sum_sq = cos_sum = 0.0
    l0_sum = 0
    sum_x = torch.zeros(D, dtype=torch.float64)
    fires = torch.zeros(Fdim, dtype=torch.long)
    for x in iter_source(source, batch_size, seed=seed, window_mask=window_mask, epochs=1):
        x = x[: n_tokens - n].to(dev)
        if exclude_outliers:
            keep = sae.inlier_mask(x)
            n_out += int((~keep).sum())
            x = x[keep]
        if x.shape[0] == 0:
            continue
        codes = sae.encode(x)
        recon = sae.decode(codes)
        xd, rd = x.double(), recon.double()
        sq_err += float((xd - rd).pow(2).sum())
        sum_sq += float(xd.pow(2).sum())
        sum_x += xd.sum(0).cpu()
        cos_sum += float(torch.nn.functional.cosine_similarity(xd, rd, dim=1, eps=1e-12).sum())
        active = codes != 0
        l0_sum += int(active.sum())
        fires += active.sum(0).cpu()
        n += x.shape[0]
        if n >= n_tokens:
            break
    if n == 0:
        raise InputError("no tokens to evaluate (empty store, or every window masked out / "
                         "every token an outlier)", path=getattr(source, "path", None))
    total_var = sum_sq - float(sum_x.pow(2).sum()) / n
    rate = fires.double() / n
    metrics: dict[str, Any] = {
        "architecture": sae.architecture(), "d_sae": Fdim, "n_tokens": n, "n_outliers": n_out,
        "fvu": sq_err / total_var if total_var > 0 else float("nan"),
        "mse": sq_err / (n * D), "cosine": cos_sum / n, "l0": l0_sum / n,
        "dead_frac": float((fires == 0).double().mean()),
        "dense_frac": float((rate > DENSE_FIRING_RATE).double().mean()),
    }
    if adapter is not None and sequences is not None:
        metrics.update(spliced_lm_loss(sae, adapter, list(sequences), **(lm_kwargs or {})))
    return metrics


def spliced_lm_loss(sae: SAE, adapter: LMAdapter, sequences: list[str],
                    **lm_kwargs: Any) -> dict[str, float]:
    """Clean, SAE-spliced, zero- and mean-ablated LM losses and the fraction of loss recovered."""
    if not sequences:
        raise InputError("no sequences for the spliced-in LM loss", record="sequences")

    def through_sae(h_BTD: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            flat = h_BTD.reshape(-1, h_BTD.shape[-1]).to(sae.W_enc.device)
            return sae(flat).reshape(h_BTD.shape).to(h_BTD.dtype).to(h_BTD.device)

    def zero(h_BTD: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(h_BTD)

    def mean(h_BTD: torch.Tensor) -> torch.Tensor:
        return sae.act_mean.to(h_BTD.device, h_BTD.dtype).expand_as(h_BTD).clone()

    clean = float(adapter.lm_loss(sequences, transform=None, **lm_kwargs))
    l_sae = float(adapter.lm_loss(sequences, transform=through_sae, **lm_kwargs))
    l_zero = float(adapter.lm_loss(sequences, transform=zero, **lm_kwargs))
    l_mean = float(adapter.lm_loss(sequences, transform=mean, **lm_kwargs))
    return {"lm_loss_clean": clean, "lm_loss_sae": l_sae, "lm_loss_zero": l_zero,
            "lm_loss_mean": l_mean,
            "frac_loss_recovered": _recovered(l_zero, l_sae, clean),
            "frac_loss_recovered_mean_abl": _recovered(l_mean, l_sae, clean),
            "n_sequences": len(sequences)}


def _recovered(l_abl: float, l_sae: float, l_clean: float) -> float:
    denom = l_abl - l_clean
    return (l_abl - l_sae) / denom if denom != 0 else float("nan")


def write_metrics(metrics: dict[str, Any], path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``metrics`` as JSON at ``path`` and as a one-row CSV beside it (``.csv``)."""
    path = Path(path)
    json_path = path if path.suffix == ".json" else path.with_suffix(".json")
    csv_path = json_path.with_suffix(".csv")
    write_json(metrics, json_path)
    flat = {k: v for k, v in metrics.items() if not isinstance(v, (dict, list))}
    write_table(pd.DataFrame([flat]), csv_path)
    return json_path, csv_path
