"""Genes, their transcription start sites and promoters: the one definition genosae uses.

The concept masks (``promoter`` concept of :func:`~genosae.genome.concepts.build_concepts`), the
region designs (:func:`~genosae.genome.designs.region_design_from_genes`) and the cohort simulator
(:func:`~genosae.biomarkers.simulate.candidate_promoters`) all read promoters from here, so
"promoter" means the same bases everywhere.

**TSS rule.** A coding gene is a ``gene_id`` with at least one ``CDS`` row. Its TSS is the 5' end
of its annotated ``gene`` record (same chromosome, ``gene_id`` and strand): ``start`` on ``+``,
``end - 1`` on ``-``, so annotated 5' UTRs are upstream of the coding start, as in GENCODE/Ensembl
GTFs. A gene without a ``gene`` record (a CDS-only GTF) falls back to the 5' end of its CDS span.
On the yeast default (SGD genes span their ORF) both give the same base for every coding gene.

**Promoter.** ``[TSS - upstream, TSS + downstream)`` on ``+`` and its mirror
``[TSS + 1 - downstream, TSS + 1 + upstream)`` on ``-``, clipped to the chromosome.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

GENE_COLUMNS = ["chrom", "start", "end", "strand", "name", "gene_id", "tss"]
PROMOTER_COLUMNS = ["region_id", "chrom", "start", "end", "strand", "gene"]


def coding_genes(annotation: pd.DataFrame) -> pd.DataFrame:
    """One row per coding gene, in annotation order.

    Returns
    -------
    DataFrame :data:`GENE_COLUMNS`: ``start``/``end`` span the gene's CDS parts (0-based
    half-open), ``tss`` is the 0-based position of its first transcribed base (module docstring).
    """
    cds = annotation[annotation["feature"] == "CDS"]
    key = cds["gene_id"].where(cds["gene_id"] != "", cds["parent"])
    g = cds.assign(key=key).groupby(["chrom", "key"], sort=False)
    out = g.agg(start=("start", "min"), end=("end", "max"), strand=("strand", "first"),
                name=("name", "first")).reset_index().rename(columns={"key": "gene_id"})
    rec = annotation[annotation["feature"] == "gene"]
    span = rec.groupby(["chrom", "gene_id", "strand"], sort=False).agg(g_start=("start", "min"),
                                                                       g_end=("end", "max"))
    out = out.join(span, on=["chrom", "gene_id", "strand"])
    plus = out["strand"].to_numpy() != "-"
    has = out["g_start"].notna().to_numpy()
    g_start = out["g_start"].fillna(0).to_numpy(np.int64)
    g_end = out["g_end"].fillna(0).to_numpy(np.int64)
    cds_tss = np.where(plus, out["start"].to_numpy(np.int64), out["end"].to_numpy(np.int64) - 1)
    out["tss"] = np.where(has, np.where(plus, g_start, g_end - 1), cds_tss)
    return out[GENE_COLUMNS]


def stranded_interval(chrom: np.ndarray | pd.Series, anchor: np.ndarray, strand: np.ndarray | pd.Series, *,
                      upstream: int, downstream: int,
                      chrom_sizes: Mapping[str, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``[anchor - upstream, anchor + downstream)`` read on each row's strand, clipped.

    ``anchor`` is a 0-based base position; on ``-`` the interval is mirrored around it:
    ``[anchor + 1 - downstream, anchor + 1 + upstream)``. Coordinates are clipped to
    ``[0, chromosome length]`` (to ``0`` only without ``chrom_sizes``); an interval clipped away is
    empty (``start == end``).

    Returns
    -------
    ``(start, end)`` int64 arrays.
    """
    anchor = np.asarray(anchor, dtype=np.int64)
    plus = np.asarray(strand) != "-"
    lo = np.where(plus, anchor - upstream, anchor + 1 - downstream)
    hi = np.where(plus, anchor + downstream, anchor + 1 + upstream)
    if chrom_sizes is None:
        size = np.full(anchor.shape, np.iinfo(np.int64).max // 4)
    else:
        size = pd.Series(np.asarray(chrom, dtype=object)).map(dict(chrom_sizes)).to_numpy(np.int64)
    return np.clip(lo, 0, size), np.clip(hi, 0, size)


def promoter_intervals(genes: pd.DataFrame, *, upstream: int, downstream: int,
                       chrom_sizes: Mapping[str, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Promoter ``(start, end)`` of each row of :func:`coding_genes` (module docstring)."""
    return stranded_interval(genes["chrom"], genes["tss"], genes["strand"], upstream=upstream,
                             downstream=downstream, chrom_sizes=chrom_sizes)


def match_genes(genes: pd.DataFrame, wanted: Iterable[str]) -> tuple[np.ndarray, list[str]]:
    """Which rows of ``genes`` (``name``, ``gene_id``) a list of names or IDs names, case-insensitive.

    Returns
    -------
    hit
        Bool mask over ``genes``.
    unknown
        The entries of ``wanted`` that matched no gene, in their order (duplicates once).
    """
    wanted = list(dict.fromkeys(str(g) for g in wanted))
    keys = {w.upper() for w in wanted}
    name_u = genes["name"].astype(str).str.upper()
    id_u = genes["gene_id"].astype(str).str.upper()
    hit = (name_u.isin(keys) | id_u.isin(keys)).to_numpy()
    found = set(name_u[hit]) | set(id_u[hit])
    return hit, [w for w in wanted if w.upper() not in found]


def promoters(annotation: pd.DataFrame, genes: Iterable[str] | None = None, *, upstream: int,
              downstream: int, chrom_sizes: Mapping[str, int] | None = None) -> pd.DataFrame:
    """Promoters of coding genes: all, or those of ``genes`` (names or systematic IDs).

    Returns
    -------
    DataFrame :data:`PROMOTER_COLUMNS` (``region_id`` = gene ID, ``gene`` = gene name), in
    annotation order; promoters clipped away by a chromosome end are kept, empty.
    """
    g = coding_genes(annotation)
    if genes is not None:
        g = g[match_genes(g, genes)[0]]
    lo, hi = promoter_intervals(g, upstream=upstream, downstream=downstream, chrom_sizes=chrom_sizes)
    return pd.DataFrame({"region_id": g["gene_id"].to_numpy(), "chrom": g["chrom"].to_numpy(),
                         "start": lo, "end": hi, "strand": g["strand"].to_numpy(),
                         "gene": g["name"].to_numpy()})
