"""Sparse feature activations over an activation store (SAE features and baselines).

A :class:`FeatureActs` holds one CSR row per kept token and one column per feature, built shard by
shard so that the dense ``[n_tokens, d_sae]`` matrix never exists, plus the token table that says
where each row lies on the genome.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp

from genosae._io import atomic_path, read_json, write_json
from genosae.errors import InputError

__all__ = [
    "TOKEN_COLUMNS",
    "FeatureActs",
    "feature_activations",
    "neuron_activations",
    "random_direction_activations",
    "window_split",
]

#: Columns of :attr:`FeatureActs.tokens`, in order.
TOKEN_COLUMNS = ("window_index", "token_index", "chrom", "bp_start", "bp_end", "strand", "window_id", "has_n")
FORMAT = "genosae-feature-acts/1"
FeatureKind = Literal["sae", "neuron", "random"]


class Encoder(Protocol):
    """What :func:`feature_activations` needs from an SAE."""

    def encode(self, acts_BD: Any) -> Any: ...


class StoreLike(Protocol):
    """What this module needs from :class:`genosae.model.store.ActivationStore`."""

    d_model: int

    @property
    def windows(self) -> pd.DataFrame: ...

    def iter_shards(self) -> Iterator[dict[str, Any]]: ...


@dataclass
class FeatureActs:
    """Feature activations of the kept tokens of a store.

    Attributes
    ----------
    codes
        ``csr_matrix`` float32 ``[n_tokens, n_features]``; only nonzero activations are stored.
    tokens
        One row per ``codes`` row: ``window_index, token_index, chrom, bp_start, bp_end, strand,
        window_id, has_n`` (reference coordinates, 0-based half-open).
    feature_names
        One name per column (``"f12"``, ``"n5+"``, ``"r3"``).
    kind
        ``"sae"``, ``"neuron"`` or ``"random"``.
    meta
        Free-form provenance (SAE path, seed, ...), saved as JSON.
    """

    codes: sp.csr_matrix
    tokens: pd.DataFrame
    feature_names: list[str]
    kind: str = "sae"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.codes.shape[0] != len(self.tokens):
            msg = f"codes has {self.codes.shape[0]} rows but the token table {len(self.tokens)}"
            raise ValueError(msg)
        if self.codes.shape[1] != len(self.feature_names):
            msg = f"codes has {self.codes.shape[1]} columns but {len(self.feature_names)} feature names"
            raise ValueError(msg)

    @property
    def n_tokens(self) -> int:
        return int(self.codes.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.codes.shape[1])

    def positions(self) -> tuple[np.ndarray, np.ndarray]:
        """Chromosome and first reference base of each token (the base that labels it)."""
        return self.tokens["chrom"].to_numpy(), self.tokens["bp_start"].to_numpy(np.int64)

    def subset_tokens(self, mask: np.ndarray) -> FeatureActs:
        """A copy restricted to the rows where ``mask`` is true."""
        mask = np.asarray(mask, dtype=bool)
        return FeatureActs(self.codes[mask], self.tokens.loc[mask].reset_index(drop=True),
                           list(self.feature_names), self.kind, dict(self.meta))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``codes.npz``, ``tokens.parquet`` and ``meta.json`` into folder ``path`` (atomically)."""
        path = Path(path)
        with atomic_path(path, is_dir=True) as tmp:
            sp.save_npz(tmp / "codes.npz", self.codes.tocsr(), compressed=False)
            self.tokens.to_parquet(tmp / "tokens.parquet", index=False)
            write_json({"format": FORMAT, "kind": self.kind, "feature_names": self.feature_names,
                        "meta": self.meta}, tmp / "meta.json")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FeatureActs:
        """Read a folder written by :meth:`save`."""
        path = Path(path)
        meta_path = path / "meta.json"
        if not meta_path.is_file():
            raise InputError("not a feature-activations folder (no meta.json); re-run `genosae features`",
                             path=path)
        meta = read_json(meta_path)
        if meta.get("format") != FORMAT:
            raise InputError(f"unsupported format {meta.get('format')!r}, expected {FORMAT!r}; re-run",
                             path=meta_path, record="format")
        codes = sp.load_npz(path / "codes.npz").tocsr().astype(np.float32)
        tokens = pd.read_parquet(path / "tokens.parquet")
        return cls(codes, tokens, list(meta["feature_names"]), meta.get("kind", "sae"), meta.get("meta", {}))


def window_split(n_windows: int, *, seed: int = 0, fraction: float = 0.5) -> np.ndarray:
    """Seeded random half of the windows: ``True`` = calibration window (thresholds are chosen there)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(n_windows, dtype=bool)
    mask[rng.permutation(n_windows)[: round(fraction * n_windows)]] = True
    return mask


def _token_frame(shard: dict[str, Any], keep: np.ndarray, windows: pd.DataFrame) -> pd.DataFrame:
    widx = np.asarray(shard["window_index"])[keep].astype(np.int64)
    strand = windows["strand"].to_numpy() if "strand" in windows else np.full(len(windows), "+")
    n_keep = int(keep.sum())
    has_n = np.asarray(shard["has_n"])[keep] if "has_n" in shard else np.zeros(n_keep, bool)
    tok = np.asarray(shard["token_index"])[keep] if "token_index" in shard else np.zeros(n_keep, np.int32)
    return pd.DataFrame({
        "window_index": widx,
        "token_index": tok.astype(np.int32),
        "chrom": windows["chrom"].to_numpy()[widx],
        "bp_start": np.asarray(shard["bp_start"])[keep].astype(np.int64),
        "bp_end": np.asarray(shard["bp_end"])[keep].astype(np.int64),
        "strand": strand[widx],
        "window_id": windows["window_id"].to_numpy()[widx].astype(str),
        "has_n": has_n.astype(bool),
    })


def _collect(
    store: StoreLike,
    transform: Callable[[np.ndarray], np.ndarray],
    *,
    batch_size: int,
    max_tokens: int | None,
    exclude_special: bool,
) -> tuple[sp.csr_matrix, pd.DataFrame]:
    """Apply ``transform`` (dense acts ``[B, D]`` → dense ``[B, F]``) to the store, keep nonzeros."""
    windows = store.windows
    blocks: list[sp.csr_matrix] = []
    frames: list[pd.DataFrame] = []
    n_done = 0
    for shard in store.iter_shards():
        acts = np.asarray(shard["acts"])
        keep = np.ones(len(acts), dtype=bool)
        if exclude_special and "is_special" in shard:
            keep &= ~np.asarray(shard["is_special"], dtype=bool)
        keep &= np.asarray(shard["bp_start"]) >= 0
        if max_tokens is not None:
            room = max_tokens - n_done
            if room <= 0:
                break
            keep &= np.cumsum(keep) <= room
        idx = np.flatnonzero(keep)
        for lo in range(0, len(idx), batch_size):
            out = np.asarray(transform(acts[idx[lo:lo + batch_size]]), dtype=np.float32)
            blocks.append(sp.csr_matrix(out))  # drops the zeros
        frames.append(_token_frame(shard, keep, windows))
        n_done += len(idx)
    if not frames:
        raise InputError("the activation store holds no tokens; re-run `genosae embed`",
                         path=getattr(store, "path", None))
    tokens = pd.concat(frames, ignore_index=True)
    if blocks:
        codes = sp.vstack(blocks, format="csr", dtype=np.float32)
    else:  # only special tokens
        codes = sp.csr_matrix((0, len(transform(np.zeros((1, store.d_model), np.float32))[0])), dtype=np.float32)
    codes.eliminate_zeros()
    return codes, tokens


def feature_activations(
    sae: Encoder,
    store: StoreLike,
    *,
    batch_size: int = 4096,
    max_tokens: int | None = None,
    exclude_special: bool = True,
    device: str = "cpu",
) -> FeatureActs:
    """Encode every kept token of ``store`` with ``sae`` and keep the nonzero codes.

    Parameters
    ----------
    sae
        Object with ``encode(acts_BD: torch.Tensor) -> codes_BF`` taking raw model activations.
    store
        An :class:`~genosae.model.store.ActivationStore` (or anything with ``windows``/``iter_shards``).
    batch_size
        Tokens encoded at once.
    max_tokens
        Stop after this many kept tokens (store order).
    exclude_special
        Drop special tokens (``is_special`` or ``bp_start < 0``).

    Returns
    -------
    FeatureActs with ``kind="sae"`` and names ``f0..f{d_sae-1}``.
    """
    import torch

    module = sae if hasattr(sae, "parameters") else None
    param = next(module.parameters(), None) if module is not None else None
    dtype = param.dtype if param is not None else torch.float32

    def encode(acts_BD: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(acts_BD, dtype=np.float32)).to(device=device, dtype=dtype)
            return sae.encode(x).float().cpu().numpy()

    codes, tokens = _collect(store, encode, batch_size=batch_size, max_tokens=max_tokens,
                             exclude_special=exclude_special)
    names = [f"f{i}" for i in range(codes.shape[1])]
    return FeatureActs(codes, tokens, names, "sae", {})


def neuron_activations(
    store: StoreLike,
    *,
    batch_size: int = 4096,
    max_tokens: int | None = None,
    exclude_special: bool = True,
    center: bool = True,
) -> FeatureActs:
    """Baseline: each hidden dimension as two features, its positive part and its negated part.

    With ``center=True`` the per-dimension mean (estimated on the first shard) is subtracted first, so
    a unit "fires" when it is above (``n{d}+``) or below (``n{d}-``) its usual level.

    Returns
    -------
    FeatureActs with ``kind="neuron"`` and ``2 * d_model`` columns ``n0+, n0-, n1+, ...``.
    """
    mean = np.zeros(store.d_model, np.float32)
    if center:
        first = next(iter(store.iter_shards()), None)
        if first is not None and len(first["acts"]):
            mean = np.asarray(first["acts"], np.float32).mean(0)

    def split(acts_BD: np.ndarray) -> np.ndarray:
        x = acts_BD.astype(np.float32) - mean
        out = np.empty((len(x), 2 * x.shape[1]), np.float32)
        out[:, 0::2] = np.maximum(x, 0)
        out[:, 1::2] = np.maximum(-x, 0)
        return out

    codes, tokens = _collect(store, split, batch_size=batch_size, max_tokens=max_tokens,
                             exclude_special=exclude_special)
    names = [f"n{d}{s}" for d in range(store.d_model) for s in "+-"]
    return FeatureActs(codes, tokens, names, "neuron", {"center": center})


def random_direction_activations(
    store: StoreLike,
    n: int,
    seed: int = 0,
    *,
    batch_size: int = 4096,
    max_tokens: int | None = None,
    exclude_special: bool = True,
) -> FeatureActs:
    """Baseline: projections on ``n`` random unit directions (seeded), positive part only.

    Activations are centred on the first shard's mean before projecting, so each direction fires on
    about half the tokens — the same footing as :func:`neuron_activations`.

    Returns
    -------
    FeatureActs with ``kind="random"`` and columns ``r0..r{n-1}``.
    """
    if n < 1:
        msg = f"n must be a positive number of directions, got {n}"
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    dirs_DN = rng.standard_normal((store.d_model, n)).astype(np.float32)
    dirs_DN /= np.linalg.norm(dirs_DN, axis=0, keepdims=True)
    first = next(iter(store.iter_shards()), None)
    mean = np.asarray(first["acts"], np.float32).mean(0) if first is not None and len(first["acts"]) else 0.0

    def project(acts_BD: np.ndarray) -> np.ndarray:
        return np.maximum((acts_BD.astype(np.float32) - mean) @ dirs_DN, 0)

    codes, tokens = _collect(store, project, batch_size=batch_size, max_tokens=max_tokens,
                             exclude_special=exclude_special)
    return FeatureActs(codes, tokens, [f"r{i}" for i in range(n)], "random", {"seed": seed})
