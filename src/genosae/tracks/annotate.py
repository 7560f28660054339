"""Annotate any sequence with SAE features as genome-browser tracks (``genosae annotate``).

Inputs are a reference region (``chrom:start-end``, 0-based half-open like every genosae interval),
a BED of regions (overlapping ones merged) or a FASTA (records named ``chrom:start-end`` keep those
coordinates, any other record is its own chromosome ``<record name>``). Each input is cut into the
model's windows (``windows.size`` bp every ``windows.stride`` bp, the last one flush with the end);
each base takes its value from the window where it is most central (the window with the nearest
centre; ties go to the earlier window). Both strands run: the forward sequence and its reverse
complement, whose token spans the adapter maps back to forward coordinates, so ``<feature>.minus.bw``
holds, at forward base ``p``, the activation the model gave the reverse-strand token covering ``p``.
A base takes the activation of the token that covers it (multi-base tokens repeat their value).

Windows stream through the model ``batch_size`` at a time; each batch's per-base values go straight
into the bigWig/bedGraph writers (:class:`~genosae.tracks.writers.TrackWriter`) and the element
finder, so memory does not grow with the input length (only the element list does, one row per
element).

Element rule: an element is a maximal run of bases where a feature's activation is strictly above
its threshold (as in concept alignment, where a token fires when it *exceeds* a threshold). The
threshold of a feature is, first found of: the catalogue's ``threshold_abs``; the ``threshold_abs`` of
its best-concept row in ``alignment.parquet`` beside the catalogue (the absolute threshold concept
alignment chose); ``threshold x max_activation`` from the catalogue (``threshold`` is that choice as a
fraction of the feature's max); else 0 (any positive activation).
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import resource
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from genosae._io import atomic_path, write_json, write_table
from genosae.errors import InputError
from genosae.tracks.writers import TrackSpec, TrackWriter, write_igv_session, write_trackdb

log = logging.getLogger(__name__)

__all__ = [
    "ELEMENT_COLUMNS",
    "SUMMARY_COLUMNS",
    "FeatureRun",
    "TrackInput",
    "annotate",
    "annotate_sequences",
    "base_token_rows",
    "element_thresholds",
    "feature_run_paths",
    "open_feature_run",
    "parse_region",
    "per_base_codes",
    "read_bed_inputs",
    "read_fasta_inputs",
    "select_features",
    "window_layout",
]

#: Columns of ``elements.bed`` (BED6 + 5; ``score`` = 1000 x max activation / the feature's max).
ELEMENT_COLUMNS = ("chrom", "start", "end", "name", "score", "strand", "feature", "label", "max_activation",
                   "threshold", "seq_id")
#: Columns of ``features_per_sequence.tsv``.
SUMMARY_COLUMNS = ("seq_id", "chrom", "start", "end", "feature", "label", "strand", "n_elements",
                   "max_activation", "bases_covered")
_REGION = re.compile(r"^([^:\s]+):([0-9,]+)-([0-9,]+)$")
UNNAMED_LABELS = {"", "unassigned", "nan"}


@dataclass
class TrackInput:
    """One sequence to annotate: ``length`` bases placed at ``chrom:start`` of the tracks.

    ``fetch(a, b)`` returns bases ``[a, b)`` of the sequence (0-based, relative to ``start``).
    """

    seq_id: str
    chrom: str
    start: int
    length: int
    fetch: Callable[[int, int], str]

    @property
    def end(self) -> int:
        return self.start + self.length


# ------------------------------------------------------------------------------------ inputs
def _ref_input(reference: Any, seq_id: str, chrom: str, start: int, end: int) -> TrackInput:
    return TrackInput(seq_id, chrom, start, end - start,
                      lambda a, b, c=chrom, s=start: reference.fetch(c, s + a, s + b))


def parse_region(text: str, reference: Any) -> TrackInput:
    """``chrom:start-end`` (0-based half-open, commas allowed) on ``reference``.

    Raises
    ------
    InputError
        Malformed text, unknown chromosome, empty interval or one past the chromosome end.
    """
    m = _REGION.match(text.strip())
    if m is None:
        raise InputError(f"region {text!r} is not chrom:start-end (0-based, half-open), e.g. chrXVI:10000-20000",
                         record="--region")
    start, end = int(m.group(2).replace(",", "")), int(m.group(3).replace(",", ""))
    try:
        chrom = reference.resolve(m.group(1))
    except InputError as err:
        raise InputError(err.message, path=reference.path, record=f"--region {text}") from None
    size = reference.chrom_sizes[chrom]
    if not 0 <= start < end <= size:
        raise InputError(f"region {text} needs 0 <= start < end <= {size} (the length of {chrom})",
                         path=reference.path, record="--region")
    return _ref_input(reference, f"{chrom}:{start}-{end}", chrom, start, end)


def read_bed_inputs(path: str | os.PathLike[str], reference: Any) -> list[TrackInput]:
    """Regions of a BED file (``chrom start end [name ...]``, 0-based; ``track``/``browser``/``#``
    lines skipped). Overlapping or touching regions are merged (named ``chrom:start-end``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("BED file not found; fix the path", path=path)
    rows = []
    with open(path) as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            parts = line.rstrip("\n").split("\t") if "\t" in line else line.split()
            if len(parts) < 3 or not parts[1].isdigit() or not parts[2].isdigit():
                raise InputError("a BED line needs chrom, start, end (non-negative integers)", path=path,
                                 record=line_no)
            try:
                chrom = reference.resolve(parts[0])
            except InputError as err:
                raise InputError(err.message, path=path, record=line_no) from None
            start, end = int(parts[1]), int(parts[2])
            if not start < end <= reference.chrom_sizes[chrom]:
                raise InputError(f"needs start < end <= {reference.chrom_sizes[chrom]} (length of {chrom})",
                                 path=path, record=line_no)
            rows.append((chrom, start, end, parts[3] if len(parts) > 3 and parts[3] else f"{chrom}:{start}-{end}"))
    if not rows:
        raise InputError("the BED file has no regions", path=path)
    df = pd.DataFrame(rows, columns=["chrom", "start", "end", "name"])
    df["_rank"] = df["chrom"].map({c: i for i, c in enumerate(reference.chroms)})
    df = df.sort_values(["_rank", "start", "end"], kind="stable").reset_index(drop=True)
    # a new merged interval starts where a region begins past every earlier end on its chromosome
    prev_end = df.groupby("chrom", sort=False)["end"].transform(lambda e: e.cummax().shift(fill_value=-1))
    group = np.cumsum((df["start"] > prev_end).to_numpy())
    merged = df.groupby(group).agg(chrom=("chrom", "first"), start=("start", "min"), end=("end", "max"),
                                   name=("name", "first"), n=("name", "size"))
    ids = np.where(merged["n"] > 1, merged["chrom"] + ":" + merged["start"].astype(str) + "-"
                   + merged["end"].astype(str), merged["name"])
    return [_ref_input(reference, i, c, int(s), int(e))
            for i, c, s, e in zip(ids, merged["chrom"], merged["start"], merged["end"], strict=True)]


def read_fasta_inputs(path: str | os.PathLike[str], reference: Any | None = None
                      ) -> tuple[list[TrackInput], dict[str, int]]:
    """Records of a FASTA, plus the chromosome sizes their tracks need.

    A record named ``chrom:start-end`` (with ``end - start`` equal to its length) keeps those
    coordinates (``chrom`` resolved on ``reference`` when it knows it, whose length is then used);
    any other record is placed at ``0`` on a chromosome named after the record.
    """
    import pyfaidx

    path = Path(path)
    if not path.is_file():
        raise InputError("FASTA file not found; fix the path", path=path)
    if path.stat().st_size == 0:
        raise InputError("the FASTA file is empty", path=path)
    try:
        fa = pyfaidx.Fasta(str(path), as_raw=True, sequence_always_upper=True, read_long_names=False)
    except Exception as err:  # pyfaidx raises several unrelated types
        raise InputError(f"cannot index the FASTA ({type(err).__name__}: {str(err)[:160]}); make every "
                         "sequence line of a record the same length (e.g. `seqkit seq -w 80`)", path=path) from None
    inputs: list[TrackInput] = []
    sizes: dict[str, int] = {}
    for name in fa.keys():
        n = len(fa[name])
        if n == 0:
            raise InputError("empty record", path=path, record=name)
        m = _REGION.match(name)
        chrom, start = name, 0
        if m is not None:
            chrom, start, end = m.group(1), int(m.group(2).replace(",", "")), int(m.group(3).replace(",", ""))
            if end - start != n:
                raise InputError(f"the record is named {name} ({end - start} bp) but holds {n} bp; fix the "
                                 "name or the sequence", path=path, record=name)
            if reference is not None and chrom in reference.aliases:
                chrom = reference.resolve(chrom)
                size = reference.chrom_sizes[chrom]
                if end > size:
                    raise InputError(f"ends past the end of {chrom} ({size} bp)", path=path, record=name)
                sizes[chrom] = size
            else:
                sizes[chrom] = max(sizes.get(chrom, 0), end)
        else:
            if name in sizes:
                raise InputError("a record of this name clashes with another record's chromosome", path=path,
                                 record=name)
            sizes[name] = n
        inputs.append(TrackInput(name, chrom, start, n, lambda a, b, r=name: fa[r][a:b]))
    inputs = _sorted_inputs(inputs, sizes)
    for a, b in itertools.pairwise(inputs):
        if a.chrom == b.chrom and b.start < a.end:
            raise InputError(f"records {a.seq_id} and {b.seq_id} overlap; tracks need non-overlapping "
                             "records (annotate them in separate runs)", path=path, record=b.seq_id)
    return inputs, sizes


def _sorted_inputs(inputs: Sequence[TrackInput], chrom_sizes: Mapping[str, int]) -> list[TrackInput]:
    rank = {c: i for i, c in enumerate(chrom_sizes)}
    return sorted(inputs, key=lambda t: (rank[t.chrom], t.start))


# ---------------------------------------------------------------------------------- windows
def window_layout(length: int, size: int, stride: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Windows over ``[0, length)`` and the part of each that owns its bases.

    Returns ``(start, end, own_start, own_end)``: windows every ``stride`` bp, the last one ending at
    ``length`` (one window if ``length <= size``); consecutive owned parts tile ``[0, length)`` and
    each base is owned by the window whose centre is nearest (the earlier window on a tie), i.e.
    where it is most central.
    """
    if size < 1 or not 1 <= stride <= size:
        raise InputError(f"windows need size >= 1 and 1 <= stride <= size, got size={size}, stride={stride}",
                         record="windows")
    if length <= size:
        start = np.zeros(1, dtype=np.int64)
    else:
        start = np.unique(np.append(np.arange(0, length - size, stride, dtype=np.int64), length - size))
    end = np.minimum(start + size, length)
    cut = (end[:-1] - 1 + start[1:]) // 2 + 1  # base p goes to window i iff p <= midpoint of the centres
    own_start = np.concatenate([[0], cut]).astype(np.int64)
    own_end = np.concatenate([cut, [length]]).astype(np.int64)
    return start, end, own_start, own_end


def base_token_rows(spans: Any, length: int) -> np.ndarray:
    """Row (token index) of the token covering each base of a window, ``[length]``."""
    idx = np.flatnonzero(~np.asarray(spans.is_special))
    s, e = np.asarray(spans.bp_start)[idx], np.asarray(spans.bp_end)[idx]
    order = np.argsort(s, kind="stable")
    idx, s, e = idx[order], s[order], e[order]
    if not (len(s) and s[0] == 0 and e[-1] == length and (s[1:] == e[:-1]).all()):
        msg = "the model's tokens do not tile the window"
        raise RuntimeError(msg)
    return np.repeat(idx, e - s)


# --------------------------------------------------------------------------------- elements
class _Elements:
    """Maximal runs above threshold, per feature, joined across consecutive stretches of one input."""

    def __init__(self, thresholds: np.ndarray) -> None:
        self.thr = np.asarray(thresholds, dtype=np.float32)
        n = len(self.thr)
        self.open_start = np.full(n, -1, dtype=np.int64)
        self.open_max = np.zeros(n, dtype=np.float32)
        self.end: int | None = None
        self.parts: list[tuple[np.ndarray, ...]] = []

    def add(self, start: int, vals: np.ndarray) -> None:
        n, F = vals.shape
        if n == 0:
            return
        if self.end is not None and start != self.end:
            self.flush()
        fire = vals > self.thr[None, :]
        pad = np.zeros((F, n + 2), dtype=np.int8)
        pad[:, 1:-1] = fire.T
        step = np.diff(pad, axis=1)
        fs, ps = np.nonzero(step == 1)  # sorted by feature, then position
        fe, pe = np.nonzero(step == -1)
        if not np.array_equal(fs, fe):
            msg = "unpaired run edges"
            raise AssertionError(msg)
        # the previous stretch's open runs that stop at the boundary
        ended = (self.open_start >= 0) & ~fire[0]
        if ended.any():
            f = np.flatnonzero(ended)
            self.parts.append((self.open_start[f], np.full(len(f), self.end), f, self.open_max[f]))
        mx = np.zeros(len(fs), dtype=np.float32)
        if len(fs):
            masked = np.where(fire, vals, -np.inf).T.ravel()
            mx = np.maximum.reduceat(masked, fs * n + ps).astype(np.float32)
        s_abs, e_abs = ps + start, pe + start
        cont = (ps == 0) & (self.open_start[fs] >= 0)
        s_abs[cont] = self.open_start[fs[cont]]
        mx[cont] = np.maximum(mx[cont], self.open_max[fs[cont]])
        still = pe == n
        self.open_start[:] = -1
        self.open_start[fs[still]] = s_abs[still]
        self.open_max[fs[still]] = mx[still]
        done = ~still
        self.parts.append((s_abs[done], e_abs[done], fs[done], mx[done]))
        self.end = start + n

    def flush(self) -> None:
        f = np.flatnonzero(self.open_start >= 0)
        if len(f):
            self.parts.append((self.open_start[f], np.full(len(f), self.end), f, self.open_max[f]))
        self.open_start[:] = -1
        self.end = None

    def table(self) -> pd.DataFrame:
        self.flush()
        cols = [np.concatenate([p[i] for p in self.parts]) if self.parts else np.zeros(0) for i in range(4)]
        return pd.DataFrame({"start": cols[0].astype(np.int64), "end": cols[1].astype(np.int64),
                             "feature_index": cols[2].astype(np.int64), "max_activation": cols[3].astype(np.float32)})


# --------------------------------------------------------------------------------- features
def _labels(catalog: pd.DataFrame | None) -> pd.Series:
    if catalog is None or "label" not in catalog:
        return pd.Series(dtype=object)
    return catalog["label"].fillna("").astype(str)


def select_features(catalog: pd.DataFrame | None, d_sae: int, *, features: Sequence[str] | str | None = None,
                    named: bool = False) -> list[str]:
    """Feature names (``f<index>``) to annotate: the given ones (``f12`` or ``12``), or with ``named``
    every feature the catalogue labels (label not empty or ``unassigned``)."""
    if features is not None and named:
        raise InputError("give --features or --named, not both", record="--features")
    if features is None:
        if catalog is None:
            raise InputError("no feature catalogue to take named features from; pass --features f1,f2 "
                             "(or --catalog FILE)", record="--named")
        labels = _labels(catalog)
        chosen = [str(f) for f, lab in labels.items() if lab.strip().lower() not in UNNAMED_LABELS]
        if not chosen:
            raise InputError("the catalogue names no feature (every label is 'unassigned'); pass "
                             "--features f1,f2", record="--named")
        return chosen
    items = [s.strip() for s in (features.split(",") if isinstance(features, str) else features) if s.strip()]
    out = []
    for item in items:
        m = re.fullmatch(r"f?(\d+)", item)
        if m is None or int(m.group(1)) >= d_sae:
            raise InputError(f"feature {item!r} is not f0..f{d_sae - 1} of this SAE", record="--features")
        out.append(f"f{int(m.group(1))}")
    if not out:
        raise InputError("--features is empty", record="--features")
    return list(dict.fromkeys(out))


def element_thresholds(catalog: pd.DataFrame | None, features: Sequence[str],
                       alignment: pd.DataFrame | None = None) -> tuple[np.ndarray, list[str]]:
    """Absolute threshold of each feature and the rule that gave it (see the module docstring)."""
    thr = np.zeros(len(features), dtype=np.float64)
    rule = ["none: > 0"] * len(features)
    if catalog is None:
        return thr, rule
    cat = catalog.reindex(list(features))
    best = None
    if alignment is not None and "best_concept" in cat:
        a = alignment.set_index(["feature", "concept"])["threshold_abs"]
        keys = list(zip(cat.index, cat["best_concept"], strict=True))
        best = pd.Series([a.get(k, np.nan) for k in keys], index=cat.index, dtype=float)
    sources = [("threshold_abs", cat["threshold_abs"] if "threshold_abs" in cat else None),
               ("alignment.parquet threshold_abs", best),
               ("threshold x max_activation", cat["threshold"] * cat["max_activation"]
                if {"threshold", "max_activation"} <= set(cat) else None)]
    for i in range(len(features)):
        for name, values in sources:
            if values is not None and pd.notna(values.iloc[i]):
                thr[i], rule[i] = max(float(values.iloc[i]), 0.0), name
                break
    return thr, rule


# ------------------------------------------------------------------------------------ engine
def per_base_codes(
    adapter: Any,
    encode: Callable[[np.ndarray], np.ndarray],
    seqs: Sequence[str],
    *,
    reverse_complement: bool = False,
    columns: np.ndarray | None = None,
    keep: Sequence[tuple[int, int]] | None = None,
    chunk: int = 8192,
) -> tuple[np.ndarray, int]:
    """The code of the token covering each base, for every sequence, concatenated ``[Σ bases, n]``.

    ``keep[i] = (a, b)`` keeps bases ``a:b`` of sequence ``i`` (default all); ``columns`` picks SAE
    columns (default all). Each token is encoded once (``chunk`` tokens at a time) however many bases it
    covers. Returns the codes and the number of tokens encoded.
    """
    res = adapter.hidden_states(list(seqs), reverse_complement=reverse_complement)
    offsets = np.concatenate([[0], np.cumsum([a.shape[0] for a, _ in res])])
    rows = np.concatenate([
        offsets[i] + base_token_rows(sp, len(seqs[i]))[slice(*keep[i]) if keep is not None else slice(None)]
        for i, (_, sp) in enumerate(res)])
    uniq, inv = np.unique(rows, return_inverse=True)
    acts = np.concatenate([a.float().numpy() for a, _ in res])[uniq]
    parts = []
    for a in range(0, acts.shape[0], chunk):
        z = encode(acts[a:a + chunk])
        parts.append(z if columns is None else z[:, columns])
    codes = np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros((0, 0), np.float32)
    return codes[inv], len(uniq)


def annotate_sequences(
    adapter: Any,
    encode: Callable[[np.ndarray], np.ndarray],
    inputs: Sequence[TrackInput],
    track_dir: str | os.PathLike[str],
    *,
    feature_index: Sequence[int],
    feature_names: Sequence[str],
    thresholds: np.ndarray,
    chrom_sizes: Mapping[str, int],
    labels: Sequence[str] | None = None,
    window: int = 512,
    stride: int = 256,
    batch_size: int = 32,
    token_chunk: int = 8192,
    bedgraph: bool = True,
    progress: bool = True,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Stream ``inputs`` through ``adapter`` and ``encode``; write both strands' tracks into ``track_dir``.

    Parameters
    ----------
    adapter
        A :class:`~genosae.model.adapter.ModelAdapter` (``hidden_states``).
    encode
        ``acts [N, d_model] -> codes [N, d_sae]`` (:func:`genosae.features.activations.numpy_encoder`).
    feature_index, feature_names, labels, thresholds
        SAE columns to track, their names (``f12``), catalogue labels and element thresholds.
    chrom_sizes
        Track header, in the order inputs are written (inputs are sorted by it).

    Returns
    -------
    elements
        One row per element (:data:`ELEMENT_COLUMNS` minus ``name``/``score``) over every input.
    stats
        ``n_bases``, ``n_windows``, ``n_tokens_encoded``, ``elapsed_s``, ``bp_per_s`` and the track paths.
    """
    track_dir = Path(track_dir)
    track_dir.mkdir(parents=True, exist_ok=True)
    cols = np.asarray(feature_index, dtype=np.int64)
    labels = list(labels) if labels is not None else [""] * len(cols)
    strands = (("+", False), ("-", True))
    specs = {s: [TrackSpec(n, s, lab) for n, lab in zip(feature_names, labels, strict=True)] for s, _ in strands}
    need = 2 * len(cols) * (2 if bedgraph else 1) + 32
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and need > soft:
        raise InputError(f"{len(cols)} features need {need} open files, over this shell's limit {soft}; pass "
                         "fewer --features, --no-bedgraph, or raise `ulimit -n`", record="features")
    inputs = _sorted_inputs(inputs, chrom_sizes)
    old_bs, adapter.batch_size = adapter.batch_size, batch_size
    writers = {s: [TrackWriter(track_dir, sp, chrom_sizes, bedgraph=bedgraph) for sp in specs[s]] for s, _ in strands}
    frames, n_windows, n_encoded, t0 = [], 0, 0, time.perf_counter()
    total = int(sum(t.length for t in inputs))
    try:
        with tqdm(total=total, unit="bp", unit_scale=True, disable=not progress, desc="annotate") as bar:
            for inp in inputs:
                w_start, w_end, own_s, own_e = window_layout(inp.length, window, stride)
                finders = {s: _Elements(thresholds) for s, _ in strands}
                for b0 in range(0, len(w_start), batch_size):
                    b1 = min(b0 + batch_size, len(w_start))
                    s0 = int(w_start[b0])
                    span = inp.fetch(s0, int(w_end[b0:b1].max()))
                    seqs = [span[a - s0:b - s0] for a, b in zip(w_start[b0:b1], w_end[b0:b1], strict=True)]
                    lo, hi = int(own_s[b0]), int(own_e[b1 - 1])
                    for strand, rc in strands:
                        keep = [(int(own_s[b0 + i] - w_start[b0 + i]), int(own_e[b0 + i] - w_start[b0 + i]))
                                for i in range(len(seqs))]
                        vals, n_tok = per_base_codes(adapter, encode, seqs, reverse_complement=rc, columns=cols,
                                                     keep=keep, chunk=token_chunk)
                        for j, w in enumerate(writers[strand]):
                            w.add(inp.chrom, inp.start + lo, vals[:, j])
                        finders[strand].add(inp.start + lo, vals)
                        n_encoded += n_tok
                    n_windows += b1 - b0
                    bar.update(hi - lo)
                for strand, _ in strands:
                    el = finders[strand].table()
                    if len(el):
                        frames.append(el.assign(chrom=inp.chrom, strand=strand, seq_id=inp.seq_id))
    finally:
        adapter.batch_size = old_bs
        for ws in writers.values():
            for w in ws:
                w.close()
    elapsed = time.perf_counter() - t0
    el = pd.concat(frames, ignore_index=True) if frames else \
        _Elements(thresholds).table().assign(chrom="", strand="", seq_id="")
    pos = el["feature_index"].to_numpy(np.int64)
    el = el.assign(feature=np.asarray(feature_names, dtype=object)[pos],
                   label=np.asarray(labels, dtype=object)[pos],
                   threshold=np.asarray(thresholds, dtype=np.float64)[pos])
    tracks = [(specs[s][j], writers[s][j].bw_path) for j in range(len(cols)) for s, _ in strands]
    stats = {"n_bases": total, "n_windows": n_windows, "n_tokens_encoded": n_encoded, "elapsed_s": round(elapsed, 3),
             "bp_per_s": round(total / elapsed, 1) if elapsed > 0 else None, "tracks": tracks,
             "bedgraphs": [w.bedgraph_path for ws in writers.values() for w in ws if w.bedgraph_path]}
    return el, stats


# ------------------------------------------------------------------------------ config level
def _read_catalog(path: Path | None) -> pd.DataFrame | None:
    if path is None:
        return None
    cat = pd.read_csv(path)
    if "feature" not in cat:
        raise InputError("the catalogue has no 'feature' column; is it genosae's feature_catalog.csv?",
                         path=path, record=1)
    return cat.set_index(cat["feature"].astype(str))


def _element_bed(el: pd.DataFrame, catalog: pd.DataFrame | None, chrom_order: Mapping[str, int]) -> pd.DataFrame:
    if catalog is not None and "max_activation" in catalog:
        fmax = catalog["max_activation"].reindex(el["feature"]).to_numpy(np.float64)
    else:
        fmax = np.full(len(el), np.nan)
    per_feature = el.groupby("feature")["max_activation"].transform("max").to_numpy(np.float64)
    fmax = np.where(np.isfinite(fmax) & (fmax > 0), fmax, per_feature)
    score = np.clip(np.rint(1000 * el["max_activation"].to_numpy(np.float64) / np.maximum(fmax, 1e-12)), 0, 1000)
    label, feature = el["label"].astype(str), el["feature"].astype(str)
    name = np.where(label.str.strip() != "", feature + "|" + label.str.replace(r"\s+", "_", regex=True), feature)
    bed = el.assign(name=name, score=score.astype(np.int64), _r=el["chrom"].map(chrom_order))
    bed = bed.sort_values(["_r", "start", "end", "feature_index", "strand"], kind="stable")
    return bed[list(ELEMENT_COLUMNS)].reset_index(drop=True)


def _summary(el: pd.DataFrame, inputs: Sequence[TrackInput]) -> pd.DataFrame:
    if el.empty:
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    g = el.assign(bases=el["end"] - el["start"]).groupby(["seq_id", "feature_index", "strand"], sort=False)
    out = g.agg(feature=("feature", "first"), label=("label", "first"), n_elements=("start", "size"),
                max_activation=("max_activation", "max"), bases_covered=("bases", "sum")).reset_index()
    where = pd.DataFrame([(t.seq_id, t.chrom, t.start, t.end, i) for i, t in enumerate(inputs)],
                         columns=["seq_id", "chrom", "start", "end", "_order"])
    out = out.merge(where, on="seq_id").sort_values(["_order", "feature_index", "strand"], kind="stable")
    return out[list(SUMMARY_COLUMNS)].reset_index(drop=True)


@dataclass
class FeatureRun:
    """What annotation reads from a finished run: the model, its SAE and the feature catalogue."""

    config: dict
    adapter: Any
    sae: Any
    sae_path: Path
    catalog: pd.DataFrame | None
    catalog_path: Path
    alignment: pd.DataFrame | None

    @property
    def labels(self) -> pd.Series:
        """Catalogue label of every SAE feature (``f0`` ...), ``""`` where there is none."""
        names = [f"f{i}" for i in range(self.sae.d_sae)]
        if self.catalog is None:
            return pd.Series("", index=names)
        return _labels(self.catalog).reindex(names).fillna("").astype(str)


def feature_run_paths(config: dict, *, sae: str | os.PathLike[str] | None = None,
                      catalog: str | os.PathLike[str] | None = None) -> tuple[Path, Path]:
    """The SAE and catalogue a run's outputs hold (``<outdir>/sae/seed0``,
    ``<outdir>/features/feature_catalog.csv``) or the given overrides, checked to exist."""
    root = Path(config["outdir"])
    sae_path = Path(sae) if sae is not None else root / "sae" / "seed0"
    if not sae_path.exists():
        raise InputError("no SAE here; train one (`genosae train-sae`) or pass --sae DIR", path=sae_path)
    cat_path = Path(catalog) if catalog is not None else root / "features" / "feature_catalog.csv"
    if catalog is not None and not cat_path.is_file():
        raise InputError("catalogue not found; fix the path", path=cat_path)
    return sae_path, cat_path


def open_feature_run(config: dict, paths: tuple[Path, Path], *, model: str | os.PathLike[str] | None = None,
                     device: str | None = None) -> FeatureRun:
    """Load the config's model (or ``model``), the SAE at ``paths[0]`` checked against that model and
    layer, and the catalogue at ``paths[1]`` with its ``alignment.parquet`` when present."""
    from genosae.model.adapter import load_model_from_config
    from genosae.sae.io import load_sae

    sae_path, cat_path = paths
    cat = _read_catalog(cat_path if cat_path.is_file() else None)
    align_path = cat_path.parent / "alignment.parquet"
    alignment = (pd.read_parquet(align_path, columns=["feature", "concept", "threshold_abs"])
                 if cat is not None and align_path.is_file() else None)
    mcfg = config["model"]
    adapter = load_model_from_config(mcfg, path=model, device=device)
    sae_obj = load_sae(sae_path, device=str(adapter.device), expect_model=str(adapter.source.get("path")),
                       expect_layer=adapter.layer)
    if sae_obj.d_in != adapter.d_model:
        raise InputError(f"the SAE reads d_in={sae_obj.d_in} but the model's layer has width {adapter.d_model}",
                         path=sae_path)
    return FeatureRun(config, adapter, sae_obj, sae_path, cat, cat_path, alignment)


def annotate(
    config: dict | str | os.PathLike[str],
    *,
    outdir: str | os.PathLike[str],
    region: str | None = None,
    bed: str | os.PathLike[str] | None = None,
    fasta: str | os.PathLike[str] | None = None,
    features: Sequence[str] | str | None = None,
    named: bool = False,
    model: str | os.PathLike[str] | None = None,
    sae: str | os.PathLike[str] | None = None,
    catalog: str | os.PathLike[str] | None = None,
    device: str | None = None,
    window: int | None = None,
    stride: int | None = None,
    batch_size: int | None = None,
    bedgraph: bool = True,
    progress: bool = True,
) -> dict[str, Path]:
    """Annotate a region, a BED of regions or a FASTA with the config's model, SAE and catalogue.

    Parameters
    ----------
    config
        Config dict or YAML path (validated, defaults filled): ``model`` (the LM; ``model`` overrides
        its path), ``windows`` (``size``/``stride``; ``window``/``stride`` override), ``outdir`` (where the SAE,
        ``<outdir>/sae/seed0``, the catalogue, ``<outdir>/features/feature_catalog.csv``, and the
        prepared reference, ``<outdir>/reference/``, are looked up) and ``reference``.
    region, bed, fasta
        Exactly one input (see the module docstring).
    features, named
        Features to track (``"f12,f80"``), or every feature the catalogue names (the default when
        neither is given).
    model, sae, catalog
        Override the model folder/hub id, the SAE (any format :func:`genosae.sae.io.load_sae` reads;
        checked against the model and layer) and the catalogue.

    Returns
    -------
    dict
        Paths: ``tracks`` (folder with ``<feature>.plus.bw``, ``<feature>.minus.bw`` and their
        ``.bedGraph``), ``elements`` (``elements.bed``, :data:`ELEMENT_COLUMNS`), ``summary``
        (``features_per_sequence.tsv``, :data:`SUMMARY_COLUMNS`), ``igv_session``
        (``igv_session.xml``), ``trackdb`` (``trackDb.txt``) and ``params`` (``annotate.json``:
        inputs, model, SAE, thresholds and their rule, timings).
    """
    from genosae.config import load_config, validate_config
    from genosae.features.activations import numpy_encoder
    from genosae.genome.reference import Reference, reference_files

    cfg = validate_config(config) if isinstance(config, dict) else load_config(config, check_files=False)
    given = [name for name, v in (("--region", region), ("--bed", bed), ("--fasta", fasta)) if v is not None]
    if len(given) != 1:
        raise InputError(f"give exactly one of --region, --bed, --fasta (got {', '.join(given) or 'none'})",
                         record="--region")
    out = Path(outdir)
    paths_in = feature_run_paths(cfg, sae=sae, catalog=catalog)

    # inputs first: a bad region or FASTA fails before the model loads
    fa_ref, gff = reference_files(cfg, reference_dir=Path(cfg["outdir"]) / "reference", build=fasta is None)
    gff = gff if gff is not None and gff.is_file() else None
    reference = None
    if fasta is None:
        if fa_ref is None:
            raise InputError("the config names no reference FASTA", record="reference.fasta")
        reference = Reference.open(fa_ref, cfg["reference"].get("chrom_aliases") or {})
        inputs = [parse_region(region, reference)] if region is not None else read_bed_inputs(bed, reference)
        chrom_sizes = dict(reference.chrom_sizes)
        genome: Path = Path(fa_ref)
    else:
        if fa_ref is not None and Path(fa_ref).is_file():
            reference = Reference.open(fa_ref, cfg["reference"].get("chrom_aliases") or {})
        inputs, chrom_sizes = read_fasta_inputs(fasta, reference)
        own = any(t.chrom not in (reference.chrom_sizes if reference else {}) for t in inputs)
        genome = Path(fasta) if own else Path(fa_ref)
        if own:
            gff = None
    run = open_feature_run(cfg, paths_in, model=model, device=device)
    adapter, sae_obj, cat, alignment = run.adapter, run.sae, run.catalog, run.alignment
    sae_path, cat_path = run.sae_path, run.catalog_path
    mcfg = cfg["model"]
    names = select_features(cat, sae_obj.d_sae, features=features, named=named or features is None)
    index = [int(n[1:]) for n in names]
    labels = [str(x) for x in _labels(cat).reindex(names).fillna("")] if cat is not None else [""] * len(names)
    thr, rule = element_thresholds(cat, names, alignment)
    wcfg = cfg.get("windows", {})
    size, step = int(window or wcfg.get("size", 512)), int(stride or wcfg.get("stride", 256))
    bs = int(batch_size or mcfg.get("batch_size", 32))
    window_layout(1, size, step)  # validates size/stride
    inputs = _sorted_inputs(inputs, chrom_sizes)

    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "tracks", is_dir=True) as tmp:
        el, stats = annotate_sequences(
            adapter, numpy_encoder(sae_obj, str(adapter.device)), inputs, tmp, feature_index=index,
            feature_names=names, labels=labels, thresholds=thr, chrom_sizes=chrom_sizes, window=size,
            stride=step, batch_size=bs, bedgraph=bedgraph, progress=progress)
    final = out / "tracks"
    tracks = [(spec, final / p.name) for spec, p in stats.pop("tracks")]
    stats["bedgraphs"] = [final / p.name for p in stats["bedgraphs"]]
    order = {c: i for i, c in enumerate(chrom_sizes)}
    paths = {"tracks": final, "elements": out / "elements.bed", "summary": out / "features_per_sequence.tsv",
             "igv_session": out / "igv_session.xml", "trackdb": out / "trackDb.txt", "params": out / "annotate.json"}
    bed_df = _element_bed(el, cat, order)
    with atomic_path(paths["elements"]) as tmp:
        with open(tmp, "w") as fh:
            fh.write("#" + "\t".join(ELEMENT_COLUMNS) + "\n")
            bed_df.to_csv(fh, sep="\t", header=False, index=False, float_format="%.6g")
    write_table(_summary(el, inputs), paths["summary"], float_format="%.6g")
    first = inputs[0]
    extra = [("elements", paths["elements"])] + ([("annotation", Path(gff).resolve())] if gff else [])
    write_igv_session(paths["igv_session"], genome=Path(genome).resolve(), tracks=tracks, extra=extra,
                      locus=f"{first.chrom}:{first.start + 1}-{first.end}")
    write_trackdb(paths["trackdb"], tracks)
    write_json({
        "inputs": [{"seq_id": t.seq_id, "chrom": t.chrom, "start": t.start, "end": t.end} for t in inputs],
        "model": adapter.source, "layer": adapter.layer, "hook_module": adapter.hook_module,
        "sae": {"path": str(sae_path), "architecture": sae_obj.architecture(), "d_sae": sae_obj.d_sae,
                "metadata": sae_obj.cfg.metadata},
        "catalog": str(cat_path) if cat is not None else None,
        "windows": {"size": size, "stride": step, "batch_size": bs, "rule": "each base from the window "
                    "where it is most central"},
        "features": [{"feature": n, "label": lab, "threshold": float(t), "threshold_rule": r}
                     for n, lab, t, r in zip(names, labels, thr, rule, strict=True)],
        "n_elements": len(bed_df), "genome": str(Path(genome).resolve()), **stats,
    }, paths["params"])
    log.info("annotated %d bp (%d windows, both strands) in %.1f s (%.0f bp/s): %d features, %d elements -> %s",
             stats["n_bases"], stats["n_windows"], stats["elapsed_s"], stats["bp_per_s"] or 0, len(names),
             len(bed_df), out)
    return paths
