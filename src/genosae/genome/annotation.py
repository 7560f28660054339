"""Read GFF3, GTF or BED into one interval table, checked against the reference.

Parsing uses :func:`pandas.read_csv` on the non-comment lines and vectorised ``str.extract`` on the
attribute column: one C-level pass over the file instead of a Python loop per feature (bioframe's
``read_table`` does the same underneath but drops the original line numbers we need in errors, so the
pandas call is made directly). The output is 0-based half-open, like every table in genosae::

    chrom, start, end, strand, feature, name, gene_id, parent, phase

``name`` is the gene symbol when known (GFF ``Name``/``gene``, GTF ``gene_name``, BED name), ``gene_id``
the systematic ID (``locus_tag``/``gene_id``/``ID``), ``parent`` the GFF ``Parent`` or GTF
``transcript_id``, ``phase`` the CDS phase (``-1`` when absent).
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path
from typing import Literal
from urllib.parse import unquote

import numpy as np
import pandas as pd

from genosae.errors import InputError
from genosae.genome.reference import Reference

Format = Literal["gff3", "gtf", "bed"]
FORMATS: tuple[str, ...] = ("gff3", "gtf", "bed")
COLUMNS = ["chrom", "start", "end", "strand", "feature", "name", "gene_id", "parent", "phase"]


def _text(path: Path) -> str:
    raw = path.read_bytes()
    if path.suffix == ".gz" or raw[:2] == b"\x1f\x8b":
        if raw[:2] != b"\x1f\x8b":
            raise InputError("named .gz but is not gzip-compressed; rename it or compress it", path=path)
        raw = gzip.decompress(raw)
    return raw.decode("utf-8", errors="replace")


def detect_format(path: Path, first_line: str) -> Format:
    """Format from the suffix (``.gff3/.gff/.gtf/.bed``, optionally ``.gz``), else from the content."""
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    suffix = suffixes[-1] if suffixes else ""
    if suffix in {".gff3", ".gff"}:
        return "gff3"
    if suffix == ".gtf":
        return "gtf"
    if suffix in {".bed", ".tsv", ".txt"}:
        return "bed"
    fields = first_line.split("\t")
    if len(fields) >= 9 and "=" in fields[8]:
        return "gff3"
    if len(fields) >= 9 and '"' in fields[8]:
        return "gtf"
    return "bed"


def _attr(col: pd.Series, key: str, fmt: Format) -> pd.Series:
    if fmt == "gff3":
        out = col.str.extract(rf"(?:^|;)\s*{key}=([^;]*)", expand=False)
        has_pct = out.str.contains("%", regex=False, na=False)
        if has_pct.any():
            out[has_pct] = out[has_pct].map(unquote)
        return out
    return col.str.extract(rf'(?:^|;)\s*{key}\s+"?([^";]*)"?', expand=False)


def read_annotation(path: str | Path, reference: Reference | None = None, *,
                    fmt: Format | None = None) -> pd.DataFrame:
    """Read an annotation file into the genosae interval table.

    Parameters
    ----------
    path
        GFF3, GTF or BED (plain or gzip). A GFF3 ``##FASTA`` section is ignored.
    reference
        When given, chromosome names are resolved through its aliases and intervals past a
        chromosome end are refused.
    fmt
        Force the format instead of detecting it.

    Returns
    -------
    DataFrame with columns :data:`COLUMNS`, 0-based half-open, in file order.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("annotation file not found; fix the path", path=path)
    text = _text(path)
    cut = text.find("\n##FASTA")
    if cut >= 0:
        text = text[:cut]
    lines = text.split("\n")
    keep = [i for i, line in enumerate(lines)
            if line.strip() and not line.startswith(("#", "track ", "browser "))]
    if not keep:
        raise InputError("the annotation file has no features; give a GFF3, GTF or BED file", path=path)
    fmt = fmt or detect_format(path, lines[keep[0]])
    if fmt not in FORMATS:
        raise InputError(f"unknown annotation format {fmt!r}; use one of {FORMATS}", path=path)
    line_no = np.asarray(keep) + 1
    body = "\n".join(lines[i] for i in keep)
    ncol = 9 if fmt != "bed" else max(len(lines[i].split("\t")) for i in keep[:1000])
    try:
        df = pd.read_csv(io.StringIO(body), sep="\t", header=None, dtype=str, quoting=3,
                         names=range(max(ncol, 3)), keep_default_na=False, na_values=[])
    except pd.errors.ParserError as err:
        raise InputError(f"cannot parse as tab-separated {fmt.upper()} ({err})", path=path) from None
    if fmt != "bed":
        short = (df[list(range(8))].isna() | (df[list(range(8))] == "")).any(axis=1)
        if short.any():
            i = int(np.flatnonzero(short.to_numpy())[0])
            raise InputError(f"a {fmt.upper()} line needs 9 tab-separated columns", path=path,
                             record=int(line_no[i]))
        chrom, s, e, strand = df[0], df[3], df[4], df[6]
    else:
        short = (df[[0, 1, 2]].isna() | (df[[0, 1, 2]] == "")).any(axis=1).to_numpy()
        if short.any():
            i = int(np.flatnonzero(short)[0])
            raise InputError("a BED line needs at least 3 tab-separated columns (chrom, start, end)",
                             path=path, record=int(line_no[i]))
        chrom, s, e = df[0], df[1], df[2]
        strand = df[5] if 5 in df else pd.Series(".", index=df.index)
    start = pd.to_numeric(s, errors="coerce")
    end = pd.to_numeric(e, errors="coerce")
    bad = (start.isna() | end.isna()).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"start/end must be integers, got {s.iloc[i]!r}, {e.iloc[i]!r}", path=path,
                         record=int(line_no[i]))
    start = start.to_numpy(np.int64)
    end = end.to_numpy(np.int64)
    if fmt != "bed":
        if (start < 1).any():
            i = int(np.flatnonzero(start < 1)[0])
            raise InputError(f"{fmt.upper()} coordinates are 1-based; start {start[i]} < 1", path=path,
                             record=int(line_no[i]))
        start = start - 1
    if (start < 0).any():
        i = int(np.flatnonzero(start < 0)[0])
        raise InputError(f"negative start {start[i]}", path=path, record=int(line_no[i]))
    if (start > end).any():
        i = int(np.flatnonzero(start > end)[0])
        raise InputError(f"start > end ({s.iloc[i]} > {e.iloc[i]}); swap them or fix the record",
                         path=path, record=int(line_no[i]))
    strand = strand.fillna(".").replace({"": ".", "?": "."})
    bad_strand = ~strand.isin(["+", "-", "."]).to_numpy()
    if bad_strand.any():
        i = int(np.flatnonzero(bad_strand)[0])
        raise InputError(f"strand must be '+', '-' or '.', got {strand.iloc[i]!r}", path=path,
                         record=int(line_no[i]))
    chrom = chrom.astype(str)
    if reference is not None:
        uniq = chrom.unique()
        mapping = {c: reference.aliases.get(c) for c in uniq}
        unknown = [c for c, v in mapping.items() if v is None]
        if unknown:
            i = int(np.flatnonzero(chrom.isin(unknown).to_numpy())[0])
            known = ", ".join(list(reference.chrom_sizes)[:30])
            raise InputError(f"unknown chromosome '{chrom.iloc[i]}'; the FASTA has: {known} (add an "
                             "alias under reference.chrom_aliases)", path=path, record=int(line_no[i]))
        chrom = chrom.map(mapping)
        size = chrom.map(reference.chrom_sizes).to_numpy(np.int64)
        past = end > size
        if past.any():
            i = int(np.flatnonzero(past)[0])
            raise InputError(f"interval ends at {end[i]}, past the end of {chrom.iloc[i]} (length "
                             f"{size[i]})", path=path, record=int(line_no[i]))
    out = pd.DataFrame({"chrom": chrom.to_numpy(dtype=object), "start": start, "end": end,
                        "strand": strand.to_numpy(dtype=object)})
    if fmt == "bed":
        name = df[3] if 3 in df else pd.Series("", index=df.index)
        name = name.fillna("").astype(str)
        out["feature"] = "region"
        out["name"] = name.to_numpy(dtype=object)
        out["gene_id"] = name.to_numpy(dtype=object)
        out["parent"] = ""
        out["phase"] = -1
    else:
        attrs = df[8].fillna("")
        if fmt == "gff3":
            ident = _attr(attrs, "ID", fmt)
            name = _attr(attrs, "Name", fmt).fillna(_attr(attrs, "gene", fmt))
            gene_id = _attr(attrs, "locus_tag", fmt).fillna(_attr(attrs, "gene_id", fmt))
            gene_id = gene_id.fillna(ident.str.replace(r"^[A-Za-z_]+:", "", regex=True))
            parent = _attr(attrs, "Parent", fmt)
        else:
            gene_id = _attr(attrs, "gene_id", fmt)
            name = _attr(attrs, "gene_name", fmt).fillna(gene_id)
            parent = _attr(attrs, "transcript_id", fmt)
        out["feature"] = df[2].astype(str).to_numpy(dtype=object)
        out["name"] = name.fillna(gene_id).fillna("").to_numpy(dtype=object)
        out["gene_id"] = gene_id.fillna(name).fillna("").to_numpy(dtype=object)
        out["parent"] = parent.fillna("").to_numpy(dtype=object)
        out["phase"] = pd.to_numeric(df[7], errors="coerce").fillna(-1).astype(np.int64).to_numpy()
    return out[COLUMNS]


def write_gff3(annotation: pd.DataFrame, path: str | Path, chrom_sizes: dict[str, int] | None = None) -> None:
    """Write the interval table as a normalised GFF3 (atomically)."""
    from genosae._io import atomic_path

    a = annotation
    attrs = ("ID=" + a["feature"].astype(str) + ":" + a["gene_id"].astype(str) + "_" +
             pd.Series(np.arange(len(a)), index=a.index).astype(str) + ";Name=" + a["name"].astype(str) +
             ";gene_id=" + a["gene_id"].astype(str))
    attrs = attrs.where(a["parent"] == "", attrs + ";Parent=" + a["parent"].astype(str))
    phase = a["phase"].astype(str).where(a["phase"] >= 0, ".")
    body = pd.DataFrame({0: a["chrom"], 1: "genosae", 2: a["feature"], 3: a["start"] + 1, 4: a["end"],
                         5: ".", 6: a["strand"], 7: phase, 8: attrs})
    header = "##gff-version 3\n" + "".join(f"##sequence-region {c} 1 {n}\n"
                                           for c, n in (chrom_sizes or {}).items())
    with atomic_path(path) as tmp:
        tmp.write_text(header + body.to_csv(sep="\t", header=False, index=False))
