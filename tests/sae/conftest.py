"""Synthetic activation sources for the SAE tests (in memory; the store contract's iter_batches)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch


class SyntheticSource:
    """Tokens ``x = mean + sum_j c_j * dir_j + noise`` with ``n_active`` true directions per token.

    Windows are consecutive blocks of ``window_len`` tokens (for ``window_mask``).
    """

    def __init__(self, n_tokens: int = 20_000, d: int = 16, n_dirs: int = 24, n_active: int = 3,
                 noise: float = 0.01, seed: int = 0, window_len: int = 100) -> None:
        gen = torch.Generator().manual_seed(seed)
        dirs = torch.randn(n_dirs, d, generator=gen)
        self.dirs = dirs / dirs.norm(dim=1, keepdim=True)
        idx = torch.rand(n_tokens, n_dirs, generator=gen).argsort(dim=1)[:, :n_active]
        coef = torch.zeros(n_tokens, n_dirs)
        coef.scatter_(1, idx, 0.5 + 1.5 * torch.rand(n_tokens, n_active, generator=gen))
        self.mean = 3.0 * torch.randn(d, generator=gen)
        self.acts = self.mean + coef @ self.dirs + noise * torch.randn(n_tokens, d, generator=gen)
        self.d_model = d
        self.window_len = window_len
        self.n_windows = -(-n_tokens // window_len)
        self.windows = pd.DataFrame({"window_id": [f"w{i}" for i in range(self.n_windows)],
                                     "chrom": ["chrI"] * (self.n_windows - 2) + ["chrXVI"] * 2})
        self.calls = 0

    def iter_batches(self, batch_size, *, shuffle=True, seed=0, exclude_special=True,
                     exclude_n=True, window_mask=None):
        rows = np.arange(self.acts.shape[0])
        if window_mask is not None:
            rows = rows[np.asarray(window_mask, dtype=bool)[rows // self.window_len]]
        if shuffle:
            rows = rows[np.random.default_rng(seed).permutation(rows.size)]
        for i in range(0, rows.size, batch_size):
            self.calls += 1
            yield self.acts[torch.from_numpy(rows[i:i + batch_size])]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here on one torch thread (tests/conftest.py::one_thread)."""


@pytest.fixture
def synthetic():
    return SyntheticSource()


def match_directions(W_dec: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """For each true direction, the best |cosine| with any decoder row."""
    W = W_dec / W_dec.norm(dim=1, keepdim=True)
    return (dirs @ W.T).max(dim=1).values
