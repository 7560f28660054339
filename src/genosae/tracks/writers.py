"""Genome-browser files: per-base tracks (bigWig + bedGraph), an IGV session and a UCSC trackDb.

Tracks are written incrementally: :meth:`TrackWriter.add` takes one contiguous stretch of per-base
values at a time (run-length encoded into bedGraph-style entries), so memory does not grow with the
input. Entries must arrive sorted (chromosome in header order, then position) and never overlap,
which is what IGV, UCSC and JBrowse need; :class:`TrackWriter` refuses anything else.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = ["TrackSpec", "TrackWriter", "run_length", "write_igv_session", "write_trackdb"]

#: strand -> (file tag, RGB colour) of its tracks
STRANDS: dict[str, tuple[str, str]] = {"+": ("plus", "31,119,180"), "-": ("minus", "214,39,40")}


def run_length(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of equal consecutive values: ``(starts, ends, values)`` with ``ends`` exclusive."""
    v = np.asarray(values)
    if v.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, v[:0]
    change = np.flatnonzero(v[1:] != v[:-1]) + 1
    starts = np.concatenate([[0], change]).astype(np.int64)
    ends = np.concatenate([change, [v.size]]).astype(np.int64)
    return starts, ends, v[starts]


@dataclass(frozen=True)
class TrackSpec:
    """One track: ``feature`` on ``strand`` (``+``/``-``) with a display ``label``."""

    feature: str
    strand: str
    label: str = ""

    @property
    def stem(self) -> str:
        return f"{self.feature}.{STRANDS[self.strand][0]}"

    @property
    def title(self) -> str:
        return f"{self.feature} {self.strand} {self.label}".strip()


class TrackWriter:
    """bigWig (and optionally bedGraph) files of one track, filled stretch by stretch.

    Parameters
    ----------
    folder
        Where ``<feature>.<plus|minus>.bw`` / ``.bedGraph`` go.
    spec
        Which track.
    chrom_sizes
        Header of the bigWig, in the order entries will arrive.
    bedgraph
        Also write a bedGraph with a ``track`` line.
    """

    def __init__(self, folder: Path, spec: TrackSpec, chrom_sizes: Mapping[str, int], *,
                 bedgraph: bool = True) -> None:
        import pyBigWig

        self.spec = spec
        self.bw_path = folder / f"{spec.stem}.bw"
        self.bedgraph_path = folder / f"{spec.stem}.bedGraph" if bedgraph else None
        self._order = {c: i for i, c in enumerate(chrom_sizes)}
        self._sizes = dict(chrom_sizes)
        self._last: tuple[int, int] = (-1, 0)  # (chrom rank, end) of the last entry
        self._bw = pyBigWig.open(str(self.bw_path), "w")
        self._bw.addHeader([(c, int(n)) for c, n in chrom_sizes.items()], maxZooms=10)
        self._bg: IO[str] | None = None
        if self.bedgraph_path is not None:
            self._bg = open(self.bedgraph_path, "w")  # closed in close()
            name = spec.title.replace('"', "'")
            self._bg.write(f'track type=bedGraph name="{name}" visibility=full autoScale=on '
                           f'color={STRANDS[spec.strand][1]}\n')

    def add(self, chrom: str, start: int, values: np.ndarray) -> None:
        """Per-base ``values`` of ``[start, start + len(values))`` on ``chrom`` (after every earlier entry)."""
        rank, n = self._order[chrom], len(values)
        if n == 0:
            return
        if (rank, start) < self._last or start + n > self._sizes[chrom]:
            msg = (f"track {self.spec.stem}: stretch {chrom}:{start}-{start + n} is out of order, overlaps "
                   f"the previous one or runs past the chromosome end")
            raise ValueError(msg)
        s, e, v = run_length(np.asarray(values, dtype=np.float32))
        s, e = s + start, e + start
        self._bw.addEntries([chrom] * len(s), s, ends=e, values=v.astype(np.float64))
        if self._bg is not None:
            np.savetxt(self._bg, np.column_stack([s, e, v]), fmt=f"{chrom}\t%d\t%d\t%.7g")
        self._last = (rank, start + n)

    def close(self) -> None:
        self._bw.close()
        if self._bg is not None:
            self._bg.close()

    def __enter__(self) -> TrackWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _rel(path: Path, start: Path) -> str:
    """``path`` relative to ``start`` when it lies inside it (the output folder moves as one), else absolute."""
    rel = os.path.relpath(Path(path).resolve(), Path(start).resolve())
    return str(Path(path).resolve()) if rel.startswith("..") else rel.replace(os.sep, "/")


def write_igv_session(path: Path, *, genome: Path | str, tracks: Sequence[tuple[TrackSpec, Path]],
                      extra: Sequence[tuple[str, Path]] = (), locus: str | None = None) -> Path:
    """IGV desktop session (``File > Open Session``): ``genome`` (FASTA path or IGV genome id),
    every track (paths relative to the session file), then ``extra`` ``(name, path)`` files (BED, GFF).
    """
    root = ET.Element("Session", genome=str(genome), version="8", **({"locus": locus} if locus else {}))
    res = ET.SubElement(root, "Resources")
    for spec, p in tracks:
        ET.SubElement(res, "Resource", name=spec.title, path=_rel(p, path.parent), type="bigwig")
    for name, p in extra:
        ET.SubElement(res, "Resource", name=name, path=_rel(p, path.parent))
    panel = ET.SubElement(root, "Panel", name="DataPanel")
    for spec, p in tracks:
        rel = _rel(p, path.parent)
        ET.SubElement(panel, "Track", attributeKey=rel, autoScale="true", clazz="org.broad.igv.track.DataSourceTrack",
                      color=STRANDS[spec.strand][1], id=rel, name=spec.title, renderer="BAR_CHART",
                      visible="true", windowFunction="none")
    ET.indent(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="UTF-8", xml_declaration=True)
    return path


def _hub_name(text: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in text)


def write_trackdb(path: Path, tracks: Sequence[tuple[TrackSpec, Path]]) -> Path:
    """UCSC track-hub ``trackDb.txt``: one ``multiWig`` container per feature with its two strands
    (``bigDataUrl`` relative to this file; add ``hub.txt``/``genomes.txt`` to serve it as a hub)."""
    by_feature: dict[str, list[tuple[TrackSpec, Path]]] = {}
    for spec, p in tracks:
        by_feature.setdefault(spec.feature, []).append((spec, p))
    lines: list[str] = []
    for feature, members in by_feature.items():
        parent = f"genosae_{_hub_name(feature)}"
        label = members[0][0].label or feature
        lines += [f"track {parent}", "container multiWig", f"shortLabel {feature}",
                  f"longLabel {feature} {label} (+ and - strand)".replace("\n", " "), "type bigWig",
                  "aggregate none", "showSubtrackColorOnUi on", "visibility full", "autoScale on", ""]
        for spec, p in members:
            tag = STRANDS[spec.strand][0]
            lines += [f"    track {parent}_{tag}", f"    parent {parent}", f"    bigDataUrl {_rel(p, path.parent)}",
                      f"    shortLabel {feature} {spec.strand}", f"    longLabel {spec.title}", "    type bigWig",
                      f"    color {STRANDS[spec.strand][1]}", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path
