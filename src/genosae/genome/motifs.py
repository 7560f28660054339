"""Transcription-factor motifs: JASPAR (pyjaspar's bundled SQLite), MEME/JASPAR files, FIMO scans.

Scanning is :func:`memelite.fimo.fimo` (numba FIMO, both strands) on the reference FASTA itself, so a
whole-genome scan costs one memelite call plus a DataFrame concat.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genosae._io import atomic_path
from genosae.errors import InputError
from genosae.genome.reference import Reference

HIT_COLUMNS = ["chrom", "start", "end", "strand", "motif_id", "motif_name", "score", "p_value"]


@dataclass(frozen=True)
class Motif:
    """A position probability matrix ``pwm`` ``[L, 4]`` (columns A, C, G, T; rows sum to 1)."""

    id: str
    name: str
    pwm: np.ndarray

    @property
    def label(self) -> str:
        return f"{self.id} {self.name}".strip()

    @property
    def consensus(self) -> str:
        return "".join(np.array(list("ACGT"))[np.argmax(self.pwm, axis=1)])


def _normalise(counts: np.ndarray, where: str, path: Path | None = None) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[1] != 4 or counts.shape[0] == 0:
        raise InputError(f"motif {where} must have 4 columns (A C G T) and at least one row",
                         path=path, record=where)
    if (counts < 0).any() or (counts.sum(axis=1) <= 0).any():
        raise InputError(f"motif {where} has negative values or an all-zero position", path=path,
                         record=where)
    return counts / counts.sum(axis=1, keepdims=True)


def jaspar_releases() -> list[str]:
    """Releases shipped by the installed pyjaspar, newest first."""
    import pyjaspar

    return sorted(pyjaspar.jaspar_releases, reverse=True)


def load_jaspar(release: str | None = None, collection: str = "CORE",
                tax_group: str | Sequence[str] | None = "fungi") -> list[Motif]:
    """Motifs from pyjaspar's bundled SQLite (no network). ``release=None`` = newest shipped."""
    import pyjaspar

    releases = jaspar_releases()
    release = release or releases[0]
    if release not in releases:
        raise InputError(f"JASPAR release '{release}' is not shipped by pyjaspar "
                         f"{pyjaspar.__version__}; available: {', '.join(releases)}",
                         record="motifs.jaspar_release")
    db = pyjaspar.jaspardb(release=release)
    groups = [tax_group] if isinstance(tax_group, str) else tax_group
    found = db.fetch_motifs(collection=collection, tax_group=groups)
    motifs = []
    for m in found:
        counts = np.array([m.counts[b] for b in "ACGT"], dtype=np.float64).T
        motifs.append(Motif(m.matrix_id, m.name, _normalise(counts, m.matrix_id)))
    if not motifs:
        raise InputError(f"no JASPAR motifs for collection={collection}, tax_group={tax_group} in "
                         f"{release}", record="motifs.tax_group")
    return motifs


def _parse_meme(lines: list[str], path: Path) -> list[Motif]:
    motifs: list[Motif] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("MOTIF"):
            parts = line.split()
            if len(parts) < 2:
                raise InputError("MOTIF line without an identifier", path=path, record=i + 1)
            mid, name = parts[1], " ".join(parts[2:]) or parts[1]
            j = i + 1
            while j < len(lines) and not lines[j].startswith("letter-probability"):
                if lines[j].startswith("MOTIF"):
                    break
                j += 1
            if j >= len(lines) or not lines[j].startswith("letter-probability"):
                raise InputError(f"motif '{mid}' has no 'letter-probability matrix' line", path=path,
                                 record=i + 1)
            m = re.search(r"\bw=\s*(\d+)", lines[j])
            if not m:
                raise InputError(f"motif '{mid}': 'letter-probability' line lacks w=", path=path,
                                 record=j + 1)
            w = int(m.group(1))
            rows = []
            for k in range(j + 1, j + 1 + w):
                try:
                    rows.append([float(x) for x in lines[k].split()])
                except (IndexError, ValueError):
                    raise InputError(f"motif '{mid}': expected {w} rows of 4 numbers", path=path,
                                     record=k + 1) from None
                if len(rows[-1]) != 4:
                    raise InputError(f"motif '{mid}': a row needs 4 numbers (A C G T)", path=path,
                                     record=k + 1)
            motifs.append(Motif(mid, name, _normalise(np.array(rows), mid, path)))
            i = j + 1 + w
        else:
            i += 1
    return motifs


def _parse_jaspar(lines: list[str], path: Path) -> list[Motif]:
    motifs: list[Motif] = []
    i = 0
    while i < len(lines):
        if lines[i].startswith(">"):
            parts = lines[i][1:].split()
            if not parts:
                raise InputError("JASPAR header without an identifier", path=path, record=i + 1)
            mid, name = parts[0], " ".join(parts[1:]) or parts[0]
            rows = []
            for k in range(i + 1, i + 5):
                text = lines[k] if k < len(lines) else ""
                text = re.sub(r"^\s*[ACGT]\s*", "", text).replace("[", " ").replace("]", " ")
                try:
                    rows.append([float(x) for x in text.split()])
                except ValueError:
                    raise InputError(f"motif '{mid}': expected 4 rows (A C G T) of counts", path=path,
                                     record=k + 1) from None
            if len({len(r) for r in rows}) != 1 or not rows[0]:
                raise InputError(f"motif '{mid}': the A/C/G/T rows differ in length or are empty",
                                 path=path, record=i + 1)
            motifs.append(Motif(mid, name, _normalise(np.array(rows).T, mid, path)))
            i += 5
        else:
            i += 1
    return motifs


def read_motif_file(path: str | Path) -> list[Motif]:
    """Read a MEME (``MOTIF``/``letter-probability matrix``) or JASPAR (``>ID NAME`` + 4 rows) file."""
    path = Path(path)
    if not path.exists():
        raise InputError("motif file not found; fix the path", path=path)
    lines = path.read_text(errors="replace").splitlines()
    if not any(line.strip() for line in lines):
        raise InputError("the motif file is empty", path=path)
    if any(line.startswith("MOTIF") for line in lines):
        motifs = _parse_meme(lines, path)
    elif any(line.startswith(">") for line in lines):
        motifs = _parse_jaspar(lines, path)
    else:
        raise InputError("not a MEME or JASPAR motif file (no 'MOTIF' or '>' lines)", path=path, record=1)
    ids = [m.id for m in motifs]
    dup = {x for x in ids if ids.count(x) > 1}
    if dup:
        raise InputError(f"duplicate motif id(s) {sorted(dup)}; ids must be unique", path=path)
    return motifs


def load_motifs(config: Mapping[str, Any]) -> list[Motif]:
    """The motifs a config's ``motifs`` section names: its ``file`` (``source: file``) or the JASPAR
    ``jaspar_release`` / ``collection`` / ``tax_group``."""
    m = config["motifs"]
    if m["source"] == "file":
        return read_motif_file(m["file"])
    return load_jaspar(m["jaspar_release"], m["collection"], m["tax_group"])


def write_meme(motifs: Iterable[Motif], path: str | Path) -> None:
    """Write motifs as a MEME v4 text file (atomically)."""
    out = ["MEME version 4", "", "ALPHABET= ACGT", "", "strands: + -", "",
           "Background letter frequencies", "A 0.25 C 0.25 G 0.25 T 0.25", ""]
    for m in motifs:
        out.append(f"MOTIF {m.id} {m.name}".rstrip())
        out.append(f"letter-probability matrix: alength= 4 w= {m.pwm.shape[0]} nsites= 20 E= 0")
        out += [" ".join(f"{v:.6f}" for v in row) for row in m.pwm]
        out.append("")
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(out) + "\n")


def scan_motifs(motifs: Sequence[Motif], sequences: Mapping[str, str] | Reference,
                threshold: float = 1e-4) -> pd.DataFrame:
    """FIMO hits of ``motifs`` on both strands.

    Parameters
    ----------
    motifs
        Motifs to scan.
    sequences
        ``{name: sequence}`` or a :class:`Reference` (scanned from its FASTA directly).
    threshold
        FIMO p-value threshold.

    Returns
    -------
    DataFrame :data:`HIT_COLUMNS`, 0-based half-open, sorted by chrom, start, motif_id.
    """
    from memelite.fimo import fimo

    if not motifs:
        return pd.DataFrame({c: [] for c in HIT_COLUMNS})
    table = {f"m{i}": m.pwm.T.copy() for i, m in enumerate(motifs)}
    with tempfile.TemporaryDirectory() as tmp:
        if isinstance(sequences, Reference):
            fasta = str(sequences.path)
        else:
            fasta = str(Path(tmp) / "seqs.fa")
            with open(fasta, "w") as fh:
                for name, seq in sequences.items():
                    fh.write(f">{name}\n{seq}\n")
        hits = fimo(table, fasta, threshold=threshold, reverse_complement=True)
    frames = [h for h in hits if len(h)]
    if not frames:
        return pd.DataFrame({c: [] for c in HIT_COLUMNS})
    h = pd.concat(frames, ignore_index=True)
    idx = h["motif_name"].str.slice(1).astype(np.int64).to_numpy()
    ids = np.array([m.id for m in motifs], dtype=object)
    names = np.array([m.name for m in motifs], dtype=object)
    out = pd.DataFrame({
        "chrom": h["sequence_name"].astype(str).to_numpy(dtype=object),
        "start": h["start"].to_numpy(np.int64), "end": h["end"].to_numpy(np.int64),
        "strand": h["strand"].to_numpy(dtype=object), "motif_id": ids[idx], "motif_name": names[idx],
        "score": h["score"].to_numpy(np.float64), "p_value": h["p-value"].to_numpy(np.float64)})
    return out.sort_values(["chrom", "start", "motif_id"], kind="stable").reset_index(drop=True)


def motif_concepts(hits: pd.DataFrame) -> pd.DataFrame:
    """Concept rows ``motif:<id> <name>`` (one per hit) from :func:`scan_motifs` output."""
    concept = ("motif:" + hits["motif_id"].astype(str) + " " + hits["motif_name"].astype(str)).str.strip()
    return pd.DataFrame({"chrom": hits["chrom"].to_numpy(dtype=object), "start": hits["start"],
                         "end": hits["end"], "strand": hits["strand"],
                         "concept": concept.to_numpy(dtype=object),
                         "name": hits["motif_name"].astype(str).to_numpy(dtype=object)})
