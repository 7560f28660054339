"""Genomic concepts: annotation classes and sequence patterns as intervals, and position labelling.

``build_concepts`` returns the concepts table of docs/architecture.md (``chrom, start, end, strand,
concept, name``; one row per instance). Everything is computed with numpy over whole chromosomes
(``np.frombuffer`` of the sequence, cumulative sums for windowed GC/CpG, shifted comparisons for
short patterns, run-length encoding for homopolymers and tandem repeats).

Codon-position concepts are *periodic*: a ``codon_posK(s)`` row covers a CDS part and its members
are every third base counted from the row's 5' end (``start`` on ``+``, ``end - 1`` on ``-``), whose
base has codon position K. :func:`label_positions` and :func:`concept_mask` apply that rule; use
them (or :func:`is_periodic`) rather than plain interval overlap for these rows.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from genosae.genome.genes import coding_genes, promoter_intervals, stranded_interval
from genosae.genome.reference import Reference, coverage_mask, reverse_complement, runs

CONCEPT_COLUMNS = ["chrom", "start", "end", "strand", "concept", "name"]
#: Annotation feature types copied as concepts (feature -> concept name).
FEATURE_CONCEPTS = {
    "tRNA": "tRNA", "ncRNA": "ncRNA", "rRNA": "rRNA", "snoRNA": "snoRNA", "snRNA": "snRNA",
    "LTR": "LTR", "long_terminal_repeat": "LTR", "mobile_element": "mobile_element",
    "transposable_element": "mobile_element", "rep_origin": "rep_origin",
    "origin_of_replication": "rep_origin", "centromere": "centromere", "telomere": "telomere",
    "five_prime_UTR": "five_prime_UTR", "three_prime_UTR": "three_prime_UTR",
}
_PERIODIC = re.compile(r"^codon_pos[123]\([+-]\)$")

_A, _C, _G, _T = (ord(c) for c in "ACGT")
_IUPAC_SETS = {"A": "A", "C": "C", "G": "G", "T": "T", "W": "AT", "S": "CG", "R": "AG", "Y": "CT",
               "K": "GT", "M": "AC", "N": "ACGT"}
TATA_PATTERNS = ("TATAWAW",)
POLYA_PATTERNS = ("AATAAA", "ATTAAA", "TAYRTA")


def read_concepts(path: str | Path) -> pd.DataFrame:
    """Read ``concepts.tsv.gz`` written by ``genosae prepare-reference`` (names kept as text)."""
    return pd.read_csv(path, sep="\t", dtype={"chrom": str, "concept": str, "name": str},
                       keep_default_na=False)


def is_periodic(concept: str) -> bool:
    """True for codon-position concepts (members every third base, see the module docstring)."""
    return bool(_PERIODIC.match(concept))


def _upper(arr: np.ndarray) -> np.ndarray:
    return arr & np.uint8(0xDF)


def match_pattern(seq: np.ndarray, pattern: str) -> np.ndarray:
    """Start positions where an IUPAC ``pattern`` matches the upper-cased byte array ``seq``."""
    n, k = seq.size, len(pattern)
    if n < k:
        return np.zeros(0, dtype=np.int64)
    ok = np.ones(n - k + 1, dtype=bool)
    for i, letter in enumerate(pattern):
        allowed = np.frombuffer(_IUPAC_SETS[letter].encode(), dtype=np.uint8)
        ok &= np.isin(seq[i:n - k + 1 + i], allowed)
    return np.flatnonzero(ok)



def _frame(chrom, start, end, strand, concept, name) -> pd.DataFrame:
    start = np.asarray(start, dtype=np.int64)
    return pd.DataFrame({"chrom": chrom, "start": start, "end": np.asarray(end, dtype=np.int64),
                         "strand": strand, "concept": concept, "name": name})


def _annotation_concepts(annotation: pd.DataFrame, sizes: dict[str, int], *, promoter_upstream: int,
                         promoter_downstream: int, flank_length: int) -> list[pd.DataFrame]:
    a = annotation
    frames = []
    feat = a[a["feature"].isin(list(FEATURE_CONCEPTS))]
    frames.append(_frame(feat["chrom"].to_numpy(), feat["start"], feat["end"], feat["strand"].to_numpy(),
                         feat["feature"].map(FEATURE_CONCEPTS).to_numpy(), feat["name"].to_numpy()))
    cds = a[a["feature"] == "CDS"].copy()
    frames.append(_frame(cds["chrom"].to_numpy(), cds["start"], cds["end"], cds["strand"].to_numpy(),
                         "CDS", cds["name"].to_numpy()))
    # introns: gaps between consecutive CDS parts of one transcript
    cds["key"] = cds["parent"].where(cds["parent"] != "", cds["gene_id"])
    cds = cds.sort_values(["chrom", "key", "start"], kind="stable")
    same = (cds["key"].to_numpy()[1:] == cds["key"].to_numpy()[:-1]) & \
           (cds["chrom"].to_numpy()[1:] == cds["chrom"].to_numpy()[:-1])
    i_start, i_end = cds["end"].to_numpy()[:-1], cds["start"].to_numpy()[1:]
    ok = same & (i_end > i_start)
    intr = cds.iloc[:-1][ok]
    i_start, i_end = i_start[ok], i_end[ok]
    plus = intr["strand"].to_numpy() != "-"
    ichrom, istrand, iname = intr["chrom"].to_numpy(), intr["strand"].to_numpy(), intr["name"].to_numpy()
    frames.append(_frame(ichrom, i_start, i_end, istrand, "intron", iname))
    frames.append(_frame(ichrom, np.where(plus, i_start, i_end - 2), np.where(plus, i_start + 2, i_end),
                         istrand, "splice_donor", iname))
    frames.append(_frame(ichrom, np.where(plus, i_end - 2, i_start), np.where(plus, i_end, i_start + 2),
                         istrand, "splice_acceptor", iname))
    # codon positions (periodic rows, anchored at the 5' end of each CDS part)
    cds = a[a["feature"] == "CDS"]
    plus = cds["strand"].to_numpy() != "-"
    phase = np.clip(cds["phase"].to_numpy(), 0, 2)
    s, e = cds["start"].to_numpy(), cds["end"].to_numpy()
    for k in (1, 2, 3):
        off = (phase + k - 1) % 3
        lo = np.where(plus, s + off, s)
        hi = np.where(plus, e, e - off)
        keep = hi > lo
        strand = np.where(plus, "+", "-")[keep]
        frames.append(_frame(cds["chrom"].to_numpy()[keep], lo[keep], hi[keep], strand,
                             np.char.add(f"codon_pos{k}(", np.char.add(strand, ")")).astype(object),
                             cds["name"].to_numpy()[keep]))
    genes = coding_genes(a)
    gp = genes["strand"].to_numpy() != "-"
    gs, ge = genes["start"].to_numpy(), genes["end"].to_numpy()
    gchrom, gstrand, gname = genes["chrom"].to_numpy(), genes["strand"].to_numpy(), genes["name"].to_numpy()
    frames.append(_frame(gchrom, np.where(gp, gs, ge - 3), np.where(gp, gs + 3, ge), gstrand,
                         "start_codon", gname))
    frames.append(_frame(gchrom, np.where(gp, ge - 3, gs), np.where(gp, ge, gs + 3), gstrand,
                         "stop_codon", gname))
    lo, hi = promoter_intervals(genes, upstream=promoter_upstream, downstream=promoter_downstream,
                                chrom_sizes=sizes)
    frames.append(_frame(gchrom, lo, hi, gstrand, "promoter", gname))
    # UTR proxies: the flanks of the coding span (5' of the start codon, 3' of the stop codon)
    lo, hi = stranded_interval(gchrom, np.where(gp, gs, ge - 1), gstrand, upstream=flank_length,
                               downstream=0, chrom_sizes=sizes)
    frames.append(_frame(gchrom, lo, hi, gstrand, "five_prime_flank", gname))
    lo, hi = stranded_interval(gchrom, np.where(gp, ge, gs - 1), gstrand, upstream=0,
                               downstream=flank_length, chrom_sizes=sizes)
    frames.append(_frame(gchrom, lo, hi, gstrand, "three_prime_flank", gname))
    return [f[f["end"] > f["start"]] for f in frames]


def _sites_in(regions: pd.DataFrame, chrom: str, seq: np.ndarray, patterns: Sequence[str],
              concept: str) -> list[pd.DataFrame]:
    """Pattern matches on each strand lying wholly inside ``regions`` of the same strand."""
    out = []
    n = seq.size
    for strand in ("+", "-"):
        r = regions[(regions["chrom"] == chrom) & (regions["strand"] == strand)]
        if r.empty:
            continue
        cov = np.r_[0, np.cumsum(coverage_mask(r["start"].to_numpy(), r["end"].to_numpy(), n))]
        for pat in patterns:
            p = pat if strand == "+" else reverse_complement(pat)
            st = match_pattern(seq, p)
            k = len(p)
            st = st[cov[st + k] - cov[st] == k]
            words = seq[st[:, None] + np.arange(k)] if st.size else np.zeros((0, k), np.uint8)
            names = words.view(f"S{k}").ravel().astype(str) if st.size else np.zeros(0, dtype=str)
            if strand == "-" and st.size:
                names = np.array([reverse_complement(w) for w in names])
            out.append(_frame(chrom, st, st + k, strand, concept, names.astype(object)))
    return out


def _windowed(seq: np.ndarray, chrom: str, window: int, gc_threshold: float) -> list[pd.DataFrame]:
    n = seq.size
    if n < window:
        return []
    is_gc = (seq == _G) | (seq == _C)
    is_acgt = is_gc | (seq == _A) | (seq == _T)
    cg = np.r_[(seq[:-1] == _C) & (seq[1:] == _G), False]
    c_gc, c_valid = np.r_[0, np.cumsum(is_gc)], np.r_[0, np.cumsum(is_acgt)]
    c_c, c_g = np.r_[0, np.cumsum(seq == _C)], np.r_[0, np.cumsum(seq == _G)]
    c_cg = np.r_[0, np.cumsum(cg)]
    i = np.arange(n - window + 1)
    gc = c_gc[i + window] - c_gc[i]
    full = (c_valid[i + window] - c_valid[i]) == window
    n_c, n_g = c_c[i + window] - c_c[i], c_g[i + window] - c_g[i]
    n_cg = c_cg[i + window - 1] - c_cg[i]
    frames = []
    rich = full & (gc >= gc_threshold * window)
    expected = n_c.astype(np.float64) * n_g / window
    cpg = full & (gc >= 0.5 * window) & (n_cg >= 0.6 * np.maximum(expected, 1e-9)) & (n_cg > 0)
    for concept, qual in (("GC_rich", rich), ("CpG_like", cpg)):
        st = np.flatnonzero(qual)
        cov = coverage_mask(st, st + window, n)
        s, e = runs(cov)
        frames.append(_frame(chrom, s, e, ".", concept, concept))
    return frames


def _repeats(seq: np.ndarray, chrom: str, homopolymer_min: int, tandem_min: int) -> list[pd.DataFrame]:
    n = seq.size
    valid = (seq == _A) | (seq == _C) | (seq == _G) | (seq == _T)
    change = np.flatnonzero(np.r_[True, seq[1:] != seq[:-1]])
    rstart, rend = change, np.r_[change[1:], n]
    base = seq[rstart]
    long = ((rend - rstart) >= homopolymer_min) & valid[rstart]
    frames = []
    for concept, letters in (("homopolymer_AT", (_A, _T)), ("homopolymer_GC", (_G, _C))):
        k = long & np.isin(base, letters)
        lens = rend[k] - rstart[k]
        names = np.char.add(base[k].view("S1").astype(str), lens.astype(str)).astype(object)
        frames.append(_frame(chrom, rstart[k], rend[k], ".", concept, names))
    cov = np.zeros(n, dtype=bool)
    step_change = np.r_[0, np.cumsum(seq[1:] != seq[:-1])]
    for period in range(2, 7):
        eq = (seq[:-period] == seq[period:]) & valid[:-period]
        s, e = runs(eq)
        keep = (e - s) >= max(tandem_min - period, period)
        s, e = s[keep], e[keep] + period
        not_homo = step_change[e - 1] - step_change[s] > 0
        s, e = s[not_homo], e[not_homo]
        diff = np.zeros(n + 1, dtype=np.int32)
        np.add.at(diff, s, 1)
        np.add.at(diff, e, -1)
        cov |= np.cumsum(diff[:-1]) > 0
    s, e = runs(cov)
    frames.append(_frame(chrom, s, e, ".", "tandem_repeat", "STR"))
    return frames


def build_concepts(annotation: pd.DataFrame, reference: Reference, *, promoter_upstream: int = 500,
                   promoter_downstream: int = 0, flank_length: int = 200, gc_window: int = 50,
                   gc_threshold: float = 0.6, homopolymer_min_length: int = 6,
                   tandem_repeat_min_length: int = 12) -> pd.DataFrame:
    """Concept instances from the annotation and the sequence.

    Parameters
    ----------
    annotation
        Output of :func:`genosae.genome.annotation.read_annotation` (chromosomes resolved).
    reference
        The genome the annotation refers to.

    Returns
    -------
    Concepts table (``chrom, start, end, strand, concept, name``) sorted by chromosome (FASTA order),
    start, concept. Concepts: ``CDS``, ``intron``, ``splice_donor``/``splice_acceptor`` (the GT/AG
    dinucleotides), ``start_codon``, ``stop_codon``, ``codon_pos{1,2,3}({+,-})`` (periodic),
    ``promoter`` (:mod:`genosae.genome.genes`: upstream of the gene's TSS),
    ``five_prime_flank``/``three_prime_flank`` (UTR proxies: the flanks of the CDS span), annotated classes of
    :data:`FEATURE_CONCEPTS`, ``TATA_box`` (``TATAWAW`` in promoters, gene strand), ``polyA_signal``
    (``AATAAA``/``ATTAAA`` and the yeast efficiency element ``TAYRTA`` in 3' flanks), ``GC_rich``,
    ``CpG_like`` (obs/exp CpG >= 0.6 and GC >= 0.5 in ``gc_window``), ``homopolymer_AT``/``_GC``,
    ``tandem_repeat`` (periods 2-6).
    """
    sizes = reference.chrom_sizes
    frames = _annotation_concepts(annotation, sizes, promoter_upstream=promoter_upstream,
                                  promoter_downstream=promoter_downstream, flank_length=flank_length)
    promoters = next(f for f in frames if len(f) and f["concept"].iat[0] == "promoter") \
        if any(len(f) and f["concept"].iat[0] == "promoter" for f in frames) else frames[0].iloc[:0]
    three = next((f for f in frames if len(f) and f["concept"].iat[0] == "three_prime_flank"),
                 frames[0].iloc[:0])
    for chrom in reference.chroms:
        seq = _upper(reference.array(chrom))
        frames += _sites_in(promoters, chrom, seq, TATA_PATTERNS, "TATA_box")
        frames += _sites_in(three, chrom, seq, POLYA_PATTERNS, "polyA_signal")
        frames += _windowed(seq, chrom, gc_window, gc_threshold)
        frames += _repeats(seq, chrom, homopolymer_min_length, tandem_repeat_min_length)
    out = pd.concat([f for f in frames if len(f)], ignore_index=True)
    order = {c: i for i, c in enumerate(reference.chroms)}
    out = out.assign(_o=out["chrom"].map(order)).sort_values(["_o", "start", "end", "concept"],
                                                             kind="stable")
    return out.drop(columns="_o").reset_index(drop=True)[CONCEPT_COLUMNS]


class ConceptIndex:
    """Sorted interval arrays per concept for fast point queries (see :func:`label_positions`)."""

    def __init__(self, concepts: pd.DataFrame, concept_names: Sequence[str]) -> None:
        self.concept_names = list(concept_names)
        chroms = pd.unique(concepts["chrom"])
        self.chrom_code = {c: i for i, c in enumerate(chroms)}
        code = concepts["chrom"].map(self.chrom_code).to_numpy(np.int64)
        start = concepts["start"].to_numpy(np.int64)
        end = concepts["end"].to_numpy(np.int64)
        row = np.arange(len(concepts), dtype=np.int64) + 1
        minus = concepts["strand"].to_numpy() == "-"
        grouped = pd.Series(np.arange(len(concepts))).groupby(concepts["concept"].to_numpy()).indices
        self.tables: list[list[tuple[int | None, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]] = []
        for name in self.concept_names:
            idx = grouped.get(name, np.zeros(0, dtype=np.int64))
            parts = []
            if is_periodic(name):
                anchor = np.where(minus[idx], end[idx] - 1, start[idx])
                for r in range(3):
                    parts.append((r, idx[anchor % 3 == r]))
            else:
                parts.append((None, idx))
            tables = []
            for r, sub in parts:
                key_s = (code[sub] << 40) + start[sub]
                key_e = (code[sub] << 40) + end[sub]
                o = np.argsort(key_s, kind="stable")
                key_s, key_e, ids = key_s[o], key_e[o], row[sub][o]
                run_end = np.maximum.accumulate(key_e) if key_e.size else key_e
                arg = np.maximum.accumulate(np.where(key_e == run_end, np.arange(key_e.size), 0)) \
                    if key_e.size else key_e
                tables.append((r, key_s, run_end, ids[arg] if key_e.size else ids, key_e))
            self.tables.append(tables)

    def label(self, chroms: Sequence[str] | np.ndarray, positions: np.ndarray) -> tuple[sp.csr_matrix,
                                                                                         sp.csr_matrix]:
        positions = np.asarray(positions, dtype=np.int64)
        codes = pd.Series(np.asarray(chroms, dtype=object)).map(self.chrom_code)
        known = codes.notna().to_numpy()
        keys = (codes.fillna(-1).to_numpy(np.int64) << 40) + positions
        order = np.argsort(keys, kind="stable")
        skeys, sknown, smod = keys[order], known[order], (positions % 3)[order]
        rows_all, cols_all, ids_all = [], [], []
        for j, tables in enumerate(self.tables):
            for r, key_s, run_end, ids, _ in tables:
                if key_s.size == 0:
                    continue
                q = np.flatnonzero(sknown if r is None else sknown & (smod == r))
                kq = skeys[q]
                k = np.searchsorted(key_s, kq, side="right") - 1
                hit = k >= 0
                hit[hit] = run_end[k[hit]] > kq[hit]
                rows_all.append(order[q[hit]])
                cols_all.append(np.full(int(hit.sum()), j, dtype=np.int64))
                ids_all.append(ids[k[hit]])
        n, m = positions.size, len(self.tables)
        rows = np.concatenate(rows_all) if rows_all else np.zeros(0, np.int64)
        cols = np.concatenate(cols_all) if cols_all else np.zeros(0, np.int64)
        ids = np.concatenate(ids_all) if ids_all else np.zeros(0, np.int64)
        member = sp.csr_matrix((np.ones(rows.size, dtype=bool), (rows, cols)), shape=(n, m))
        inst = sp.csr_matrix((ids, (rows, cols)), shape=(n, m), dtype=np.int64)
        return member, inst


def label_positions(concepts: pd.DataFrame, chroms: Sequence[str] | np.ndarray, positions: np.ndarray,
                    concept_names: Sequence[str]) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Which concepts cover each base position.

    Parameters
    ----------
    concepts
        Concepts table.
    chroms, positions
        Chromosome and 0-based position of each query base (same length).
    concept_names
        Column order of the outputs.

    Returns
    -------
    membership
        ``csr_matrix`` bool ``[n_positions, n_concepts]``.
    instance
        ``csr_matrix`` int64 ``[n_positions, n_concepts]``: 1-based row number in ``concepts`` of
        one covering instance (the one reaching furthest right when several overlap), 0 = none.
    """
    return ConceptIndex(concepts, concept_names).label(chroms, positions)


def concept_mask(concepts: pd.DataFrame, chrom: str, start: int, end: int,
                 concept_names: Sequence[str]) -> np.ndarray:
    """Boolean ``[n_concepts, end - start]`` membership of each base of ``chrom:[start, end)``."""
    sub = concepts[(concepts["chrom"] == chrom) & (concepts["end"] > start) & (concepts["start"] < end)]
    pos = np.arange(start, end, dtype=np.int64)
    member, _ = label_positions(sub, np.full(pos.size, chrom, dtype=object), pos, concept_names)
    return member.T.toarray()
