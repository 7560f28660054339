"""Width x k sweeps: one SAE per (expansion factor, k), evaluated on held-out tokens."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genosae._io import atomic_path, write_table
from genosae.sae.evaluate import evaluate_sae
from genosae.sae.train import ActivationSource, SAETrainConfig, train_sae

SWEEP_CSV = "sweep.csv"
SWEEP_PNG = "sweep.png"


def sweep(source: ActivationSource, widths: Sequence[int], ks: Sequence[int], *,
          base_cfg: SAETrainConfig, out_dir: str | os.PathLike[str], eval_tokens: int = 100_000,
          train_mask: np.ndarray | None = None, eval_mask: np.ndarray | None = None,
          device: str = "cpu", progress: bool = False,
          metadata: dict[str, Any] | None = None) -> pd.DataFrame:
    """Train and evaluate an SAE for every expansion factor in ``widths`` and k in ``ks``.

    Each run lives in ``out_dir/ef{E}_k{K}`` (resumable like :func:`train_sae`); the table
    (``expansion_factor, d_sae, k, architecture, fvu, l0, mse, cosine, dead_frac, dense_frac,
    n_tokens``) is written to ``sweep.csv`` and FVU against L0, one line per width, to
    ``sweep.png``.

    Returns
    -------
    The sweep table.
    """
    out = Path(out_dir)
    rows = []
    for ef in widths:
        for k in ks:
            cfg = dataclasses.replace(base_cfg, expansion_factor=int(ef), d_sae=None, k=int(k))
            sae = train_sae(source, cfg, out / f"ef{ef}_k{k}", device=device, progress=progress,
                            window_mask=train_mask, metadata=metadata)
            m = evaluate_sae(sae, source, n_tokens=eval_tokens, window_mask=eval_mask,
                             seed=base_cfg.seed)
            rows.append({"expansion_factor": int(ef), "d_sae": sae.d_sae, "k": int(k),
                         **{key: m[key] for key in ("architecture", "fvu", "l0", "mse", "cosine",
                                                    "dead_frac", "dense_frac", "n_tokens")}})
    table = pd.DataFrame(rows)
    write_table(table, out / SWEEP_CSV)
    plot_sweep(table, out / SWEEP_PNG)
    return table


def plot_sweep(table: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """FVU against L0 (log-log), one line per expansion factor (PNG, atomic)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    for ef, grp in table.groupby("expansion_factor"):
        grp = grp.sort_values("l0")
        ax.plot(grp["l0"], grp["fvu"], marker="o", label=f"{ef}x")
        for _, r in grp.iterrows():
            ax.annotate(f"k={r['k']}", (r["l0"], r["fvu"]), fontsize=7)
    ax.set_xlabel("L0 (active latents per token)")
    ax.set_ylabel("FVU (held out)")
    if len(table) and (table["fvu"] > 0).all():
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.legend(title="expansion")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
