"""Feature motifs: sites where a feature peaks → aligned PWM → JASPAR name with a null beside it.

Naming (:func:`feature_queries` then :func:`name_features`) is what may put a motif name on a feature:

1. **Sites.** The activation peak of the feature in each window (one site per window), the
   ``n_sites`` strongest; fewer than ``min_sites`` → no query (``motif_status = "too_few_sites"``).
2. **Alignment.** EM-like rounds move each site to its best-scoring offset (± ``max_shift``) and
   strand under the current PWM, from the centred sites and from a few over-represented k-mers
   (:func:`align_sites`, vectorised over sites, offsets and strands).
3. **Information gate.** Information content is the relative entropy against the background base
   composition (yeast is ~62 % AT), not against uniform. The query is the run of columns that
   maximises Σ(IC − ``min_column_ic``); it needs ≥ ``min_columns`` columns of ≥ ``min_column_ic``
   bits and ≥ ``min_total_ic`` bits in all, else no query (``"uninformative"``). No fallback core.
4. **Tomtom** (memelite, both strands, complete score) against the motif database; BH q over every
   query × target comparison.
5. **Naming rule.** Named (``"named"``, else ``"no_match"``) only when ``q ≤ q_max``, the p beats all
   ``n_shuffles`` column-shuffled copies of the query (order, not composition), and the p is below the
   ``null_quantile`` quantile of the p the nulls' pseudo-features would be named with by the same rule
   (random sites, random directions, shuffled queries: :func:`null_queries`). A null's named share ×
   the features tried is the expected number of false names, reported beside the number of names.

``best_motif``/``motif_q`` remain the raw best Tomtom match of the query (transparency only, not a
name). Sequences are read in the window's orientation (what the model saw): for a ``-`` window the
site is the reverse complement of the reference.
"""

from __future__ import annotations

import itertools
import os
import sys
import typing
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp

from genosae._io import atomic_path
from genosae.errors import InputError
from genosae.features.activations import FeatureSource
from genosae.genome.reference import N_CODE, complement_codes, encode_bases
from genosae.multitest import benjamini_hochberg

__all__ = [
    "CODON_CONCEPTS",
    "CONFIG_KEYS",
    "MOTIF_MATCH_COLUMNS",
    "MOTIF_STATUSES",
    "NAMING_COLUMNS",
    "NamingParams",
    "NullQueries",
    "align_sites",
    "background_composition",
    "codon_counts",
    "codon_preference",
    "encode_sequences",
    "feature_pwms",
    "feature_queries",
    "logo_png",
    "match_motifs",
    "motif_core",
    "name_features",
    "naming_params",
    "null_queries",
    "pwm_from_sequences",
    "queries_from_sites",
    "random_sites",
    "relative_entropy",
    "shuffled_columns",
    "site_sequences",
    "stream_peak_sites",
    "top_sites",
    "trim_pwm",
]

MOTIF_MATCH_COLUMNS = ("feature", "motif_id", "motif_name", "motif_p", "motif_q", "motif_strand",
                       "motif_offset", "motif_overlap", "pwm_width")


class MotifLike(Protocol):
    """A motif as in :class:`genosae.genome.motifs.Motif`: ``pwm`` is ``[L, 4]`` over ACGT."""

    id: str
    name: str
    pwm: np.ndarray


def encode_sequences(seqs: Sequence[str]) -> list[np.ndarray]:
    """ACGT → 0..3, anything else → 4 (uint8 arrays; :func:`~genosae.genome.reference.encode_bases`
    with ``N`` and other bytes merged)."""
    return [np.minimum(encode_bases(s), N_CODE) for s in seqs]


def top_sites(
    acts: FeatureSource,
    features: Sequence[int] | None = None,
    *,
    n_top: int = 20,
    one_per_window: bool = True,
    batch_size: int = 65_536,
) -> pd.DataFrame:
    """The ``n_top`` highest activations of each feature (at most one per window by default).

    Streams the source in whole-window batches and keeps ≤ ``n_top`` candidates per feature, so
    memory does not grow with the number of tokens. Ties go to the lower row.

    Returns
    -------
    DataFrame ``feature (int), rank, row, activation`` plus the token columns of that row, grouped
    by feature (ascending), strongest first.
    """
    want = None if features is None else np.asarray(list(features), dtype=np.int64)
    best: pd.DataFrame | None = None
    token_cols: list[str] = []
    for batch in acts.iter_batches(batch_size):
        coo = batch.codes.tocoo()
        f, r, v = coo.col.astype(np.int64), coo.row.astype(np.int64), coo.data
        if want is not None:
            keep = np.isin(f, want)
            f, r, v = f[keep], r[keep], v[keep]
        if f.size == 0:
            continue
        row = batch.rows[r]
        o = np.lexsort((row, -v, f))
        f, r, v, row = f[o], r[o], v[o], row[o]
        if one_per_window:  # the first (= strongest) entry of each feature × window
            w = batch.tokens["window_index"].to_numpy(np.int64)[r]
            _, first = np.unique(f * (int(w.max()) + 1) + w, return_index=True)
            first.sort()
            f, r, v, row = f[first], r[first], v[first], row[first]
        rank = np.arange(f.size) - np.searchsorted(f, f)
        keep = rank < n_top
        token_cols = list(batch.tokens.columns)
        cand = pd.concat([pd.DataFrame({"feature": f[keep], "row": row[keep], "activation": v[keep]}),
                          batch.tokens.iloc[r[keep]].reset_index(drop=True)], axis=1)
        best = cand if best is None else _keep_top(pd.concat([best, cand], ignore_index=True), n_top)
    if best is None:
        return pd.DataFrame(columns=["feature", "rank", "row", "activation", *token_cols])
    best = _keep_top(best, n_top)
    f = best["feature"].to_numpy()
    best.insert(1, "rank", np.arange(len(best)) - np.searchsorted(f, f))
    if want is not None:  # the requested order of features
        order = {int(x): i for i, x in enumerate(want)}
        best = best.iloc[np.argsort(best["feature"].map(order).to_numpy(), kind="stable")].reset_index(drop=True)
    return best


def _keep_top(cand: pd.DataFrame, n_top: int) -> pd.DataFrame:
    """Candidates sorted by feature, activation (descending), row; the first ``n_top`` of each feature."""
    f, v, row = cand["feature"].to_numpy(), cand["activation"].to_numpy(), cand["row"].to_numpy()
    o = np.lexsort((row, -v, f))
    f = f[o]
    rank = np.arange(f.size) - np.searchsorted(f, f)
    return cand.iloc[o[rank < n_top]].reset_index(drop=True)


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
    acts: FeatureSource,
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


#: Columns of :func:`name_features` (one row per feature).
NAMING_COLUMNS = ("feature", "motif_n_sites", "motif_query_width", "motif_query_columns", "motif_query_ic",
                  "best_motif_id", "best_motif", "motif_p", "motif_q", "motif_strand", "motif_shuffle_p",
                  "motif_null_p", "motif_id", "motif_name", "motif_status")
#: ``motif_status`` values, in the order the naming steps can stop.
MotifStatus = Literal["too_few_sites", "uninformative", "no_match", "named"]
MOTIF_STATUSES: tuple[str, ...] = typing.get_args(MotifStatus)


@dataclass(frozen=True)
class NamingParams:
    """Parameters of :func:`name_features` (the ``features.motif_*`` config keys).

    Attributes
    ----------
    n_sites, min_sites
        At most ``n_sites`` peak sites per feature (one per window, strongest first); fewer than
        ``min_sites`` → no query.
    flank, max_shift, rounds, n_seeds
        Query width ``2 * flank + 1``; each site may move ± ``max_shift`` bp (and flip strand) in
        ``rounds`` alignment rounds, from the centred sites and ``n_seeds`` k-mer starts.
    pseudocount
        Per-column pseudocount (spread over the bases in background proportion).
    min_column_ic, min_columns, min_total_ic
        The information gate (bits of relative entropy against the background).
    n_shuffles
        Column-shuffled copies of each query; a name needs a p below all of theirs.
    q_max, null_quantile
        A name needs Tomtom BH ``q ≤ q_max`` and p below the ``null_quantile`` quantile of the null's
        best p.
    max_share
        A motif naming more than this share of the features is flagged.
    """

    n_sites: int = 200
    min_sites: int = 50
    flank: int = 10
    max_shift: int = 10
    rounds: int = 5
    n_seeds: int = 3
    pseudocount: float = 0.5
    min_column_ic: float = 0.5
    min_columns: int = 4
    min_total_ic: float = 5.0
    n_shuffles: int = 20
    q_max: float = 0.01
    null_quantile: float = 0.001
    max_share: float = 0.05

    def __post_init__(self) -> None:
        checks = {"n_sites": self.n_sites >= self.min_sites >= 2, "flank": self.flank >= 1,
                  "max_shift": self.max_shift >= 0, "rounds": self.rounds >= 0, "n_seeds": self.n_seeds >= 0,
                  "pseudocount": self.pseudocount > 0, "min_columns": self.min_columns >= 1,
                  "n_shuffles": self.n_shuffles >= 0, "q_max": 0 < self.q_max <= 1,
                  "null_quantile": 0 < self.null_quantile < 1, "max_share": 0 < self.max_share <= 1}
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise InputError(f"invalid motif naming parameter(s) {bad} in {self}; need n_sites ≥ "
                             "min_sites ≥ 2, flank ≥ 1, max_shift ≥ 0, rounds ≥ 0, pseudocount > 0, "
                             "min_columns ≥ 1, n_shuffles ≥ 0, 0 < q_max ≤ 1, 0 < null_quantile < 1, 0 < max_share ≤ 1",
                             record="features.motif_*")


#: ``features.<key>`` config key → :class:`NamingParams` field.
CONFIG_KEYS = {"motif_sites": "n_sites", "motif_min_sites": "min_sites", "motif_q": "q_max",
               "motif_null_quantile": "null_quantile", "motif_shuffles": "n_shuffles",
               "motif_min_column_ic": "min_column_ic", "motif_min_columns": "min_columns",
               "motif_min_total_ic": "min_total_ic", "motif_max_share": "max_share"}


def naming_params(features_config: Mapping[str, Any]) -> NamingParams:
    """:class:`NamingParams` from the ``features`` config section (absent keys keep their defaults)."""
    return NamingParams(**{field: features_config[key] for key, field in CONFIG_KEYS.items()
                           if key in features_config})


def background_composition(sequences: Sequence[str] | Sequence[np.ndarray]) -> np.ndarray:
    """Strand-symmetric A, C, G, T frequencies of ``sequences`` (N ignored): the IC background."""
    enc = [np.asarray(s) for s in sequences] if len(sequences) and not isinstance(sequences[0], str) \
        else encode_sequences(list(sequences))
    allc = np.concatenate(enc) if enc else np.zeros(0, np.uint8)
    counts = np.bincount(allc, minlength=5)[:4].astype(np.float64)
    counts = counts + counts[::-1]  # A↔T, C↔G: motifs are matched on both strands
    if counts.sum() == 0:
        raise InputError("no A/C/G/T bases to estimate the background composition from; check that "
                         "the window sequences are not empty or all N", record="sequences")
    return counts / counts.sum()


def relative_entropy(pwm_L4: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Information content per column in bits against ``background``: ``Σ p log2(p / bg)``."""
    p = np.clip(np.asarray(pwm_L4, dtype=np.float64), 1e-12, 1)
    return (p * np.log2(p / np.asarray(background, dtype=np.float64)[None, :])).sum(1)


def _seed_kmers(codes: np.ndarray, background: np.ndarray, k: int, n_seeds: int) -> np.ndarray:
    """The ``n_seeds`` canonical k-mers (both strands) present in more sites than the background predicts.

    Ranked by the binomial z of the number of sites containing the k-mer (zero or one per site).
    Returns ``[≤ n_seeds, k]`` uint8 codes.
    """
    n, length = codes.shape
    if n_seeds < 1 or length < k:
        return np.zeros((0, k), np.uint8)
    win = codes[:, np.arange(length - k + 1)[:, None] + np.arange(k)[None, :]].astype(np.int64)  # [N, P, k]
    ok = (win < 4).all(2)
    pw = 4 ** np.arange(k - 1, -1, -1)
    fwd = (np.where(win < 4, win, 0) * pw).sum(2)
    rev = ((3 - np.where(win < 4, win, 0))[:, :, ::-1] * pw).sum(2)
    canon = np.minimum(fwd, rev)
    pairs = np.unique(np.nonzero(ok)[0] * 4**k + canon[ok])  # each (site, k-mer) once
    kmer = (pairs % 4**k).astype(np.int64)
    count = np.bincount(kmer, minlength=4**k).astype(np.float64)
    digits = (np.arange(4**k)[:, None] // pw[None, :]) % 4  # [4^k, k]
    p_one = np.prod(np.asarray(background)[digits], axis=1)
    p_site = 1 - (1 - np.minimum(2 * p_one, 1)) ** (length - k + 1)  # either strand, anywhere in the site
    z = (count - n * p_site) / np.sqrt(np.maximum(n * p_site * (1 - p_site), 1e-12))
    top = np.argsort(-z, kind="stable")[:n_seeds]
    top = top[count[top] >= 2]
    return digits[top].astype(np.uint8)


def align_sites(
    codes_NL: np.ndarray,
    background: np.ndarray,
    *,
    width: int,
    rounds: int = 5,
    pseudocount: float = 0.5,
    n_seeds: int = 3,
    seed_k: int = 6,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Align sites to each other (both strands): EM-like rounds from a few starts, the best kept.

    Starts: the peak-centred sites, and each of the ``n_seeds`` most over-represented canonical
    ``seed_k``-mers placed at the centre (:func:`_seed_kmers`). Each round scores every site at every
    offset and on both strands with the log-odds of the current PWM against ``background``, moves
    each site to its best placement (ties keep the current one) and rebuilds the PWM; it stops when
    no site moves. The start whose PWM has the most information (Σ relative entropy) wins.
    Vectorised over sites × offsets × strands; the null pseudo-features go through the same search.

    Parameters
    ----------
    codes_NL
        uint8 ``[n_sites, L]`` site sequences centred on the peak (0..3 = ACGT, 4 = N), ``L ≥ width``;
        ``(L - width) // 2`` is the largest shift.

    Returns
    -------
    pwm, shift, strand
        ``[width, 4]`` probabilities, each site's shift from the centre and its strand (``0`` = as
        read, ``1`` = reverse complement).
    """
    codes = np.asarray(codes_NL, dtype=np.uint8)
    n, length = codes.shape
    n_off = length - width + 1
    if n_off < 1 or n == 0:
        msg = f"need ≥ 1 site of length ≥ width {width}, got {codes.shape}"
        raise ValueError(msg)
    bg = np.asarray(background, dtype=np.float64)
    idx = np.arange(n_off)[:, None] + np.arange(width)[None, :]
    fwd = np.minimum(codes, 4)[:, idx]  # [N, O, W]
    rev = complement_codes(fwd)[:, :, ::-1]
    X = np.stack([fwd, rev], axis=1).astype(np.int32)  # [N, S, O, W]; S = 1 reads the reverse complement
    rows = np.arange(n)
    cols = np.arange(width)
    flat = (cols * 5).astype(np.int32) + X  # index into a [W, 5] score table
    centre = (n_off - 1) // 2

    def build(strand: np.ndarray, offset: np.ndarray) -> np.ndarray:
        counts = np.bincount(flat[rows, strand, offset].ravel(), minlength=5 * width).reshape(width, 5)
        counts = counts[:, :4] + pseudocount * 4 * bg[None, :]
        return counts / counts.sum(1, keepdims=True)

    def place(pwm: np.ndarray, cur: np.ndarray | None) -> np.ndarray:
        lo = np.zeros((width, 5), np.float32)  # N scores 0
        lo[:, :4] = np.log(pwm / bg[None, :])
        score = np.take(lo.ravel(), flat).sum(-1).reshape(n, -1)  # [N, S * O]
        best = np.argmax(score, axis=1)
        if cur is not None:  # ties keep the current placement, so a flat PWM does not drift
            best = np.where(score[rows, best] <= score[rows, cur] + 1e-6, cur, best)
        return best

    starts: list[np.ndarray | None] = [None]
    k = min(seed_k, width)
    for kmer in _seed_kmers(codes, bg, k, n_seeds):
        init = np.tile(bg, (width, 1))
        c0 = (width - k) // 2
        init[c0 + np.arange(k)] = 0.5 * bg[None, :] + 0.5 * np.eye(4)[kmer]
        starts.append(init)
    best_info, best_fit = -np.inf, (np.zeros((width, 4)), np.zeros(n, np.int64), np.zeros(n, np.int64))
    for init in starts:
        cur = np.full(n, centre, dtype=np.int64) if init is None else place(init, None)
        for _ in range(rounds):
            new = place(build(*np.divmod(cur, n_off)), cur)
            if np.array_equal(new, cur):
                break
            cur = new
        strand, offset = np.divmod(cur, n_off)
        pwm = build(strand, offset)
        info = float(relative_entropy(pwm, bg).sum())
        if info > best_info + 1e-9:
            best_info, best_fit = info, (pwm, offset - centre, strand)
    return best_fit


def motif_core(
    pwm_L4: np.ndarray,
    background: np.ndarray,
    *,
    min_column_ic: float = 0.5,
    min_columns: int = 4,
    min_total_ic: float = 5.0,
) -> tuple[np.ndarray | None, int, int, float]:
    """The informative core of a PWM, or ``None`` when it fails the information gate.

    The core is the run of columns maximising ``Σ (IC - min_column_ic)`` (IC = relative entropy
    against ``background``): interior low-information columns stay only when informative columns
    flank them. It passes with ≥ ``min_columns`` columns of ≥ ``min_column_ic`` bits and
    ≥ ``min_total_ic`` bits in all. There is no fallback core.

    Returns
    -------
    core, start, n_informative, total_ic
        ``core`` is ``pwm_L4[start:start + width]`` or ``None``.
    """
    ic = relative_entropy(pwm_L4, background)
    cs = np.concatenate([[0.0], np.cumsum(ic - min_column_ic)])
    gain = cs[None, :] - cs[:, None]  # [i, j] = gain of columns i..j-1
    gain[np.tril_indices_from(gain)] = -np.inf
    i, j = np.unravel_index(np.argmax(gain), gain.shape)
    n_inf = int((ic[i:j] >= min_column_ic).sum())
    total = float(ic[i:j].sum())
    core = pwm_L4[i:j] if n_inf >= min_columns and total >= min_total_ic else None
    return core, int(i), n_inf, total


def queries_from_sites(
    sites: pd.DataFrame,
    feature_names: Sequence[str],
    windows: pd.DataFrame,
    window_sequences: Callable[[pd.DataFrame], Sequence[str]] | Sequence[str],
    background: np.ndarray,
    params: NamingParams | None = None,
) -> tuple[dict[str, np.ndarray], pd.DataFrame, dict[str, np.ndarray]]:
    """Steps 2–3 of naming: each feature's peak sites → aligned PWM → gated query.

    Parameters
    ----------
    sites
        One row per site, grouped by ``feature`` (index into ``feature_names``), strongest first,
        with ``window_index``, ``bp_start``, ``bp_end`` (:func:`top_sites` or :func:`stream_peak_sites`).

    Returns
    -------
    queries, stats, pwms
        ``{feature name: core [w, 4]}`` for features passing the gate; a table indexed by feature
        name with ``motif_n_sites, motif_query_width, motif_query_columns, motif_query_ic,
        motif_status`` (``too_few_sites``, ``uninformative`` or ``None`` = has a query); and
        ``{feature name: aligned PWM [2 * flank + 1, 4]}`` for every feature with ≥ ``min_sites``
        sites (for logos).
    """
    p = params or NamingParams()
    names = list(feature_names)
    stats = pd.DataFrame({"motif_n_sites": 0, "motif_query_width": 0, "motif_query_columns": 0,
                          "motif_query_ic": 0.0}, index=pd.Index(names, name="feature"))
    stats["motif_status"] = pd.Series("too_few_sites", index=stats.index, dtype=object)
    queries: dict[str, np.ndarray] = {}
    pwms: dict[str, np.ndarray] = {}
    if sites.empty:
        return queries, stats, pwms
    f_all = sites["feature"].to_numpy(np.int64)
    n_per = np.bincount(f_all, minlength=len(names))
    stats["motif_n_sites"] = n_per
    sites = sites[n_per[f_all] >= p.min_sites]
    if sites.empty:
        return queries, stats, pwms
    codes = site_sequences(sites, windows, window_sequences, flank=p.flank + p.max_shift)
    f_of = sites["feature"].to_numpy(np.int64)
    bounds = np.flatnonzero(np.r_[True, f_of[1:] != f_of[:-1], True])  # sites come grouped by feature
    rows = []
    for lo, hi in itertools.pairwise(bounds):  # per feature; vectorised over its sites inside
        name = names[int(f_of[lo])]
        pwm, _, _ = align_sites(codes[lo:hi], background, width=2 * p.flank + 1, rounds=p.rounds,
                                pseudocount=p.pseudocount, n_seeds=p.n_seeds)
        pwms[name] = pwm
        core, _start, n_inf, total = motif_core(pwm, background, min_column_ic=p.min_column_ic,
                                                min_columns=p.min_columns, min_total_ic=p.min_total_ic)
        rows.append((name, 0 if core is None else len(core), n_inf, round(total, 3),
                     "uninformative" if core is None else None))
        if core is not None:
            queries[name] = core
    got = pd.DataFrame(rows, columns=["feature", "motif_query_width", "motif_query_columns", "motif_query_ic",
                                      "motif_status"]).set_index("feature")
    stats.loc[got.index, got.columns] = got.to_numpy()
    return queries, stats.astype({"motif_query_width": np.int64, "motif_query_columns": np.int64,
                                  "motif_query_ic": np.float64}), pwms


def feature_queries(
    acts: FeatureSource,
    windows: pd.DataFrame,
    window_sequences: Callable[[pd.DataFrame], Sequence[str]] | Sequence[str],
    background: np.ndarray,
    params: NamingParams | None = None,
) -> tuple[dict[str, np.ndarray], pd.DataFrame, dict[str, np.ndarray]]:
    """Steps 1–3 of naming for every feature of ``acts``: :func:`top_sites` (one peak per window,
    the ``n_sites`` strongest) then :func:`queries_from_sites`."""
    p = params or NamingParams()
    sites = top_sites(acts, n_top=p.n_sites)
    return queries_from_sites(sites, acts.feature_names, windows, window_sequences, background, p)


def stream_peak_sites(store: Any, units: Callable[[np.ndarray], np.ndarray], n_units: int, *, n_sites: int,
                      batch_size: int = 4096, max_tokens: int | None = None) -> pd.DataFrame:
    """:func:`top_sites` for units computed on the fly (e.g. random directions), streamed over a store.

    Keeps each unit's running top ``n_sites`` window peaks (value and token) — ``n_sites × n_units``,
    whatever the number of windows — never the token-level codes.

    Returns
    -------
    DataFrame ``feature, rank, activation, window_index, bp_start, bp_end`` grouped by feature,
    strongest first, at most ``n_sites`` per unit, positive activations only.
    """
    from genosae.features.activations import iter_token_batches

    k = min(n_sites, len(store.windows))
    best = np.zeros((0, n_units), np.float32)  # the running top k per unit, strongest first
    win = np.zeros((0, n_units), np.int64)
    start = np.zeros((0, n_units), np.int64)
    end = np.zeros((0, n_units), np.int64)
    for acts_BD, tokens in iter_token_batches(store, batch_size=batch_size, max_tokens=max_tokens):
        codes = np.asarray(units(acts_BD), dtype=np.float32)
        w = tokens["window_index"].to_numpy(np.int64)
        cuts = np.flatnonzero(np.r_[True, w[1:] != w[:-1]])  # batches hold whole windows, sorted
        seg = np.cumsum(np.r_[False, w[1:] != w[:-1]])
        mx = np.maximum.reduceat(codes, cuts, axis=0)
        pos = np.where(codes >= mx[seg], np.arange(len(w))[:, None], len(w))
        arg = np.minimum.reduceat(pos, cuts, axis=0)  # first token at the window's maximum
        bs, be = tokens["bp_start"].to_numpy(np.int64)[arg], tokens["bp_end"].to_numpy(np.int64)[arg]
        best, win = np.concatenate([best, mx]), np.concatenate([win, np.broadcast_to(w[cuts][:, None], mx.shape)])
        start, end = np.concatenate([start, bs]), np.concatenate([end, be])
        top = np.argsort(-best, axis=0, kind="stable")[:k]  # ties: the earlier window
        best, win, start, end = (np.take_along_axis(a, top, 0) for a in (best, win, start, end))
    kk = best.shape[0]
    u = np.broadcast_to(np.arange(n_units), best.shape)
    out = pd.DataFrame({"feature": u.T.ravel(), "rank": np.broadcast_to(np.arange(kk)[:, None], best.shape).T.ravel(),
                        "activation": best.T.ravel(), "window_index": win.T.ravel(),
                        "bp_start": start.T.ravel(), "bp_end": end.T.ravel()})
    return out[out["activation"] > 0].reset_index(drop=True)


def random_sites(acts: FeatureSource, n: int, n_sites: int, *, n_windows: int, seed: int = 0,
                 batch_size: int = 65_536) -> pd.DataFrame:
    """Null pseudo-features: each peaks once in each of ``n_sites`` random windows, at a random token.

    Returns a sites table as :func:`top_sites` (``feature`` = pseudo-feature ``i``, named
    ``null{i}``), grouped by feature, strongest first. Two streamed passes (tokens per window, then
    the chosen tokens' coordinates).
    """
    rng = np.random.default_rng(seed)
    counts = acts.window_counts(n_windows)
    wins = np.flatnonzero(counts > 0)
    k = min(n_sites, len(wins))
    if n < 1 or k == 0:
        msg = f"need n ≥ 1 pseudo-features and tokens in ≥ 1 window, got n={n}, {len(wins)} windows"
        raise ValueError(msg)
    pick = np.argsort(rng.random((n, len(wins))), axis=1)[:, :k]  # k distinct windows per pseudo-feature
    win = wins[pick].ravel()
    offset = (rng.random((n, k)) * counts[wins][pick]).astype(np.int64).ravel()
    vals = (rng.random((n, k)).astype(np.float32) + 1.0).ravel()
    feat = np.repeat(np.arange(n), k)
    parts = []
    for batch in acts.iter_batches(batch_size):  # the offset-th token (source order) of each chosen window
        w = batch.tokens["window_index"].to_numpy(np.int64)
        starts = np.flatnonzero(np.r_[True, w[1:] != w[:-1]])
        ws = w[starts]
        o = np.argsort(ws, kind="stable")
        sel = np.flatnonzero(np.isin(win, ws))
        if sel.size == 0:
            continue
        local = starts[o[np.searchsorted(ws[o], win[sel])]] + offset[sel]
        parts.append(pd.concat([pd.DataFrame({"feature": feat[sel], "row": batch.rows[local],
                                              "activation": vals[sel]}),
                                batch.tokens.iloc[local].reset_index(drop=True)], axis=1))
    sites = pd.concat(parts, ignore_index=True)
    o = np.lexsort((sites["row"].to_numpy(), -sites["activation"].to_numpy(), sites["feature"].to_numpy()))
    sites = sites.iloc[o].reset_index(drop=True)
    f = sites["feature"].to_numpy()
    sites.insert(1, "rank", np.arange(len(sites)) - np.searchsorted(f, f))
    return sites


@dataclass
class NullQueries:
    """One null's queries: ``queries`` of the pseudo-features that passed the gate, out of ``n_pseudo``."""

    queries: dict[str, np.ndarray]
    n_pseudo: int


def null_queries(
    acts: FeatureSource,
    windows: pd.DataFrame,
    window_sequences: Callable[[pd.DataFrame], Sequence[str]] | Sequence[str],
    background: np.ndarray,
    params: NamingParams | None = None,
    *,
    n_pseudo: int = 1000,
    seed: int = 0,
    store: Any | None = None,
    directions: Any | None = None,
    batch_size: int = 4096,
    max_tokens: int | None = None,
) -> dict[str, NullQueries]:
    """The naming procedure's queries on pseudo-features, the null :func:`name_features` runs beside.

    ``random_sites``: ``n_pseudo`` pseudo-features that peak at a random token of ``n_sites`` random
    windows (:func:`random_sites`) — what sites without a shared signal give. With ``store``
    and ``directions`` (a callable with ``feature_names``, e.g.
    :func:`~genosae.features.activations.random_units`), also ``random_directions``: the peaks of
    random directions in activation space — what any direction the model can represent gives.
    """
    p = params or NamingParams()
    fake = random_sites(acts, n_pseudo, p.n_sites, n_windows=len(windows), seed=seed)
    q, _, _ = queries_from_sites(fake, [f"null{i}" for i in range(n_pseudo)], windows, window_sequences,
                                 background, p)
    out = {"random_sites": NullQueries(q, n_pseudo)}
    if store is not None and directions is not None:
        names = list(directions.feature_names)
        sites = stream_peak_sites(store, directions, len(names), n_sites=p.n_sites, batch_size=batch_size,
                                  max_tokens=max_tokens)
        q, _, _ = queries_from_sites(sites, names, windows, window_sequences, background, p)
        out["random_directions"] = NullQueries(q, len(names))
    return out


def shuffled_columns(queries: Mapping[str, np.ndarray], n_shuffles: int, *, seed: int = 0
                     ) -> dict[tuple[str, int], np.ndarray]:
    """``n_shuffles`` column permutations of each query (same columns, order destroyed)."""
    rng = np.random.default_rng(seed)
    out: dict[tuple[str, int], np.ndarray] = {}
    for name, q in queries.items():  # per query; the permutations are drawn at once
        perms = np.argsort(rng.random((n_shuffles, len(q))), axis=1)
        out.update({(name, k): np.asarray(q)[perm] for k, perm in enumerate(perms)})
    return out


def _tomtom_table(queries: Mapping[str, np.ndarray], motifs: Sequence[MotifLike], *, n_shuffles: int,
                  seed: int, n_jobs: int) -> tuple[pd.DataFrame, pd.Series]:
    """Best target of each query (BH q over these queries × targets) and ``motif_shuffle_p``.

    ``motif_shuffle_p`` is the best p of any of the query's ``n_shuffles`` column-shuffled copies
    (1 without shuffles): a match that a shuffle of the same columns equals is composition, not order.
    Also returns every shuffled copy's best p, indexed by the query it came from.
    """
    cols = ["best_motif_id", "best_motif", "motif_p", "motif_q", "motif_strand", "motif_shuffle_p"]
    if not queries or not motifs:
        return pd.DataFrame(columns=cols, index=pd.Index([], name="feature")), pd.Series(dtype=np.float64)
    m = match_motifs(dict(queries), motifs, trim=False, n_jobs=n_jobs)
    m = m.rename(columns={"motif_id": "best_motif_id", "motif_name": "best_motif"}).set_index("feature")
    m["motif_shuffle_p"] = 1.0
    shuffle_p = pd.Series(dtype=np.float64)
    if n_shuffles > 0:
        shuf = shuffled_columns(queries, n_shuffles, seed=seed)
        s = match_motifs(dict(enumerate(shuf.values())), motifs, trim=False, n_jobs=n_jobs)
        shuffle_p = pd.Series(s["motif_p"].to_numpy(np.float64), index=[k[0] for k in shuf])
        m["motif_shuffle_p"] = shuffle_p.groupby(level=0).min().reindex(m.index).to_numpy()
    return m[cols], shuffle_p


def name_features(
    queries: Mapping[str, np.ndarray],
    stats: pd.DataFrame,
    motifs: Sequence[MotifLike],
    nulls: Mapping[str, NullQueries],
    *,
    params: NamingParams | None = None,
    seed: int = 0,
    n_jobs: int = 1,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Steps 4–5 of naming: Tomtom for the features' and the nulls' queries, then the naming rule.

    A feature is *named* by its best target when all hold: it has a query (gate passed); BH
    ``q ≤ q_max``; its p is below the best p of each of ``n_shuffles`` column-shuffled copies of its
    query; and its p is below ``p_null``, the smallest over nulls of the ``null_quantile`` quantile of
    the p a null unit would be named with under the same shuffle rule (1 where it has no query or
    fails its own shuffles). The nulls are ``nulls`` (pseudo-features, scaled to the features tried)
    plus ``column_shuffles``: the shuffled copies of the queries whose match depends on column order
    (scaled to the queries).

    Parameters
    ----------
    queries, stats
        :func:`feature_queries` output for the features.
    motifs
        Tomtom targets (e.g. JASPAR).
    nulls
        ``{null kind: NullQueries}`` from the same procedure applied to pseudo-features
        (:func:`null_queries`).

    Returns
    -------
    names, summary
        DataFrame indexed by feature with :data:`NAMING_COLUMNS` (``motif_null_p`` = ``p_null``;
        ``motif_id``/``motif_name`` set only when ``motif_status == "named"``), and a JSON-able
        summary: ``n_features``, ``n_tried`` (≥ ``min_sites`` sites), ``n_queries``, ``n_named``,
        ``p_null``; per null ``n_pseudo``, ``n_queries``, ``p_threshold``, ``n_named`` (its units
        named by the same rule), ``scaled_to`` and ``expected_false_names`` (named share ×
        ``scaled_to``) with a one-sided 95 % Clopper–Pearson upper bound; overall
        ``expected_false_names`` (the largest over nulls); ``names_per_motif``, ``flagged_motifs``
        (naming more than ``max_share`` of the features) and ``best_motif_counts`` (raw best
        matches, not names).
    """
    from scipy import stats as sstats

    p = params or NamingParams()
    out = stats.copy()
    for c in ("best_motif_id", "best_motif", "motif_strand", "motif_id", "motif_name"):
        out[c] = pd.Series(None, index=out.index, dtype=object)
    real, shuffled = _tomtom_table(queries, motifs, n_shuffles=p.n_shuffles, seed=seed, n_jobs=n_jobs)
    out = out.join(real[["motif_p", "motif_q", "motif_shuffle_p"]].astype(np.float64))
    out.loc[real.index, ["best_motif_id", "best_motif", "motif_strand"]] = \
        real[["best_motif_id", "best_motif", "motif_strand"]].to_numpy()
    pv = out["motif_p"].fillna(1.0).to_numpy(np.float64)
    ordered = pv < out["motif_shuffle_p"].fillna(0.0).to_numpy(np.float64)
    sig = (out["motif_q"].fillna(1.0).to_numpy(np.float64) <= p.q_max) & ordered
    p_bh = float(np.max(pv[sig])) if sig.any() else -1.0  # BH step-up: q ≤ q_max ⇔ p ≤ p_bh
    n_tried = int((out["motif_status"] != "too_few_sites").sum())
    n_queries = len(real)
    # each null: the p a pseudo-feature would be named with (1 = no query or fails its own shuffles),
    # and the units its named share is scaled to (features tried, or queries for the shuffle null)
    null_p: dict[str, tuple[np.ndarray, int]] = {}
    for kind, nq in nulls.items():
        t, _ = _tomtom_table(nq.queries, motifs, n_shuffles=p.n_shuffles, seed=seed + 1, n_jobs=n_jobs)
        tp, ts = t["motif_p"].to_numpy(np.float64), t["motif_shuffle_p"].to_numpy(np.float64)
        eff = np.where(tp < ts, tp, 1.0)
        null_p[kind] = (np.concatenate([eff, np.ones(max(nq.n_pseudo - len(eff), 0))]), n_tried)
    if len(shuffled):  # shuffles of the queries whose match depends on column order (the others are refused)
        keep = shuffled.index.isin(real.index[real["motif_p"] < real["motif_shuffle_p"]])
        if keep.any():
            null_p["column_shuffles"] = (shuffled.to_numpy(np.float64)[keep], n_queries)
    null_stats: dict[str, dict[str, Any]] = {}
    for kind, (pn, _) in null_p.items():
        thr = float(np.quantile(pn, p.null_quantile, method="lower")) if len(pn) else 1.0
        null_stats[kind] = {"n_pseudo": len(pn), "n_queries": int((pn < 1).sum()), "p_threshold": thr}
    p_null = min((v["p_threshold"] for v in null_stats.values()), default=1.0)
    named = sig & (pv < p_null)
    for kind, v in null_stats.items():  # the same rule on the pseudo-features
        pn, scale = null_p[kind]
        k = int(((pn <= p_bh) & (pn < p_null)).sum())
        n = max(v["n_pseudo"], 1)
        hi = float(sstats.beta.ppf(0.95, k + 1, n - k)) if k < n else 1.0
        v.update(n_named=k, scaled_to=scale, expected_false_names=round(k / n * scale, 3),
                 expected_false_names_upper95=round(hi * scale, 3))
    has_q = out["motif_status"].isna().to_numpy()
    out.loc[has_q, "motif_status"] = np.where(named[has_q], "named", "no_match")
    out.loc[named, "motif_id"] = out.loc[named, "best_motif_id"]
    out.loc[named, "motif_name"] = out.loc[named, "best_motif"]
    out["motif_null_p"] = p_null
    counts = out.loc[named, "motif_name"].value_counts()
    n_feat = max(len(out), 1)
    summary = {
        "n_features": len(out), "n_tried": n_tried, "n_queries": int(has_q.sum()), "n_named": int(named.sum()),
        "p_null": p_null, "q_max": p.q_max, "null_quantile": p.null_quantile,
        "expected_false_names": max((v["expected_false_names"] for v in null_stats.values()), default=None),
        "expected_false_names_upper95": max((v["expected_false_names_upper95"] for v in null_stats.values()),
                                            default=None),
        "null": null_stats,
        "names_per_motif": {str(k): int(v) for k, v in counts.items()},
        "max_share": p.max_share,
        "flagged_motifs": [str(k) for k, v in counts.items() if v / n_feat > p.max_share],
        "best_motif_counts": {str(k): int(v) for k, v in out["best_motif"].value_counts().head(20).items()},
        "params": asdict(p),
    }
    return out[[c for c in NAMING_COLUMNS if c != "feature"]], summary


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


#: The concepts :func:`codon_preference` reads, in the column order of :func:`codon_counts`.
CODON_CONCEPTS = tuple(f"codon_pos{k}({s})" for s in "+-" for k in (1, 2, 3))


def codon_counts(codes: sp.spmatrix, codon_membership: sp.spmatrix) -> tuple[np.ndarray, np.ndarray]:
    """Firing tokens (activation > 0) of each feature on each :data:`CODON_CONCEPTS` column, and in all.

    One chunk's counts ``([F, 6], [F])``; chunks add up (the streamed pipeline sums them).
    """
    fire = sp.csr_matrix(codes, dtype=np.float32)
    fire = sp.csr_matrix((fire.data > 0, fire.indices, fire.indptr), shape=fire.shape).astype(np.int32)
    M = sp.csr_matrix(codon_membership, dtype=bool).astype(np.int32)
    return (fire.T @ M).toarray().astype(np.int64), np.asarray(fire.sum(0)).ravel().astype(np.int64)


def codon_preference(
    codes: sp.spmatrix | None,
    membership: sp.spmatrix | None,
    concept_names: Sequence[str],
    *,
    feature_names: Sequence[str] | None = None,
    counts: tuple[np.ndarray, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Codon-frame and strand preference of each feature's firing tokens inside CDS.

    Uses the ``codon_pos{1,2,3}({+,-})`` concepts. A feature fires where its activation is > 0.
    ``counts`` (:func:`codon_counts` summed over chunks) replaces ``codes``/``membership``.

    Returns
    -------
    DataFrame indexed by feature: ``cds_fires`` (firing tokens on a codon position), ``cds_fraction``
    (of all firing tokens), ``frame_pref`` (1, 2 or 3), ``frame_share`` (its share; 1/3 = none),
    ``cds_strand_pref`` (``+``/``-``) and ``cds_strand_share``. Empty when the concepts are absent.
    """
    names = list(concept_names)
    if not all(w in names for w in CODON_CONCEPTS):
        return pd.DataFrame()
    if counts is None:
        cols = [names.index(w) for w in CODON_CONCEPTS]
        counts = codon_counts(codes, sp.csr_matrix(membership, dtype=bool)[:, cols])
    per, n_fire = (np.asarray(c, dtype=np.float64) for c in counts)  # per: (+1,+2,+3,-1,-2,-3)
    frame = per[:, :3] + per[:, 3:]
    strand = np.stack([per[:, :3].sum(1), per[:, 3:].sum(1)], axis=1)
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
                          else [f"f{i}" for i in range(per.shape[0])], name="feature"))
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
