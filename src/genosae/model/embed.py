"""Embed windows with a DNA language model into an activation store (resumable, shardable).

Windows are cut into fixed shards of ``windows_per_shard`` rows; shard ``k`` always holds windows
``[k * windows_per_shard, (k + 1) * windows_per_shard)``, so a restarted run skips the shards its
manifest lists and recomputes only the rest, and ``n`` parallel jobs (``part=(i, n)``) each write a
disjoint set of shards that :func:`genosae.model.store.merge_stores` joins. Only one shard of
activations is held in memory at a time.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from genosae._io import stable_hash
from genosae.errors import InputError
from genosae.model.adapter import ModelAdapter
from genosae.model.store import ActivationStore, ActivationStoreWriter, StorageDtype

log = logging.getLogger(__name__)

#: ``sequences`` may be a list aligned with the windows, or a function returning the sequences of
#: a slice of the windows table (so a genome-wide run never holds every sequence at once).
SequenceSource = Sequence[str] | Callable[[pd.DataFrame], Sequence[str]]

REQUIRED_COLUMNS = ("window_id", "chrom", "start", "end", "strand")


def shard_ranges(n_windows: int, windows_per_shard: int) -> list[tuple[int, int]]:
    """Half-open window ranges of every shard."""
    return [(a, min(a + windows_per_shard, n_windows)) for a in range(0, n_windows, windows_per_shard)]


def part_shards(n_shards: int, part: tuple[int, int]) -> list[int]:
    """Shard ids of part ``i`` of ``n`` (contiguous blocks, as even as possible)."""
    i, n = part
    if not (n >= 1 and 0 <= i < n):
        raise InputError(f"part must be i/n with 0 <= i < n, got {i}/{n}", record="--part")
    return [int(k) for k in np.array_split(np.arange(n_shards), n)[i]]


def reference_token_spans(
    windows: pd.DataFrame, window: np.ndarray, start: np.ndarray, end: np.ndarray, special: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Reference ``[bp_start, bp_end)`` of tokens given by their window row and sequence span.

    ``+`` windows: sequence position ``p`` is reference base ``start + p``; ``-`` windows (sequences
    in window orientation, i.e. reverse-complemented reference slices or haplotypes): ``end - 1 - p``.
    Haplotype windows with an ``edits`` column (:func:`genosae.genome.variants.format_edits`) map
    base by base through :func:`~genosae.genome.variants.haplotype_positions`, so positions after an
    indel are exact and a token of inserted bases sits at the base before the insertion. Special
    tokens get ``-1``.
    """
    from genosae.genome.variants import haplotype_positions, parse_edits

    w_start = windows["start"].to_numpy(np.int64)
    w_end = windows["end"].to_numpy(np.int64)
    minus = windows["strand"].astype(str).to_numpy() == "-"
    sg = np.where(minus, -1, 1)[window]
    off = np.where(minus, w_end, w_start)[window]
    ref_s = np.where(sg > 0, off + start, off - end)
    ref_e = np.where(sg > 0, off + end, off - start)
    if "edits" in windows:
        edits = windows["edits"].to_numpy(object)
        edited = np.flatnonzero([isinstance(x, str) and x != "" for x in edits])
        by_window = np.argsort(window, kind="stable")  # tokens grouped by window, found by bisection
        bounds = np.searchsorted(window[by_window], np.stack([edited, edited + 1]))
        for w, a, b in zip(edited, bounds[0], bounds[1], strict=True):
            pos, _ = haplotype_positions(int(w_start[w]), int(w_end[w]), parse_edits(edits[w]))
            if minus[w]:
                pos = pos[::-1]
            t = by_window[a:b]
            t = t[~special[t]]
            if len(t) and int(end[t].max()) > len(pos):
                raise InputError(f"the window's edits give a {len(pos)} bp haplotype but its sequence is longer; "
                                 "the windows table is out of date (rebuild it)",
                                 record=f"window {windows['window_id'].iat[w]}")
            first, last = pos[start[t]], pos[end[t] - 1]
            ref_s[t], ref_e[t] = np.minimum(first, last), np.maximum(first, last) + 1
    return np.where(special, -1, ref_s), np.where(special, -1, ref_e)


def _check_windows(windows: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in windows.columns]
    if missing:
        raise InputError(f"the windows table lacks columns {missing}; expected {list(REQUIRED_COLUMNS)}",
                         record="header")
    bad = (windows["end"] <= windows["start"]) | (windows["start"] < 0)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError("window has end <= start or a negative start; fix its coordinates",
                         record=f"window {windows['window_id'].iloc[i]}")


def embedding_config_hash(adapter: ModelAdapter, *, windows_per_shard: int, reverse_complement: bool) -> str:
    """Hash of everything that changes the stored values besides the windows (resume guard)."""
    return stable_hash({"model": adapter.source, "layer": adapter.layer, "compute_dtype": str(adapter.dtype),
                        "windows_per_shard": int(windows_per_shard), "reverse_complement": bool(reverse_complement)})


def _embed_shard(
    adapter: ModelAdapter, win: pd.DataFrame, seqs: Sequence[str], first_index: int, reverse_complement: bool
) -> dict[str, np.ndarray | torch.Tensor]:
    """Hidden states + per-token columns (reference coordinates) of one shard's windows."""
    own = (win["sequence"].notna() & (win["sequence"].astype(str) != "")).to_numpy() if "sequence" in win \
        else np.zeros(len(win), dtype=bool)
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    ref_len = (win["end"] - win["start"]).to_numpy(np.int64)
    wrong = ~own & (lengths != ref_len)
    if wrong.any():
        i = int(np.flatnonzero(wrong)[0])
        raise InputError(f"sequence length {lengths[i]} differs from end - start = {ref_len[i]}; "
                         "the reference or the windows table is out of date",
                         record=f"window {win['window_id'].iloc[i]}")
    strands = [False, True] if reverse_complement else [False]
    # identical sequences (cohort haplotypes equal to the reference) run through the model once
    unique, inverse = np.unique(np.asarray(seqs, dtype=object), return_inverse=True)
    computed = [adapter.hidden_states(list(unique), reverse_complement=rc) for rc in strands]
    results = [[res[i] for i in inverse] for res in computed]
    acts, local_w, tok, start, end, special, has_n, rev = [], [], [], [], [], [], [], []
    for w in range(len(seqs)):
        t0 = 0
        for rc, res in zip(strands, results):
            a, sp = res[w]
            n = a.shape[0]
            acts.append(a)
            local_w.append(np.full(n, w, dtype=np.int64))
            tok.append(np.arange(t0, t0 + n, dtype=np.int64))
            start.append(sp.bp_start)
            end.append(sp.bp_end)
            special.append(sp.is_special)
            has_n.append(sp.has_n)
            rev.append(np.full(n, rc, dtype=bool))
            t0 += n
    lw = np.concatenate(local_w)
    s, e, spec = np.concatenate(start), np.concatenate(end), np.concatenate(special)
    ref_s, ref_e = reference_token_spans(win.reset_index(drop=True), lw, s, e, spec)
    return {
        "acts": torch.cat(acts) if acts else torch.zeros(0, adapter.d_model),
        "window_index": lw + first_index,
        "token_index": np.concatenate(tok),
        "bp_start": ref_s,
        "bp_end": ref_e,
        "is_special": spec,
        "has_n": np.concatenate(has_n),
        "reverse": np.concatenate(rev),
    }


def embed_windows(
    adapter: ModelAdapter,
    windows: pd.DataFrame,
    sequences: SequenceSource,
    out_dir: str | os.PathLike[str],
    *,
    batch_size: int = 32,
    windows_per_shard: int = 64,
    shard_ids: Sequence[int] | None = None,
    part: tuple[int, int] | None = None,
    storage_dtype: StorageDtype = "float16",
    progress: bool = True,
    reverse_complement: bool = False,
) -> ActivationStore:
    """Write the layer-``adapter.layer`` hidden states of every window to an activation store.

    Parameters
    ----------
    windows
        Windows table (``window_id, chrom, start, end, strand`` [+ ``sequence``]); its row number
        becomes ``window_index``.
    sequences
        The windows' sequences (aligned list) or a function ``f(windows_slice) -> sequences``.
    out_dir
        Store folder. If it holds a store of the same model, layer, settings and windows, the shards
        already written are kept and only the missing ones computed; otherwise it is refused.
    shard_ids, part
        Write only these shard ids, or part ``(i, n)`` of them (for ``n`` parallel jobs, each into
        its own folder; merge with :func:`~genosae.model.store.merge_stores`).
    reverse_complement
        Also embed each window's reverse complement: its tokens follow the forward ones (token_index
        continues), with spans on the forward strand and the extra ``reverse`` column set.

    Returns
    -------
    The finished store. ``bp_start``/``bp_end`` are reference coordinates (``-1`` for special tokens).
    """
    if windows_per_shard < 1 or batch_size < 1:
        msg = "windows_per_shard and batch_size must be >= 1"
        raise ValueError(msg)
    windows = windows.reset_index(drop=True)
    _check_windows(windows)
    if not callable(sequences) and len(sequences) != len(windows):
        msg = f"{len(sequences)} sequences for {len(windows)} windows"
        raise ValueError(msg)
    ranges = shard_ranges(len(windows), windows_per_shard)
    if shard_ids is not None and part is not None:
        msg = "give shard_ids or part, not both"
        raise ValueError(msg)
    wanted = list(range(len(ranges))) if shard_ids is None and part is None else \
        (part_shards(len(ranges), part) if part is not None else sorted({int(k) for k in shard_ids}))
    if any(not 0 <= k < len(ranges) for k in wanted):
        msg = f"shard ids must lie in [0, {len(ranges)})"
        raise ValueError(msg)
    meta = {
        "model": adapter.source, "layer": adapter.layer, "d_model": adapter.d_model,
        "tokenization": adapter.tokenization, "kmer": adapter.kmer, "model_kind": adapter.kind,
        "hook_module": adapter.hook_module,
        "config_hash": embedding_config_hash(adapter, windows_per_shard=windows_per_shard,
                                             reverse_complement=reverse_complement),
        "reverse_complement": bool(reverse_complement), "windows_per_shard": int(windows_per_shard),
        "n_shards_total": len(ranges), "part": list(part) if part is not None else None,
        "shard_ids": wanted,
    }
    writer = ActivationStoreWriter(out_dir, manifest_meta=meta, windows=windows, storage_dtype=storage_dtype)
    todo = [k for k in wanted if k not in writer.completed_shards()]
    bp = (windows["end"] - windows["start"]).to_numpy(np.int64)
    total_bp = int(sum(bp[a:b].sum() for a, b in (ranges[k] for k in todo)))
    log.info("embedding %d of %d shards (%d already done) into %s", len(todo), len(wanted),
             len(wanted) - len(todo), out_dir)
    old_bs, adapter.batch_size = adapter.batch_size, batch_size
    t0, n_tok = time.perf_counter(), 0
    try:
        with tqdm(total=total_bp, unit="bp", unit_scale=True, disable=not progress, desc="embed") as bar:
            for k in todo:
                a, b = ranges[k]
                win = windows.iloc[a:b]
                seqs = list(sequences(win)) if callable(sequences) else list(sequences[a:b])
                cols = _embed_shard(adapter, win, seqs, a, reverse_complement)
                writer.write_shard(k, window_range=(a, b), **{c: v for c, v in cols.items() if c != "reverse"},
                                   extra={"reverse": cols["reverse"]} if reverse_complement else None)
                n_tok += len(cols["window_index"])
                bar.update(int(bp[a:b].sum()))
                bar.set_postfix(tok_s=f"{n_tok / max(time.perf_counter() - t0, 1e-9):.0f}")
    finally:
        adapter.batch_size = old_bs
    return writer.finalize()


def fasta_sequences(fasta: str | Path) -> Callable[[pd.DataFrame], list[str]]:
    """Sequence source reading window slices from an indexed FASTA with pyfaidx (``-`` strand
    windows reverse-complemented, a non-empty ``sequence`` column used as is)."""
    import pyfaidx

    from genosae.genome.reference import reverse_complement
    from genosae.model.adapter import normalise_dna

    fa = pyfaidx.Fasta(str(fasta), as_raw=True, sequence_always_upper=True)

    def fetch(win: pd.DataFrame) -> list[str]:
        own = win["sequence"] if "sequence" in win else pd.Series([None] * len(win), index=win.index)
        out = []
        for chrom, s, e, strand, seq in zip(win["chrom"], win["start"], win["end"], win["strand"], own):
            if isinstance(seq, str) and seq:
                out.append(seq)
                continue
            if chrom not in fa:
                raise InputError(f"chromosome {chrom!r} is not in the FASTA", path=fasta, record=f"window {chrom}:{s}")
            sub = fa[chrom][int(s):int(e)]
            out.append(reverse_complement(normalise_dna(sub)) if strand == "-" else sub)
        return out

    return fetch
