"""Sparse feature activations over an activation store (SAE features and baselines).

A :class:`FeatureActs` holds one CSR row per kept token and one column per feature, built shard by
shard so that the dense ``[n_tokens, d_sae]`` matrix never exists, plus the token table that says
where each row lies on the genome. A :class:`WindowActs` keeps only per-window sums, maxima and
active counts (:func:`window_activations` streams a store into one): all that region, sample and
locus profiles need, at a size independent of the number of tokens.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
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
    "CodeSource",
    "EncodedSource",
    "FeatureActs",
    "FeatureBatch",
    "FeatureSource",
    "LinearUnits",
    "WindowActs",
    "calibration_windows",
    "feature_activations",
    "iter_token_batches",
    "neuron_activations",
    "neuron_units",
    "numpy_encoder",
    "random_direction_activations",
    "random_units",
    "segment_max",
    "segment_sum",
    "store_mean",
    "window_activations",
    "window_batches",
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


def _read_meta(path: Path, fmt: str, what: str, fix: str) -> dict:
    """``meta.json`` of a saved activations folder, refusing a missing file or another format."""
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        raise InputError(f"not a {what} folder (no meta.json); {fix}", path=path)
    meta = read_json(meta_path)
    if meta.get("format") != fmt:
        raise InputError(f"unsupported format {meta.get('format')!r}, expected {fmt!r}; {fix}",
                         path=meta_path, record="format")
    return meta


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

    def iter_batches(self, batch_size: int = 65_536) -> Iterator[FeatureBatch]:
        """Rows in batches of whole windows (:class:`FeatureSource`), windows in ascending order."""
        order = np.argsort(self.tokens["window_index"].to_numpy(), kind="stable")
        w = self.tokens["window_index"].to_numpy()[order]
        for a, b in window_batches(w, batch_size):
            rows = order[a:b]
            yield FeatureBatch(self.codes[rows], self.tokens.iloc[rows].reset_index(drop=True), rows)

    def window_counts(self, n_windows: int) -> np.ndarray:
        """Kept tokens per window ``[n_windows]``."""
        return np.bincount(self.tokens["window_index"].to_numpy(np.int64), minlength=n_windows)

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
        meta = _read_meta(path, FORMAT, "feature-activations", "re-run `genosae features`")
        codes = sp.load_npz(path / "codes.npz").tocsr().astype(np.float32)
        tokens = pd.read_parquet(path / "tokens.parquet")
        return cls(codes, tokens, list(meta["feature_names"]), meta.get("kind", "sae"), meta.get("meta", {}))


def window_split(n_windows: int, *, seed: int = 0, fraction: float = 0.5) -> np.ndarray:
    """Seeded random half of the windows: ``True`` = calibration window (thresholds are chosen there)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(n_windows, dtype=bool)
    mask[rng.permutation(n_windows)[: round(fraction * n_windows)]] = True
    return mask


SplitRule = Literal["chromosome", "random"]


def calibration_windows(
    windows: pd.DataFrame,
    *,
    holdout_chroms: Sequence[str] = (),
    seed: int = 0,
    fraction: float = 0.5,
    present: np.ndarray | None = None,
) -> tuple[np.ndarray, SplitRule]:
    """Calibration mask over windows (``True`` = calibration) and the rule that made it.

    ``"chromosome"``: the windows on ``holdout_chroms`` are held out and all others calibrate —
    used when both sides hold at least one window among ``present`` (bool per window, default all;
    e.g. the windows that kept tokens). Otherwise ``"random"``: :func:`window_split` (seeded
    ``fraction`` of the windows calibrate). The caller should record the rule (``features.json``).
    """
    present = np.ones(len(windows), bool) if present is None else np.asarray(present, dtype=bool)
    if len(holdout_chroms):
        held = windows["chrom"].astype(str).isin([str(c) for c in holdout_chroms]).to_numpy()
        if (held & present).any() and (~held & present).any():
            return ~held, "chromosome"
    return window_split(len(windows), seed=seed, fraction=fraction), "random"


def iter_token_batches(
    store: StoreLike,
    *,
    batch_size: int = 4096,
    exclude_special: bool = True,
    max_tokens: int | None = None,
) -> Iterator[tuple[np.ndarray, pd.DataFrame]]:
    """The kept tokens of ``store`` in store order, in batches of whole windows (bounded memory).

    Yields ``(acts [n, d_model] float32, tokens)`` with ``tokens`` as :attr:`FeatureActs.tokens`. A
    batch holds at most ``batch_size`` tokens unless a single window is longer (it then comes
    alone); a window never spans two batches (a store shard holds whole windows), except the last
    one cut short by ``max_tokens`` (the first ``max_tokens`` kept tokens, as
    :func:`feature_activations`). Memory is one shard.
    """
    windows = store.windows
    for shard, keep, idx in _kept_rows(store.iter_shards(), exclude_special, max_tokens):
        if idx.size == 0:
            continue
        acts = np.asarray(shard["acts"])
        tokens = _token_frame(shard, keep, windows)
        order = np.argsort(tokens["window_index"].to_numpy(), kind="stable")
        idx, tokens = idx[order], tokens.iloc[order].reset_index(drop=True)
        for a, b in window_batches(tokens["window_index"].to_numpy(), batch_size):
            yield acts[idx[a:b]].astype(np.float32, copy=False), tokens.iloc[a:b].reset_index(drop=True)


def window_batches(window_index: np.ndarray, batch_size: int) -> list[tuple[int, int]]:
    """Cut rows grouped by window (``window_index`` sorted or at least grouped) into ``[a, b)`` batches
    of whole windows, each ≤ ``batch_size`` rows unless one window alone is longer."""
    w = np.asarray(window_index)
    if w.size == 0:
        return []
    starts = np.flatnonzero(np.r_[True, w[1:] != w[:-1]])
    ends = np.r_[starts[1:], w.size]
    cuts = [0]
    for st, en in zip(starts[1:], ends[1:], strict=True):  # per window: close a batch before it overflows
        if en - cuts[-1] > batch_size:
            cuts.append(int(st))
    cuts.append(int(w.size))
    return [(a, b) for a, b in itertools.pairwise(cuts) if b > a]


def _kept_rows(shards: Iterable[dict[str, Any]], exclude_special: bool, max_tokens: int | None
               ) -> Iterator[tuple[dict[str, Any], np.ndarray, np.ndarray]]:
    """``(shard, keep mask, kept row indices)`` per shard, up to the first ``max_tokens`` kept tokens."""
    n_done = 0
    for shard in shards:
        keep = _keep_mask(shard, exclude_special)
        if max_tokens is not None:
            room = max_tokens - n_done
            if room <= 0:
                return
            keep &= np.cumsum(keep) <= room
        idx = np.flatnonzero(keep)
        n_done += idx.size
        yield shard, keep, idx


def _keep_mask(shard: dict[str, Any], exclude_special: bool) -> np.ndarray:
    keep = np.asarray(shard["bp_start"]) >= 0
    if exclude_special and "is_special" in shard:
        keep &= ~np.asarray(shard["is_special"], dtype=bool)
    return keep


def store_mean(store: StoreLike, *, exclude_special: bool = True, max_tokens: int | None = None) -> np.ndarray:
    """Mean activation ``[d_model]`` over the kept tokens of the whole store (streamed, float64 sums)."""
    total = np.zeros(store.d_model, np.float64)
    n = 0
    for acts, _tokens in iter_token_batches(store, batch_size=1 << 30, exclude_special=exclude_special,
                                            max_tokens=max_tokens):
        total += acts.sum(0, dtype=np.float64)
        n += len(acts)
    return (total / max(n, 1)).astype(np.float32)


@dataclass
class LinearUnits:
    """Baseline units read linearly off the model activations: ``relu(±(x - mean_D) @ W_DU)``.

    Attributes
    ----------
    kind
        ``"neuron"`` (``W_DU`` = identity, both signs: columns ``n{d}+, n{d}-``) or ``"random"``
        (random unit directions, positive part: ``r{i}``).
    mean_D
        Centre subtracted first (the store mean, :func:`store_mean`), so a unit fires when the
        activation is above (or, for ``-``, below) its usual level.
    W_DU
        ``[d_model, n_directions]`` directions, ``None`` for the identity.
    both_signs
        Each direction gives a ``+`` and a ``-`` unit (interleaved columns).
    """

    kind: str
    mean_D: np.ndarray
    W_DU: np.ndarray | None
    both_signs: bool
    feature_names: list[str]
    meta: dict = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def __call__(self, acts_BD: np.ndarray) -> np.ndarray:
        """Dense codes ``[B, n_features]`` float32 of dense activations ``[B, d_model]``."""
        x = np.asarray(acts_BD, dtype=np.float32) - self.mean_D
        if self.W_DU is not None:
            x = x @ self.W_DU
        if not self.both_signs:
            return np.maximum(x, 0)
        out = np.empty((len(x), 2 * x.shape[1]), np.float32)
        out[:, 0::2] = np.maximum(x, 0)
        out[:, 1::2] = np.maximum(-x, 0)
        return out


def neuron_units(d_model: int, mean_D: np.ndarray | None = None) -> LinearUnits:
    """Each hidden dimension as two units, its positive and its negated part (centred on ``mean_D``)."""
    mean = np.zeros(d_model, np.float32) if mean_D is None else np.asarray(mean_D, np.float32)
    return LinearUnits("neuron", mean, None, True, [f"n{d}{s}" for d in range(d_model) for s in "+-"],
                       {"center": mean_D is not None})


def random_units(d_model: int, n: int, seed: int = 0, mean_D: np.ndarray | None = None) -> LinearUnits:
    """``n`` seeded random unit directions, positive part (centred on ``mean_D``)."""
    if n < 1:
        msg = f"n must be a positive number of directions, got {n}"
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    dirs_DN = rng.standard_normal((d_model, n)).astype(np.float32)
    dirs_DN /= np.linalg.norm(dirs_DN, axis=0, keepdims=True)
    mean = np.zeros(d_model, np.float32) if mean_D is None else np.asarray(mean_D, np.float32)
    return LinearUnits("random", mean, dirs_DN, False, [f"r{i}" for i in range(n)], {"seed": seed})


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


def _codes_by(transform: Callable[[np.ndarray], np.ndarray], chunk: int) -> Callable[[dict, np.ndarray], sp.csr_matrix]:
    """``codes_of(shard, rows)`` for :func:`_shard_batches`: ``transform`` (dense acts ``[B, D]`` → dense
    ``[B, F]``) of those rows, ``chunk`` rows at a time, zeros dropped."""

    def codes_of(shard: dict[str, Any], rows: np.ndarray) -> sp.csr_matrix:
        acts = np.asarray(shard["acts"])
        return sp.vstack([sp.csr_matrix(np.asarray(transform(acts[rows[a:a + chunk]]), dtype=np.float32))
                          for a in range(0, rows.size, chunk)], format="csr")

    return codes_of


def _collect(
    store: StoreLike,
    transform: Callable[[np.ndarray], np.ndarray],
    *,
    batch_size: int,
    max_tokens: int | None,
    exclude_special: bool,
) -> tuple[sp.csr_matrix, pd.DataFrame]:
    """Apply ``transform`` to every kept token of the store, keep nonzeros (all of :func:`_shard_batches` at once)."""
    batches = list(_shard_batches(store.iter_shards(), store.windows, _codes_by(transform, batch_size), 1 << 62,
                                  exclude_special, max_tokens))
    if not batches:
        raise InputError("the activation store holds no tokens; re-run `genosae embed`",
                         path=getattr(store, "path", None))
    codes = sp.vstack([b.codes for b in batches], format="csr", dtype=np.float32)
    codes.eliminate_zeros()
    return codes, pd.concat([b.tokens for b in batches], ignore_index=True)


def numpy_encoder(sae: Encoder, device: str = "cpu") -> Callable[[np.ndarray], np.ndarray]:
    """``acts [B, D] (numpy) -> codes [B, F] (float32 numpy)`` through ``sae.encode``, in the SAE's dtype."""
    import torch

    params = getattr(sae, "parameters", None)
    param = next(params(), None) if params is not None else None
    dtype = param.dtype if param is not None else torch.float32

    def encode(acts_BD: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(acts_BD, dtype=np.float32)).to(device=device, dtype=dtype)
            return sae.encode(x).float().cpu().numpy()

    return encode


@dataclass
class FeatureBatch:
    """One batch of a :class:`FeatureSource`: whole windows' tokens.

    Attributes
    ----------
    codes
        ``csr_matrix`` float32 ``[n, n_features]``, sorted indices.
    tokens
        :data:`TOKEN_COLUMNS` per row.
    rows
        Each row's index in the source's token order (what :func:`~genosae.features.motifs.top_sites`
        reports as ``row``; ties between equal activations go to the lower row).
    """

    codes: sp.csr_matrix
    tokens: pd.DataFrame
    rows: np.ndarray


class FeatureSource(Protocol):
    """Feature activations read as a stream of whole-window batches (flat memory).

    Implemented by :class:`FeatureActs` (in memory), :class:`CodeSource` (a code store on disk,
    :mod:`genosae.sae.codes`) and :class:`EncodedSource` (an SAE encoding an activation store on the
    fly). Every window's tokens arrive in one batch, and each window in exactly one batch.
    """

    feature_names: list[str]

    def iter_batches(self, batch_size: int = 65_536) -> Iterator[FeatureBatch]: ...

    def window_counts(self, n_windows: int) -> np.ndarray: ...


def _shard_batches(shards: Iterable[dict[str, Any]], windows: pd.DataFrame, codes_of: Callable[[dict, np.ndarray],
                   sp.csr_matrix], batch_size: int, exclude_special: bool, max_tokens: int | None
                   ) -> Iterator[FeatureBatch]:
    """Whole-window batches of the kept tokens of ``shards``; ``codes_of(shard, kept rows)`` gives their codes."""
    n_before = 0
    for shard, keep, idx in _kept_rows(shards, exclude_special, max_tokens):
        if idx.size == 0:
            continue
        tokens = _token_frame(shard, keep, windows)
        order = np.argsort(tokens["window_index"].to_numpy(), kind="stable")
        codes = sp.csr_matrix(codes_of(shard, idx[order]), dtype=np.float32)
        codes.sort_indices()
        tokens = tokens.iloc[order].reset_index(drop=True)
        for a, b in window_batches(tokens["window_index"].to_numpy(), batch_size):
            yield FeatureBatch(codes[a:b], tokens.iloc[a:b].reset_index(drop=True),
                               n_before + np.arange(a, b, dtype=np.int64))
        n_before += idx.size


def _counts(shards: Iterable[dict[str, Any]], n_windows: int, exclude_special: bool, max_tokens: int | None
            ) -> np.ndarray:
    out = np.zeros(n_windows, np.int64)
    for shard, keep, _ in _kept_rows(shards, exclude_special, max_tokens):
        out += np.bincount(np.asarray(shard["window_index"])[keep].astype(np.int64), minlength=n_windows)
    return out


class CodeSource:
    """A :class:`FeatureSource` over a code store (``genosae encode-codes``): reads one shard at a time.

    Tokens are kept as :func:`feature_activations` keeps them (``exclude_special``, the first
    ``max_tokens``), so the rows are the same as those of the SAE run on the source store.
    """

    def __init__(self, codes: Any, *, exclude_special: bool = True, max_tokens: int | None = None) -> None:
        from genosae.sae.codes import CodeStore

        self.codes = codes if isinstance(codes, CodeStore) else CodeStore(codes)
        if not self.codes.complete:
            raise InputError("the code store is unfinished; finish `genosae encode-codes` first", path=self.codes.path)
        self.feature_names = [f"f{i}" for i in range(self.codes.d_sae)]
        self.exclude_special, self.max_tokens = exclude_special, max_tokens

    @property
    def windows(self) -> pd.DataFrame:
        return self.codes.windows

    def iter_batches(self, batch_size: int = 65_536) -> Iterator[FeatureBatch]:
        yield from _shard_batches(self.codes.iter_shards(), self.windows, lambda sh, rows: sh["codes"][rows],
                                  batch_size, self.exclude_special, self.max_tokens)

    def window_counts(self, n_windows: int) -> np.ndarray:
        return _counts(self.codes.iter_shards(), n_windows, self.exclude_special, self.max_tokens)


class EncodedSource:
    """A :class:`FeatureSource` that encodes an activation store with an SAE on the fly (no disk)."""

    def __init__(self, sae: Encoder, store: Any, *, device: str = "cpu", exclude_special: bool = True,
                 max_tokens: int | None = None, encode_batch: int = 4096) -> None:
        self.store, self.encode = store, numpy_encoder(sae, device)
        d_sae = int(getattr(sae, "d_sae", 0)) or self.encode(np.zeros((1, store.d_model), np.float32)).shape[1]
        self.feature_names = [f"f{i}" for i in range(d_sae)]
        self.exclude_special, self.max_tokens, self.encode_batch = exclude_special, max_tokens, encode_batch

    @property
    def windows(self) -> pd.DataFrame:
        return self.store.windows

    def iter_batches(self, batch_size: int = 65_536) -> Iterator[FeatureBatch]:
        yield from _shard_batches(self.store.iter_shards(), self.windows, _codes_by(self.encode, self.encode_batch),
                                  batch_size, self.exclude_special, self.max_tokens)

    def window_counts(self, n_windows: int) -> np.ndarray:
        shards = self.store.iter_shards(columns=["window_index", "bp_start", "is_special"])
        return _counts(shards, n_windows, self.exclude_special, self.max_tokens)


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
    codes, tokens = _collect(store, numpy_encoder(sae, device), batch_size=batch_size, max_tokens=max_tokens,
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
    mean: np.ndarray | None = None,
) -> FeatureActs:
    """Baseline: each hidden dimension as two features, its positive part and its negated part.

    With ``center=True`` the per-dimension mean (``mean``, default :func:`store_mean` over every
    kept token of the store) is subtracted first, so a unit "fires" when it is above (``n{d}+``) or
    below (``n{d}-``) its usual level. Holds every token's codes in memory; to score a whole atlas
    stream :func:`neuron_units` through :func:`genosae.features.alignment.align_store` instead.

    Returns
    -------
    FeatureActs with ``kind="neuron"`` and ``2 * d_model`` columns ``n0+, n0-, n1+, ...``.
    """
    if center and mean is None:
        mean = store_mean(store, exclude_special=exclude_special, max_tokens=max_tokens)
    units = neuron_units(store.d_model, mean if center else None)
    codes, tokens = _collect(store, units, batch_size=batch_size, max_tokens=max_tokens,
                             exclude_special=exclude_special)
    return FeatureActs(codes, tokens, units.feature_names, "neuron", {"center": center})


def random_direction_activations(
    store: StoreLike,
    n: int,
    seed: int = 0,
    *,
    batch_size: int = 4096,
    max_tokens: int | None = None,
    exclude_special: bool = True,
    mean: np.ndarray | None = None,
) -> FeatureActs:
    """Baseline: projections on ``n`` random unit directions (seeded), positive part only.

    Activations are centred on ``mean`` (default :func:`store_mean` over every kept token) before
    projecting, so each direction fires on about half the tokens — the same footing as
    :func:`neuron_activations`. Holds every token's codes in memory; see :func:`random_units` for
    the streamed form.

    Returns
    -------
    FeatureActs with ``kind="random"`` and columns ``r0..r{n-1}``.
    """
    if n < 1:
        msg = f"n must be a positive number of directions, got {n}"
        raise ValueError(msg)
    if mean is None:
        mean = store_mean(store, exclude_special=exclude_special, max_tokens=max_tokens)
    units = random_units(store.d_model, n, seed, mean)
    codes, tokens = _collect(store, units, batch_size=batch_size, max_tokens=max_tokens,
                             exclude_special=exclude_special)
    return FeatureActs(codes, tokens, units.feature_names, "random", {"seed": seed})


WINDOW_FORMAT = "genosae-window-acts/1"


def segment_sum(x: np.ndarray | sp.spmatrix, segment: np.ndarray, n_segments: int, *,
                weights: np.ndarray | None = None) -> np.ndarray | sp.csr_matrix:
    """Sum of the rows of ``x`` per segment (one sparse indicator product).

    Parameters
    ----------
    x
        ``[n_rows, ...]`` dense array or sparse matrix (e.g. token codes, per-window sums).
    segment
        Segment id of each row, ``0 .. n_segments - 1``.
    n_segments
        Number of segments (rows of the result; a segment without rows sums to 0).
    weights
        Weight of each row (default 1, in ``x``'s dtype; given weights compute in float64).

    Returns
    -------
    ``[n_segments, ...]``: dense for dense ``x``, CSR for sparse ``x``.
    """
    segment = np.asarray(segment, dtype=np.int64)
    w = np.ones(segment.size, dtype=x.dtype) if weights is None else np.asarray(weights, np.float64)
    ind = sp.csr_matrix((w, (segment, np.arange(segment.size))), shape=(n_segments, segment.size))
    out = ind @ x
    return out.tocsr() if sp.issparse(out) else np.asarray(out)


def segment_max(x: np.ndarray | sp.spmatrix, segment: np.ndarray, n_segments: int
                ) -> np.ndarray | sp.csr_matrix:
    """Maximum of the rows of non-negative ``x`` per segment: the one segmented maximum of genosae.

    Rows are sorted by segment (sparse ``x``: its stored entries by segment × column) and reduced
    with one ``np.maximum.reduceat``. A segment without rows (sparse: a segment × column without a
    stored entry) is 0.

    Parameters
    ----------
    x
        ``[n_rows, n_columns]`` dense array or sparse matrix of non-negative values.
    segment
        Segment id of each row, ``0 .. n_segments - 1``.
    n_segments
        Number of segments (rows of the result).

    Returns
    -------
    ``[n_segments, n_columns]`` in ``x``'s dtype: dense for dense ``x``, CSR for sparse ``x``.
    """
    segment = np.asarray(segment, dtype=np.int64)
    n_col = x.shape[1]
    if sp.issparse(x):
        coo = x.tocoo()
        key = segment[coo.row] * n_col + coo.col.astype(np.int64)
        order = np.argsort(key, kind="stable")
        key, vals = key[order], coo.data[order]
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if key.size else key
        mx = np.maximum.reduceat(vals, starts) if key.size else vals
        return sp.csr_matrix((mx, (key[starts] // n_col, key[starts] % n_col)),
                             shape=(n_segments, n_col), dtype=x.dtype)
    x = np.asarray(x)
    out = np.zeros((n_segments, n_col), dtype=x.dtype)
    if segment.size:
        order = np.argsort(segment, kind="stable")
        starts = np.flatnonzero(np.r_[True, segment[order][1:] != segment[order][:-1]])
        out[segment[order][starts]] = np.maximum.reduceat(x[order], starts, axis=0)
    return out


def _window_aggregates(codes: sp.csr_matrix, segment: np.ndarray, n_segments: int, threshold: float
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense sum, max and count above ``threshold`` of sparse non-negative code rows per segment."""
    active = codes.copy()
    active.data = (active.data > threshold).astype(np.float32)
    return (segment_sum(codes, segment, n_segments).toarray(),
            segment_max(codes, segment, n_segments).toarray(),
            segment_sum(active, segment, n_segments).toarray())


@dataclass
class WindowActs:
    """Per-window aggregates of feature activations: what per-region/sample profiles need.

    Exact building blocks of any union of windows: a unit's mean is ``sum / n_tokens`` summed over
    its windows, its max the max of the maxima, its active fraction ``n_active / n_tokens``.
    Dense ``[n_windows, n_features]`` float32 (``n_windows × n_features × 12`` bytes), independent
    of the number of tokens, so a cohort never needs its token-level codes in memory.

    Attributes
    ----------
    sum, max, n_active
        Sum, maximum and count of activations above ``threshold`` over each window's kept tokens
        (special tokens and tokens without reference coordinates are left out).
    n_tokens
        Kept tokens per window ``[n_windows]``.
    """

    sum: np.ndarray
    max: np.ndarray
    n_active: np.ndarray
    n_tokens: np.ndarray
    feature_names: list[str]
    threshold: float = 0.0
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        shape = (len(self.n_tokens), len(self.feature_names))
        for name in ("sum", "max", "n_active"):
            if getattr(self, name).shape != shape:
                msg = f"{name} has shape {getattr(self, name).shape}, expected {shape}"
                raise ValueError(msg)

    @property
    def n_windows(self) -> int:
        return len(self.n_tokens)

    @classmethod
    def from_codes(cls, codes: sp.spmatrix, tokens: pd.DataFrame, n_windows: int, *,
                   feature_names: list[str] | None = None, threshold: float = 0.0) -> WindowActs:
        """Aggregate token-level codes (``FeatureActs.codes`` + ``.tokens``) per window (vectorised)."""
        codes = sp.csr_matrix(codes, dtype=np.float32)
        if len(tokens) != codes.shape[0]:
            raise InputError(f"token table has {len(tokens)} rows but codes have {codes.shape[0]}; "
                             "pass the token table that belongs to these codes", record="tokens")
        if "window_index" not in tokens.columns:
            raise InputError("token table lacks 'window_index'; use FeatureActs.tokens", record="tokens")
        if codes.data.size and codes.data.min() < 0:
            raise InputError("feature activations must be non-negative (SAE codes after the "
                             "activation function)", record="codes")
        win = tokens["window_index"].to_numpy(np.int64)
        if win.size and (win.min() < 0 or win.max() >= n_windows):
            raise InputError(f"token window_index out of range 0..{n_windows - 1}; the windows table "
                             "does not match the activations", record="tokens")
        keep = np.ones(len(win), dtype=bool)
        if "is_special" in tokens.columns:
            keep &= ~tokens["is_special"].to_numpy(dtype=bool)
        if "bp_start" in tokens.columns:
            keep &= tokens["bp_start"].to_numpy() >= 0
        tok = np.flatnonzero(keep)
        total, mx, n_active = _window_aggregates(codes[tok], win[tok], n_windows, threshold)
        names = feature_names if feature_names is not None else [str(i) for i in range(codes.shape[1])]
        return cls(total, mx, n_active, np.bincount(win[tok], minlength=n_windows).astype(np.int64),
                   list(names), threshold)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``window_acts.npz`` + ``meta.json`` into folder ``path`` (atomically)."""
        path = Path(path)
        with atomic_path(path, is_dir=True) as tmp:
            np.savez(tmp / "window_acts.npz", sum=self.sum, max=self.max, n_active=self.n_active,
                     n_tokens=self.n_tokens)
            write_json({"format": WINDOW_FORMAT, "feature_names": self.feature_names,
                        "threshold": self.threshold, "meta": self.meta}, tmp / "meta.json")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> WindowActs:
        """Read a folder written by :meth:`save`."""
        path = Path(path)
        meta = _read_meta(path, WINDOW_FORMAT, "window-activations", "run `genosae window-acts`")
        with np.load(path / "window_acts.npz") as z:
            return cls(z["sum"], z["max"], z["n_active"], z["n_tokens"], list(meta["feature_names"]),
                       float(meta.get("threshold", 0.0)), meta.get("meta", {}))


def window_activations(
    sae: Encoder,
    store: StoreLike,
    *,
    threshold: float = 0.0,
    batch_size: int = 4096,
    device: str = "cpu",
    progress: bool = True,
) -> WindowActs:
    """Encode a store with ``sae`` shard by shard and keep only per-window aggregates.

    Memory is ``n_windows × d_sae`` (three float32 arrays) plus one batch of dense codes, whatever
    the number of tokens; the result equals ``WindowActs.from_codes`` on :func:`feature_activations`.
    """
    from tqdm.auto import tqdm

    encode = numpy_encoder(sae, device)
    n_windows = len(store.windows)
    total = mx = n_active = None
    n_tokens = np.zeros(n_windows, dtype=np.int64)
    shards = list(store.shards) if hasattr(store, "shards") else None
    bar = tqdm(total=len(shards) if shards is not None else None, desc="encode windows", unit="shard",
               disable=not progress)
    for shard in store.iter_shards():
        acts = np.asarray(shard["acts"])
        keep = np.asarray(shard["bp_start"]) >= 0
        if "is_special" in shard:
            keep &= ~np.asarray(shard["is_special"], dtype=bool)
        idx = np.flatnonzero(keep)
        win_all = np.asarray(shard["window_index"], dtype=np.int64)
        for lo in range(0, len(idx), batch_size):
            rows = idx[lo:lo + batch_size]
            codes = encode(acts[rows])
            if total is None:
                total = np.zeros((n_windows, codes.shape[1]), np.float32)
                mx, n_active = np.zeros_like(total), np.zeros_like(total)
            win = win_all[rows]
            w, seg = np.unique(win, return_inverse=True)  # the few windows of this batch
            seg_sum, seg_max, seg_act = _window_aggregates(sp.csr_matrix(codes), seg, w.size, threshold)
            total[w] += seg_sum
            mx[w] = np.maximum(mx[w], seg_max)
            n_active[w] += seg_act
            np.add.at(n_tokens, win, 1)
        bar.update(1)
    bar.close()
    if total is None:
        raise InputError("the activation store holds no tokens; re-run `genosae embed`",
                         path=getattr(store, "path", None))
    names = [f"f{i}" for i in range(total.shape[1])]
    return WindowActs(total, mx, n_active, n_tokens, names, float(threshold))
