"""Model activations as a stream of shuffled batches, without a dense store on disk.

:class:`ModelActivationStream` runs the model over a windows table group by group and serves the
tokens of each group in a seeded random order, with the same ``iter_batches`` interface as
:class:`~genosae.model.store.ActivationStore`, so :func:`genosae.sae.train.train_sae` trains on it
unchanged (the shuffle-buffer design of EleutherAI's sparsify). Disk use is nil and memory is one group
(``buffer_tokens`` tokens x ``d_model`` float32), whatever the number of windows; the cost is one model
forward per token per epoch, where a dense store pays it once.

Order: windows (those of ``window_mask``) are permuted by ``seed`` and cut into groups of about
``buffer_tokens`` tokens (at least 1.5 batches); a group's kept tokens (non-special, no ``N`` unless asked) are permuted by
``(seed, group)`` and cut into batches; the remainder of each group (fewer than ``batch_size`` tokens, a
random subset) is left out, except in the last group of the pass, whose remainder is a final smaller
batch (as in the store), so every group yields a known number of batches. That makes resuming
exact and cheap: :meth:`ModelActivationStream.iter_batches` with ``skip_batches`` tokenizes (no model
forward) the skipped groups to count their batches and computes only from the group it resumes in.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from genosae.genome.reference import reverse_complement
from genosae.model.embed import embedding_config_hash
from genosae.model.store import windows_hash

log = logging.getLogger(__name__)

__all__ = ["ModelActivationStream"]


class ModelActivationStream:
    """Shuffled activation batches computed on the fly (see the module docstring).

    Parameters
    ----------
    adapter
        A :class:`~genosae.model.adapter.ModelAdapter`.
    windows
        Windows table (``window_id, chrom, start, end, strand``, optional ``sequence``).
    sequences
        ``windows -> list[str]`` (:func:`genosae.model.embed.fasta_sequences`).
    buffer_tokens
        Tokens per shuffle group (memory: ``buffer_tokens x d_model x 4`` bytes).
    reverse_complement
        Also read every window's reverse complement (as ``embed.reverse_complement``).
    path
        Where the windows came from (provenance only).
    """

    supports_skip = True

    def __init__(self, adapter: Any, windows: pd.DataFrame, sequences: Callable[[pd.DataFrame], list[str]], *,
                 buffer_tokens: int = 131_072, reverse_complement: bool = False,
                 path: str | Path | None = None) -> None:
        if buffer_tokens < 1:
            msg = f"buffer_tokens must be >= 1, got {buffer_tokens}"
            raise ValueError(msg)
        self.adapter = adapter
        self._windows = windows.reset_index(drop=True)
        self.sequences = sequences
        self.buffer_tokens = int(buffer_tokens)
        self.reverse_complement = bool(reverse_complement)
        self.path = Path(path) if path is not None else None
        self.d_model = int(adapter.d_model)
        self.layer = int(adapter.layer)
        bp = (self._windows["end"] - self._windows["start"]).to_numpy(np.int64)
        self._per_window = max(1, int(np.median(bp)) if len(bp) else 1) * (2 if reverse_complement else 1)
        self.windows_per_group = max(1, self.buffer_tokens // self._per_window)
        self._counts: dict[tuple[bool, bool], np.ndarray] = {}

    @property
    def windows(self) -> pd.DataFrame:
        return self._windows

    @property
    def n_windows(self) -> int:
        return len(self._windows)

    @functools.cached_property
    def manifest(self) -> dict[str, Any]:
        """Store-like provenance (what :func:`genosae.sae._cli.store_metadata` reads), computed once."""
        ad = self.adapter
        return {"model": ad.source, "layer": ad.layer, "d_model": ad.d_model, "tokenization": ad.tokenization,
                "config_hash": embedding_config_hash(ad, windows_per_shard=0,
                                                     reverse_complement=self.reverse_complement),
                "windows_hash": windows_hash(self._windows), "n_tokens": None, "shards": None,
                "source": "model stream", "buffer_tokens": self.buffer_tokens}

    # ------------------------------------------------------------------ groups
    def group_size(self, batch_size: int) -> int:
        """Windows per group: ``buffer_tokens`` worth, and at least 1.5 batches' worth."""
        return max(self.windows_per_group, -(-3 * batch_size // (2 * self._per_window)))

    def _order(self, seed: int, shuffle: bool, window_mask: np.ndarray | None, batch_size: int) -> list[np.ndarray]:
        idx = np.arange(self.n_windows) if window_mask is None else np.flatnonzero(window_mask)
        if shuffle:
            idx = idx[np.random.default_rng(seed).permutation(len(idx))]
        size = self.group_size(batch_size)
        return [idx[g:g + size] for g in range(0, len(idx), size)]

    def _strands(self) -> tuple[bool, ...]:
        return (False, True) if self.reverse_complement else (False,)

    def kept_token_counts(self, *, exclude_special: bool = True, exclude_n: bool = True) -> np.ndarray:
        """Kept tokens of every window (both strands when read), from the tokenizer alone (cached)."""
        key = (exclude_special, exclude_n)
        if key not in self._counts:
            counts = np.zeros(self.n_windows, np.int64)
            step = 256
            for a in range(0, self.n_windows, step):
                seqs = self.sequences(self._windows.iloc[a:a + step])
                for rc in self._strands():
                    batch = self.adapter.tokenize([reverse_complement(s) if rc else s for s in seqs])
                    keep = batch.attention_mask.bool()
                    if exclude_special:
                        keep &= ~batch.is_special
                    if exclude_n:
                        keep &= ~batch.has_n
                    counts[a:a + len(seqs)] += keep.sum(1).numpy()
            self._counts[key] = counts
        return self._counts[key]

    def _group_acts(self, wins: np.ndarray, exclude_special: bool, exclude_n: bool,
                    dtype: torch.dtype) -> torch.Tensor:
        seqs = self.sequences(self._windows.iloc[wins])
        parts = []
        for rc in self._strands():
            for acts, spans in self.adapter.hidden_states(seqs, reverse_complement=rc):
                keep = np.ones(acts.shape[0], dtype=bool)
                if exclude_special:
                    keep &= ~np.asarray(spans.is_special)
                if exclude_n:
                    keep &= ~np.asarray(spans.has_n)
                parts.append(acts[torch.from_numpy(keep)].to(dtype))
        return torch.cat(parts) if parts else torch.zeros(0, self.d_model, dtype=dtype)

    # ------------------------------------------------------------------ batches
    def iter_batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        exclude_special: bool = True,
        exclude_n: bool = True,
        window_mask: np.ndarray | Sequence[bool] | None = None,
        dtype: torch.dtype = torch.float32,
        drop_last: bool = False,
        skip_batches: int = 0,
    ) -> Iterator[torch.Tensor]:
        """``[batch_size, d_model]`` batches of one pass over the windows (see the module docstring);
        ``skip_batches`` leaves out the first batches without running the model on them."""
        if batch_size < 1:
            msg = f"batch_size must be >= 1, got {batch_size}"
            raise ValueError(msg)
        wmask = None if window_mask is None else np.asarray(window_mask, dtype=bool)
        if wmask is not None and wmask.shape != (self.n_windows,):
            msg = f"window_mask must have one value per window ({self.n_windows}), got {wmask.shape}"
            raise ValueError(msg)
        groups = self._order(seed, shuffle, wmask, batch_size)
        counts = self.kept_token_counts(exclude_special=exclude_special, exclude_n=exclude_n) \
            if skip_batches else None
        for g, wins in enumerate(groups):
            last = g == len(groups) - 1 and not drop_last
            if counts is not None and skip_batches:
                n_batches = -(-int(counts[wins].sum()) // batch_size) if last else int(counts[wins].sum()) // batch_size
                if skip_batches >= n_batches:
                    skip_batches -= n_batches
                    continue
            x = self._group_acts(wins, exclude_special, exclude_n, dtype)
            if shuffle:
                x = x[torch.from_numpy(np.random.default_rng([seed, g]).permutation(x.shape[0]))]
            end = x.shape[0] if last else (x.shape[0] // batch_size) * batch_size
            for s in range(skip_batches * batch_size, end, batch_size):
                yield x[s:s + batch_size]
            skip_batches = 0

    def batches_per_pass(self, batch_size: int, *, seed: int = 0, shuffle: bool = True,
                         exclude_special: bool = True, exclude_n: bool = True,
                         window_mask: np.ndarray | Sequence[bool] | None = None) -> int:
        """Number of batches :meth:`iter_batches` yields with these arguments (tokenizer only)."""
        counts = self.kept_token_counts(exclude_special=exclude_special, exclude_n=exclude_n)
        wmask = None if window_mask is None else np.asarray(window_mask, dtype=bool)
        per = [int(counts[w].sum()) for w in self._order(seed, shuffle, wmask, batch_size)]
        return sum(n // batch_size for n in per[:-1]) + (-(-per[-1] // batch_size) if per else 0)
