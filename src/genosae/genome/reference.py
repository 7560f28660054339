"""Any reference FASTA (plain or bgzip) behind one small API, with chromosome aliases.

The file is checked once on opening, vectorised over its bytes with numpy: a header first, unique
record names, IUPAC characters only (soft-masked lowercase allowed), no empty records. Random access
then goes through :mod:`pyfaidx` (which also reads bgzip). Every problem is an
:class:`~genosae.errors.InputError` naming the file, the record/line and the fix.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from genosae.errors import InputError

#: Bytes allowed in sequence lines: IUPAC nucleotide codes (either case), gaps and line ends.
IUPAC = b"ACGTURYSWKMBDHVNacgturyswkmbdhvn-.*"
#: ``SEQUENCE_BYTES[b]`` is True for the bytes of :data:`IUPAC` and white space (a lookup table).
SEQUENCE_BYTES = np.zeros(256, dtype=bool)
SEQUENCE_BYTES[np.frombuffer(IUPAC + b"\r\n \t", dtype=np.uint8)] = True
_COMP = str.maketrans("ACGTURYSWKMBDHVNacgturyswkmbdhvn", "TGCAAYRSWMKVHDBNtgcaayrswmkvhdbn")
_ACCESSION = re.compile(r"^[A-Z]{1,6}_?\d{4,}(\.\d+)?$")
_ROMAN = [(10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")]


def to_roman(n: int) -> str:
    out = ""
    for value, sym in _ROMAN:
        while n >= value:
            out += sym
            n -= value
    return out


_FROM_ROMAN = {to_roman(i): i for i in range(1, 60)}


def chrom_sort_key(name: str) -> tuple[int, int | str]:
    """Natural chromosome order: ``chr2`` before ``chr10``, ``chrIV`` before ``chrIX``, others after."""
    bare = name[3:] if name.lower().startswith("chr") else name
    if bare.isdigit():
        return (0, int(bare))
    if bare in _FROM_ROMAN:
        return (0, _FROM_ROMAN[bare])
    return (1, bare)


def reverse_complement(seq: str) -> str:
    """Reverse complement keeping case and IUPAC ambiguity codes."""
    return seq.translate(_COMP)[::-1]


#: Letters of the base codes of :func:`encode_bases` (``OTHER_CODE`` reads back as ``N``).
CODE_LETTERS = "ACGTNN"
N_CODE, OTHER_CODE = 4, 5
_BASE_CODE = np.full(256, OTHER_CODE, dtype=np.uint8)
for _i, _b in enumerate(b"ACGTN"):
    _BASE_CODE[_b] = _BASE_CODE[_b | 0x20] = _i


def encode_bases(seq: str | bytes | np.ndarray) -> np.ndarray:
    """DNA as base codes: ``A, C, G, T`` (either case) → 0..3, ``N`` → 4, any other byte → 5.

    The one sequence encoder of genosae (k-mers, motif sites, variant calls and the default
    model's token ids are all read from it). Codes ``< 4`` are bases.

    Parameters
    ----------
    seq
        Text, bytes or a ``uint8`` array of ASCII codes (e.g. :meth:`Reference.array`).

    Returns
    -------
    ``uint8`` array of the same length.
    """
    if isinstance(seq, str):
        seq = seq.encode("ascii", errors="replace")
    arr = np.frombuffer(seq, dtype=np.uint8) if isinstance(seq, bytes) else np.asarray(seq, dtype=np.uint8)
    return _BASE_CODE[arr]


def complement_codes(codes: np.ndarray) -> np.ndarray:
    """Complement of base codes (``A↔T``, ``C↔G``); ``N`` and other codes are kept."""
    codes = np.asarray(codes)
    return np.where(codes < 4, 3 - codes, codes).astype(codes.dtype)


def decode_bases(codes: np.ndarray) -> np.ndarray:
    """Upper-case letters (``<U1`` array) of base codes; code 5 reads back as ``N``."""
    return np.asarray(list(CODE_LETTERS))[np.asarray(codes, dtype=np.int64)]


def read_fasta_bytes(path: Path) -> bytes:
    """The bytes of a plain or gzip/bgzip FASTA (decompressed); a bad gzip is an :class:`InputError`."""
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if path.suffix in {".gz", ".bgz"} or magic == b"\x1f\x8b":
        if magic != b"\x1f\x8b":
            raise InputError("named .gz but is not gzip-compressed; rename it without .gz or "
                             "compress it with `bgzip`", path=path)
        try:
            return gzip.decompress(path.read_bytes())
        except (OSError, EOFError) as err:
            raise InputError(f"corrupt gzip stream ({err}); recompress it with `bgzip`", path=path) from None
    return path.read_bytes()


def _default_aliases(name: str, description: str) -> list[str]:
    """Common spellings of one chromosome name: chr prefix, Roman/Arabic numbers, accession."""
    out = [name]
    bare = name[3:] if name.lower().startswith("chr") else name
    out += [bare, f"chr{bare}"]
    if bare in _FROM_ROMAN:
        num = str(_FROM_ROMAN[bare])
        out += [num, f"chr{num}"]
    elif bare.isdigit() and 0 < int(bare) < 60:
        rom = to_roman(int(bare))
        out += [rom, f"chr{rom}"]
    if bare in {"M", "MT", "Mito", "mito"}:
        out += ["M", "MT", "chrM", "chrMT", "Mito"]
    for token in [name, *description.split()[:2]]:
        if _ACCESSION.match(token):
            out += [token, token.split(".")[0]]
    return out


def validate_fasta_bytes(data: bytes, path: Path) -> list[tuple[str, str]]:
    """Check a FASTA held in memory; return ``[(name, description)]`` of its records in order."""
    if not data.strip():
        raise InputError("the FASTA file is empty; give a FASTA with at least one '>name' record", path=path)
    arr = np.frombuffer(data, dtype=np.uint8)
    nl = np.flatnonzero(arr == ord("\n"))
    line_starts = np.r_[0, nl + 1]
    line_starts = line_starts[line_starts < arr.size]
    line_of_byte = np.zeros(arr.size, dtype=np.int64)
    line_of_byte[line_starts[1:]] = 1
    line_of_byte = np.cumsum(line_of_byte)
    first = arr[line_starts]
    is_header = first == ord(">")
    nonblank = ~np.isin(first, np.frombuffer(b"\r\n", dtype=np.uint8))
    if not is_header[nonblank][:1].all():
        line = int(np.flatnonzero(nonblank)[0]) + 1
        raise InputError("no FASTA header before the first sequence line; the file must start with "
                         "'>name'", path=path, record=line)
    bad = ~SEQUENCE_BYTES[arr] & ~is_header[line_of_byte]
    headers = np.flatnonzero(is_header)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        line = int(line_of_byte[pos])
        rec = int(np.searchsorted(headers, line, side="right")) - 1
        name = data[line_starts[headers[rec]] + 1:].split(b"\n", 1)[0].split()[0].decode(errors="replace")
        char = chr(arr[pos])
        raise InputError(f"record '{name}' has non-IUPAC character {char!r}; only ACGTN and IUPAC "
                         "ambiguity codes are allowed", path=path, record=line + 1)
    records: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    ends = np.r_[line_starts[1:], arr.size]
    for i, h in enumerate(headers):
        text = data[line_starts[h] + 1:ends[h]].decode(errors="replace").strip()
        parts = text.split(maxsplit=1)
        if not parts:
            raise InputError("empty FASTA header; give every record a name", path=path, record=int(h) + 1)
        name = parts[0]
        if name in seen:
            raise InputError(f"duplicate record name '{name}' (first at line {seen[name]}); names "
                             "must be unique", path=path, record=int(h) + 1)
        seen[name] = int(h) + 1
        nxt = headers[i + 1] if i + 1 < headers.size else line_starts.size
        body_start = ends[h] if h < line_starts.size else arr.size
        body_end = line_starts[nxt] if nxt < line_starts.size else arr.size
        body = arr[body_start:body_end]
        if not np.any((body != ord("\n")) & (body != ord("\r")) & (body != ord(" "))):
            raise InputError(f"record '{name}' has no sequence", path=path, record=int(h) + 1)
        records.append((name, parts[1] if len(parts) > 1 else ""))
    return records


@dataclass
class Reference:
    """An indexed reference genome.

    Attributes
    ----------
    path
        The FASTA file.
    chrom_sizes
        ``{name: length}`` in FASTA order.
    aliases
        ``{alias: name}``: chr-prefix, Roman/Arabic and accession spellings plus user aliases.
    """

    path: Path
    chrom_sizes: dict[str, int]
    aliases: dict[str, str]
    descriptions: dict[str, str] = field(default_factory=dict)
    _fasta: object = field(default=None, repr=False)
    _cache: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, path: str | Path, aliases: Mapping[str, str] | None = None) -> Reference:
        """Validate and index ``path`` (plain or bgzip FASTA); ``aliases`` maps alias -> FASTA name."""
        import pyfaidx

        path = Path(path)
        if not path.exists():
            raise InputError("FASTA file not found; fix the path", path=path)
        if path.stat().st_size == 0:
            raise InputError("the FASTA file is empty; give a FASTA with at least one '>name' record",
                             path=path)
        records = validate_fasta_bytes(read_fasta_bytes(path), path)
        try:
            fasta = pyfaidx.Fasta(str(path), as_raw=True, sequence_always_upper=False,
                                  read_long_names=False, build_index=True)
        except Exception as err:  # pyfaidx raises several unrelated types
            hint = ("compress it with `bgzip` (plain gzip cannot be indexed)" if path.suffix == ".gz"
                    else "make every sequence line of a record the same length (e.g. `seqkit seq -w 80`)")
            raise InputError(f"cannot index the FASTA ({type(err).__name__}: {err}); {hint}",
                             path=path) from None
        sizes = {name: len(fasta[name]) for name, _ in records}
        descriptions = dict(records)
        table: dict[str, str] = {}
        clash: set[str] = set()
        for name, desc in records:
            for alias in _default_aliases(name, desc):
                if alias in sizes and alias != name:
                    continue
                if table.get(alias, name) != name:
                    clash.add(alias)
                table[alias] = name
        for alias in clash:
            table.pop(alias, None)
        for name in sizes:
            table[name] = name
        for alias, target in (aliases or {}).items():
            if target not in sizes:
                raise InputError(f"alias '{alias}' points to '{target}', which is not in the FASTA "
                                 f"(known: {', '.join(list(sizes)[:20])})", path=path,
                                 record="reference.chrom_aliases")
            table[str(alias)] = target
        return cls(path=path, chrom_sizes=sizes, aliases=table, descriptions=descriptions, _fasta=fasta)

    @property
    def chroms(self) -> list[str]:
        return list(self.chrom_sizes)

    def resolve(self, name: str) -> str:
        """The FASTA name of ``name`` (any known alias); unknown names raise :class:`InputError`."""
        name = str(name)
        if name in self.aliases:
            return self.aliases[name]
        known = ", ".join(list(self.chrom_sizes)[:30])
        raise InputError(f"unknown chromosome '{name}'; known names: {known} (add an alias under "
                         "reference.chrom_aliases)", path=self.path)

    def resolve_many(self, names: pd.Series | list[str]) -> np.ndarray:
        """Vectorised :meth:`resolve` over many names (each distinct name is looked up once)."""
        values = pd.Series(np.asarray(names, dtype=object))
        uniq = values.unique()
        mapping = {u: self.resolve(u) for u in uniq}
        return values.map(mapping).to_numpy(dtype=object)

    def _check(self, chrom: str, start: int, end: int) -> str:
        chrom = self.resolve(chrom)
        size = self.chrom_sizes[chrom]
        if not 0 <= start <= end <= size:
            raise InputError(f"interval {chrom}:{start}-{end} is outside the chromosome (length {size})",
                             path=self.path)
        return chrom

    def fetch(self, chrom: str, start: int, end: int, strand: str = "+") -> str:
        """Sequence of ``[start, end)`` (0-based), soft-masking kept, reverse-complemented on ``-``."""
        chrom = self._check(chrom, int(start), int(end))
        seq = self._fasta[chrom][int(start):int(end)]
        if strand == "-":
            return reverse_complement(seq)
        if strand not in {"+", "."}:
            raise InputError(f"strand must be '+', '-' or '.', got {strand!r}", path=self.path)
        return seq

    def array(self, chrom: str) -> np.ndarray:
        """The whole chromosome as a ``uint8`` array of ASCII codes (case kept; cached)."""
        chrom = self.resolve(chrom)
        if chrom not in self._cache:
            seq = self._fasta[chrom][:]
            self._cache[chrom] = np.frombuffer(seq.encode("ascii"), dtype=np.uint8)
        return self._cache[chrom]

    def is_masked(self, chrom: str, start: int, end: int) -> np.ndarray:
        """Boolean array over ``[start, end)``: True where the base is soft-masked (lowercase)."""
        chrom = self._check(chrom, int(start), int(end))
        seg = self.array(chrom)[int(start):int(end)]
        return seg >= ord("a")

    def n_runs(self, chrom: str | None = None, min_length: int = 1) -> pd.DataFrame:
        """Runs of ``N`` (either case) as ``chrom, start, end`` (0-based half-open)."""
        frames = []
        for c in [self.resolve(chrom)] if chrom else self.chroms:
            is_n = (self.array(c) | 0x20) == ord("n")
            starts, ends = runs(is_n)
            keep = ends - starts >= min_length
            frames.append(pd.DataFrame({"chrom": c, "start": starts[keep], "end": ends[keep]}))
        return pd.concat(frames, ignore_index=True)

    def chrom_sizes_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"chrom": list(self.chrom_sizes), "length": list(self.chrom_sizes.values())})


def runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) of every run of True in a 1-D boolean array."""
    padded = np.concatenate(([False], np.asarray(mask, dtype=bool), [False]))
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return edges[0::2], edges[1::2]


def coverage_mask(starts: np.ndarray, ends: np.ndarray, n: int) -> np.ndarray:
    """Bool ``[n]``: positions covered by at least one interval ``[start, end)`` (clipped to ``0..n``)."""
    diff = np.zeros(n + 1, dtype=np.int32)
    np.add.at(diff, np.clip(starts, 0, n), 1)
    np.add.at(diff, np.clip(ends, 0, n), -1)
    return np.cumsum(diff[:-1]) > 0


#: Where the bundled yeast genome is converted when no config names a ``reference.cache_dir``.
DEFAULT_YEAST_CACHE = "resources/yeast"
#: File names searched in a reference folder, in this order (``genosae prepare-reference`` names first).
FASTA_PATTERNS = ("genome.fa", "*.fa", "*.fasta", "*.fna", "*.fa.gz", "*.fasta.gz")
ANNOTATION_PATTERNS = ("annotation.gff3", "*.gff3", "*.gff", "*.gtf", "*.gff3.gz", "*.gtf.gz")


class ReferenceFiles(NamedTuple):
    """A reference FASTA and its annotation (``None`` where nothing names one)."""

    fasta: Path | None
    annotation: Path | None

    def require(self, *, annotation: bool = True) -> ReferenceFiles:
        """``self``, or an :class:`~genosae.errors.InputError` naming the missing file."""
        if self.fasta is None:
            raise InputError("no reference FASTA: set reference.fasta (with reference.source 'files') "
                             "or give one", record="reference.fasta")
        if annotation and self.annotation is None:
            raise InputError("no reference annotation: set reference.annotation (with reference.source "
                             "'files') or give one", record="reference.annotation")
        return self


def _first(folder: Path, patterns: tuple[str, ...]) -> Path | None:
    for pattern in patterns:
        found = sorted(folder.glob(pattern))
        if found:
            return found[0]
    return None


def reference_files(config: Mapping[str, Any] | None = None, *, fasta: str | Path | None = None,
                    annotation: str | Path | None = None, reference_dir: str | Path | None = None,
                    build: bool = True) -> ReferenceFiles:
    """Where the reference FASTA and annotation are: the one resolver of every command.

    Each file is taken from the first of

    1. ``fasta`` / ``annotation`` given explicitly;
    2. ``reference_dir``, a folder written by ``genosae prepare-reference`` (``genome.fa``,
       ``annotation.gff3``) or any folder holding a FASTA / GFF3 / GTF (:data:`FASTA_PATTERNS`,
       :data:`ANNOTATION_PATTERNS`; first in name order);
    3. the config's ``reference``: ``source: files`` gives its ``fasta`` and ``annotation``;
       ``source: yeast`` the bundled S288C genome converted into ``cache_dir`` (only with ``build``);
    4. without a config and without ``fasta``, the bundled yeast genome in
       :data:`DEFAULT_YEAST_CACHE` (only with ``build``).

    Returns
    -------
    :class:`ReferenceFiles`; call :meth:`ReferenceFiles.require` where a file must exist.
    """
    fa = Path(fasta) if fasta else None
    ann = Path(annotation) if annotation else None
    if reference_dir is not None and Path(reference_dir).is_dir() and not (fa and ann):
        fa = fa or _first(Path(reference_dir), FASTA_PATTERNS)
        ann = ann or _first(Path(reference_dir), ANNOTATION_PATTERNS)
    if fa and ann:
        return ReferenceFiles(fa, ann)
    ref = (config or {}).get("reference") or {}
    if ref.get("source") == "files":
        fa = fa or (Path(ref["fasta"]) if ref.get("fasta") else None)
        ann = ann or (Path(ref["annotation"]) if ref.get("annotation") else None)
    elif build and (config is not None or fa is None):
        from genosae.genome.yeast import build_yeast_reference

        built = build_yeast_reference(ref.get("cache_dir") or DEFAULT_YEAST_CACHE)
        fa, ann = fa or built.fasta, ann or built.gff3
    return ReferenceFiles(fa, ann)
