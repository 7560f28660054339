"""Feature motifs: sequence around top activations → PWM → logo, matched to JASPAR with tomtom.

Sequences are read in the window's orientation (what the model saw): for a ``-`` window the site is
the reverse complement of the reference. Motif comparison is memelite's TOMTOM (both strands, all
offsets, complete score); q-values are Benjamini–Hochberg over every feature × motif comparison.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp

from genosae._io import atomic_path
from genosae.features.activations import FeatureActs
from genosae.features.alignment import benjamini_hochberg

__all__ = [
    "MOTIF_MATCH_COLUMNS",
    "codon_preference",
    "encode_sequences",
    "feature_pwms",
    "logo_png",
    "match_motifs",
    "pwm_from_sequences",
    "site_sequences",
    "top_sites",
    "trim_pwm",
]

MOTIF_MATCH_COLUMNS = ("feature", "motif_id", "motif_name", "motif_p", "motif_q", "motif_strand",
                       "motif_offset", "motif_overlap", "pwm_width")
_LUT = np.full(256, 4, dtype=np.uint8)
for _i, _b in enumerate("ACGT"):
    _LUT[ord(_b)] = _i
    _LUT[ord(_b.lower())] = _i


class MotifLike(Protocol):
    """A motif as in :class:`genosae.genome.motifs.Motif`: ``pwm`` is ``[L, 4]`` over ACGT."""

    id: str
    name: str
    pwm: np.ndarray


def encode_sequences(seqs: Sequence[str]) -> list[np.ndarray]:
    """ACGT → 0..3, anything else → 4 (uint8 arrays)."""
    return [_LUT[np.frombuffer(s.encode("ascii"), dtype=np.uint8)] for s in seqs]


def top_sites(
    acts: FeatureActs,
    features: Sequence[int] | None = None,
    *,
    n_top: int = 20,
    one_per_window: bool = True,
) -> pd.DataFrame:
    """The ``n_top`` highest activations of each feature (at most one per window by default).

    Returns
    -------
    DataFrame ``feature (int), rank, row, activation`` plus the token columns of that row.
    """
    csc = acts.codes.tocsc()
    feats = range(acts.n_features) if features is None else features
    widx = acts.tokens["window_index"].to_numpy()
    parts = []
    for f in feats:  # per feature, not per token
        lo, hi = csc.indptr[f], csc.indptr[f + 1]
        if hi == lo:
            continue
        vals, rows = csc.data[lo:hi], csc.indices[lo:hi]
        order = np.argsort(-vals, kind="stable")
        rows, vals = rows[order], vals[order]
        if one_per_window:
            _, first = np.unique(widx[rows], return_index=True)
            first.sort()
            rows, vals = rows[first], vals[first]
        rows, vals = rows[:n_top], vals[:n_top]
        parts.append(pd.DataFrame({"feature": f, "rank": np.arange(len(rows)), "row": rows, "activation": vals}))
    if not parts:
        return pd.DataFrame(columns=["feature", "rank", "row", "activation", *acts.tokens.columns])
    sites = pd.concat(parts, ignore_index=True)
    tok = acts.tokens.iloc[sites["row"].to_numpy()].reset_index(drop=True)
    return pd.concat([sites, tok], axis=1)


def site_sequences(
    sites: pd.DataFrame,
    windows: pd.DataFrame,
    window_sequences: Callable[[pd.DataFrame], Sequence[str]] | Sequence[str],
    *,
    flank: int = 10,
) -> np.ndarray:
    """Sequence ``[site - flank, site + flank]`` in window orientation, one row per site.

    Parameters
    ----------
    sites
        Rows with ``window_index`` and ``bp_start``/``bp_end`` (e.g. from :func:`top_sites`).
    windows
        The store's windows table (``start``, ``end``, ``strand``).
    window_sequences
        The sequence of every window (indexable by ``window_index``), or a callable returning them
        for a windows table (e.g. ``genosae.genome.windows.window_sequences`` bound to a reference).

    Returns
    -------
    uint8 ``[n_sites, 2 * flank + 1]`` codes (0..3 = ACGT, 4 = N or outside the window).
    """
    widx = sites["window_index"].to_numpy(np.int64)
    used = np.unique(widx)
    if callable(window_sequences):
        seqs = dict(zip(used, window_sequences(windows.iloc[used]), strict=True))
    else:
        seqs = {int(i): window_sequences[int(i)] for i in used}
    start = windows["start"].to_numpy(np.int64)[widx]
    end = windows["end"].to_numpy(np.int64)[widx]
    minus = windows["strand"].to_numpy()[widx] == "-" if "strand" in windows else np.zeros(len(widx), bool)
    bp_s, bp_e = sites["bp_start"].to_numpy(np.int64), sites["bp_end"].to_numpy(np.int64)
    offset = np.where(minus, end - bp_e, bp_s - start)
    width = 2 * flank + 1
    out = np.full((len(sites), width), 4, dtype=np.uint8)
    enc = dict(zip(seqs, encode_sequences([seqs[i] for i in seqs]), strict=True))
    for j, (w, o) in enumerate(zip(widx, offset, strict=True)):  # per site (n_top × features)
        s = enc[w]
        lo, hi = o - flank, o + flank + 1
        a, b = max(lo, 0), min(hi, len(s))
        if b > a:
            out[j, a - lo:b - lo] = s[a:b]
    return out


def pwm_from_sequences(codes_NL: np.ndarray, *, pseudocount: float = 0.5) -> np.ndarray:
    """Position probability matrix ``[L, 4]`` from encoded sequences (N positions are not counted)."""
    codes_NL = np.asarray(codes_NL, dtype=np.int64)
    n, length = codes_NL.shape
    counts = np.zeros((length, 5))
    np.add.at(counts, (np.broadcast_to(np.arange(length), (n, length)).ravel(), codes_NL.ravel()), 1)
    counts = counts[:, :4] + pseudocount
    return counts / counts.sum(1, keepdims=True)


def information_content(pwm_L4: np.ndarray) -> np.ndarray:
    """Bits per column against a uniform background."""
    p = np.clip(pwm_L4, 1e-12, 1)
    return 2 + (p * np.log2(p)).sum(1)


def trim_pwm(pwm_L4: np.ndarray, *, min_ic: float = 0.3, min_width: int = 4) -> tuple[np.ndarray, int]:
    """Drop low-information columns from both ends; returns the core and its first column's index."""
    ic = information_content(pwm_L4)
    good = np.flatnonzero(ic >= min_ic)
    length = len(pwm_L4)
    if good.size == 0:
        lo = max((length - min_width) // 2, 0)
        return pwm_L4[lo:lo + min_width], lo
    lo, hi = good[0], good[-1] + 1
    while hi - lo < min(min_width, length):
        lo, hi = (lo - 1, hi) if lo > 0 and (hi >= length or ic[lo - 1] >= ic[hi]) else (lo, hi + 1)
    return pwm_L4[lo:hi], int(lo)


def feature_pwms(
    acts: FeatureActs,
    windows: pd.DataFrame,
    window_sequences: Callable[[pd.DataFrame], Sequence[str]] | Sequence[str],
    features: Sequence[int] | None = None,
    *,
    n_top: int = 20,
    flank: int = 10,
    pseudocount: float = 0.5,
) -> tuple[dict[int, np.ndarray], pd.DataFrame]:
    """Aligned top-activation sites of each feature → untrimmed PWM ``[2 * flank + 1, 4]``.

    Returns
    -------
    pwms, sites
        ``{feature index: pwm}`` and the sites table from :func:`top_sites`.
    """
    sites = top_sites(acts, features, n_top=n_top)
    if sites.empty:
        return {}, sites
    seq = site_sequences(sites, windows, window_sequences, flank=flank)
    f = sites["feature"].to_numpy()
    pwms = {int(k): pwm_from_sequences(seq[f == k], pseudocount=pseudocount) for k in np.unique(f)}
    return pwms, sites


def match_motifs(
    pwms: Mapping[str, np.ndarray] | Mapping[int, np.ndarray],
    motifs: Sequence[MotifLike],
    *,
    trim: bool = True,
    n_jobs: int = 1,
) -> pd.DataFrame:
    """Best JASPAR (or any) motif for each feature PWM with memelite's TOMTOM.

    Parameters
    ----------
    pwms
        ``{feature: [L, 4] probabilities}``.
    motifs
        Targets with ``id``, ``name``, ``pwm [L, 4]``.
    trim
        Trim low-information flanks of each query first (:func:`trim_pwm`).

    Returns
    -------
    DataFrame with :data:`MOTIF_MATCH_COLUMNS`, one row per feature: the target with the lowest
    p-value, its BH q (over all feature × target comparisons), strand (``+`` or ``-`` = the query
    matches the target's reverse complement), offset and overlap.
    """
    from memelite import tomtom

    keys = list(pwms)
    if not keys or not motifs:
        return pd.DataFrame(columns=list(MOTIF_MATCH_COLUMNS))
    queries = [trim_pwm(np.asarray(pwms[k]))[0] if trim else np.asarray(pwms[k]) for k in keys]
    Qs = [np.ascontiguousarray(q.T, dtype=np.float64) for q in queries]
    Ts = [np.ascontiguousarray(np.asarray(m.pwm, dtype=np.float64).T) for m in motifs]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*target motifs.*")
        p, _scores, offsets, overlaps, strands = tomtom(Qs, Ts, n_jobs=n_jobs)
    p = np.nan_to_num(np.asarray(p, dtype=np.float64), nan=1.0)
    q = benjamini_hochberg(p.ravel()).reshape(p.shape)
    best = np.argmin(p, axis=1)
    rows = np.arange(len(keys))
    return pd.DataFrame({
        "feature": keys,
        "motif_id": [motifs[j].id for j in best],
        "motif_name": [motifs[j].name for j in best],
        "motif_p": p[rows, best],
        "motif_q": q[rows, best],
        "motif_strand": np.where(np.asarray(strands)[rows, best] == 1, "-", "+"),
        "motif_offset": np.asarray(offsets)[rows, best].astype(int),
        "motif_overlap": np.asarray(overlaps)[rows, best].astype(int),
        "pwm_width": [len(qq) for qq in queries],
    })


def logo_png(pwm_L4: np.ndarray, path: str | os.PathLike[str], *, title: str | None = None) -> Path:
    """Information-content sequence logo of ``pwm_L4`` written as PNG (atomically) with logomaker."""
    import logomaker
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pwm_L4 = np.asarray(pwm_L4, dtype=np.float64)
    info = pwm_L4 * information_content(pwm_L4)[:, None]
    df = pd.DataFrame(info, columns=list("ACGT"))
    fig, ax = plt.subplots(figsize=(max(2.5, 0.35 * len(df)), 1.8))
    try:
        logomaker.Logo(df, ax=ax, color_scheme="classic")
        ax.set_ylim(0, 2)
        ax.set_ylabel("bits")
        ax.set_xticks([])
        if title:
            ax.set_title(title, fontsize=9)
        fig.subplots_adjust(left=0.6 / fig.get_figwidth(), right=0.99, bottom=0.06, top=0.84)
        path = Path(path)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=80)
    finally:
        plt.close(fig)
    return path


def codon_preference(
    codes: sp.spmatrix,
    membership: sp.spmatrix,
    concept_names: Sequence[str],
    *,
    feature_names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Codon-frame and strand preference of each feature's firing tokens inside CDS.

    Uses the ``codon_pos{1,2,3}({+,-})`` concepts. A feature fires where its activation is > 0.

    Returns
    -------
    DataFrame indexed by feature: ``cds_fires`` (firing tokens on a codon position), ``cds_fraction``
    (of all firing tokens), ``frame_pref`` (1, 2 or 3), ``frame_share`` (its share; 1/3 = none),
    ``cds_strand_pref`` (``+``/``-``) and ``cds_strand_share``. Empty when the concepts are absent.
    """
    names = list(concept_names)
    want = [f"codon_pos{k}({s})" for s in "+-" for k in (1, 2, 3)]
    if not all(w in names for w in want):
        return pd.DataFrame()
    cols = [names.index(w) for w in want]
    fire = sp.csr_matrix(codes, dtype=np.float32)
    fire = sp.csr_matrix((fire.data > 0, fire.indices, fire.indptr), shape=fire.shape).astype(np.int32)
    M = sp.csr_matrix(membership, dtype=bool)[:, cols].astype(np.int32)
    counts = (fire.T @ M).toarray().astype(np.float64)  # [F, 6]: (+1,+2,+3,-1,-2,-3)
    n_fire = np.asarray(fire.sum(0)).ravel().astype(np.float64)
    frame = counts[:, :3] + counts[:, 3:]
    strand = np.stack([counts[:, :3].sum(1), counts[:, 3:].sum(1)], axis=1)
    total = strand.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        df = pd.DataFrame({
            "cds_fires": total.astype(np.int64),
            "cds_fraction": np.where(n_fire > 0, total / np.maximum(n_fire, 1), np.nan),
            "frame_pref": frame.argmax(1) + 1,
            "frame_share": np.where(total > 0, frame.max(1) / np.maximum(total, 1), np.nan),
            "cds_strand_pref": np.where(strand[:, 0] >= strand[:, 1], "+", "-"),
            "cds_strand_share": np.where(total > 0, strand.max(1) / np.maximum(total, 1), np.nan),
        }, index=pd.Index(list(feature_names) if feature_names is not None
                          else [f"f{i}" for i in range(codes.shape[1])], name="feature"))
    return df


def _logo_job(job: tuple[np.ndarray, str, str]) -> str:
    pwm, path, title = job
    return str(logo_png(pwm, path, title=title))


def logo_pngs(pwms: Mapping[str, np.ndarray], out_dir: str | os.PathLike[str], *, n_jobs: int = 1,
              progress: bool = True) -> dict[str, Path]:
    """:func:`logo_png` for each ``{name: pwm}`` into ``out_dir/<name>.png``, on ``n_jobs`` processes.

    logomaker builds every glyph as a path (~0.15 s a logo), so logos are drawn in parallel.
    """
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool
    from multiprocessing import get_context

    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    jobs = [(np.asarray(pwm), str(out_dir / f"{name}.png"), name) for name, pwm in pwms.items()]
    bar = tqdm(total=len(jobs), desc="logos", unit="logo", disable=not progress)
    paths: list[str] = []
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    # spawn re-imports the caller's main module: impossible when it came from stdin
    can_spawn = main_file is None or Path(main_file).is_file()
    if n_jobs > 1 and len(jobs) > 1 and can_spawn:
        try:  # spawn: workers import only what drawing needs, never a copy of the parent's torch threads
            with ProcessPoolExecutor(max_workers=n_jobs, mp_context=get_context("spawn")) as pool:
                for path in pool.map(_logo_job, jobs, chunksize=max(1, len(jobs) // (4 * n_jobs))):
                    paths.append(path)
                    bar.update(1)
        except BrokenProcessPool as err:
            warnings.warn(f"parallel logo drawing failed ({err}); drawing the rest in this process",
                          RuntimeWarning, stacklevel=2)
    for job in jobs[len(paths):]:
        paths.append(_logo_job(job))
        bar.update(1)
    bar.close()
    return {name: Path(p) for name, p in zip(pwms, paths, strict=True)}
