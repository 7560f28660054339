"""Designs: what is compared. Region designs (case/control regions), sequence designs (given
sequences per group) and cohorts (samples with VCF or FASTA, a condition and covariates)."""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd

from genosae.errors import InputError
from genosae.genome.genes import coding_genes, match_genes, promoter_intervals
from genosae.genome.reference import (
    SEQUENCE_BYTES,
    Reference,
    read_fasta_bytes,
    validate_fasta_bytes,
)

log = logging.getLogger(__name__)
RegionType = Literal["promoter", "gene_body"]
REGION_TYPES: tuple[str, ...] = ("promoter", "gene_body")
DESIGN_COLUMNS = ["region_id", "chrom", "start", "end", "strand", "group", "gene"]
_COORD = re.compile(r"^(?P<chrom>[^:\s]+):(?P<start>\d+)-(?P<end>\d+)(?:\((?P<strand>[+-])\))?$")


def read_gene_set(path: str | Path) -> list[str]:
    """Gene names/IDs, one per line (``#`` comments and blank lines ignored; first column used)."""
    path = Path(path)
    if not path.exists():
        raise InputError("gene set file not found; fix the path", path=path)
    genes = [line.split()[0] for line in path.read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    if not genes:
        raise InputError("the gene set is empty; list one gene name or ID per line", path=path)
    return genes


def region_design_from_genes(annotation: pd.DataFrame, gene_set: Iterable[str] | str | Path, *,
                             region_type: RegionType = "promoter", case_label: str = "case",
                             control_label: str = "control", max_controls: int | None = None,
                             seed: int = 0, upstream: int = 500, downstream: int = 0,
                             chrom_sizes: Mapping[str, int] | None = None) -> pd.DataFrame:
    """Cases = regions of the gene set; controls = the same regions of all other coding genes.

    ``region_type`` ``"promoter"`` is :func:`genosae.genome.genes.promoters` (upstream of the TSS),
    ``"gene_body"`` the span of the gene's CDS parts.

    Returns
    -------
    DataFrame :data:`DESIGN_COLUMNS`; ``attrs["unknown_genes"]`` lists gene-set entries that matched
    nothing (also logged). Raises :class:`InputError` when no gene matches.
    """
    if region_type not in REGION_TYPES:
        raise InputError(f"region_type must be one of {REGION_TYPES}, got {region_type!r}",
                         record="region_type")
    source = str(gene_set) if isinstance(gene_set, (str, Path)) else None
    wanted = read_gene_set(gene_set) if isinstance(gene_set, (str, Path)) else list(gene_set)
    g = coding_genes(annotation)
    hit, unknown = match_genes(g, wanted)
    if not hit.any():
        raise InputError(f"none of the {len(wanted)} genes matched the annotation (first: "
                         f"{', '.join(wanted[:5])}); use gene names or systematic IDs", path=source)
    if unknown:
        log.warning("%d gene(s) not in the annotation: %s", len(unknown), ", ".join(unknown[:20]))
    if region_type == "promoter":
        lo, hi = promoter_intervals(g, upstream=upstream, downstream=downstream, chrom_sizes=chrom_sizes)
    else:
        lo, hi = g["start"].to_numpy(), g["end"].to_numpy()
    regions = pd.DataFrame({"region_id": g["gene_id"].to_numpy(), "chrom": g["chrom"].to_numpy(),
                            "start": lo, "end": hi, "strand": g["strand"].to_numpy(),
                            "group": np.where(hit, case_label, control_label),
                            "gene": g["name"].to_numpy()})
    regions = regions[regions["end"] > regions["start"]]
    controls = np.flatnonzero(regions["group"].to_numpy() == control_label)
    if max_controls is not None and controls.size > max_controls:
        rng = np.random.default_rng(seed)
        drop = np.setdiff1d(controls, rng.choice(controls, size=max_controls, replace=False))
        regions = regions.drop(regions.index[drop])
    regions = regions.reset_index(drop=True)[DESIGN_COLUMNS]
    regions.attrs["unknown_genes"] = unknown
    return regions


def _check_groups(groups: pd.Series, path, what: str = "group") -> None:
    levels = groups.dropna().unique()
    if len(levels) < 2:
        raise InputError(f"the '{what}' column has {len(levels)} level(s) ({', '.join(map(str, levels))}); "
                         "a comparison needs at least two", path=path)


def read_region_design(path: str | Path, reference: Reference) -> pd.DataFrame:
    """Regions with a ``group`` column: a TSV with a header (``chrom start end group`` and optional
    ``region_id``, ``strand``, ``gene``; a leading ``#`` on the header is allowed), 0-based
    half-open. Coordinates are checked against ``reference``."""
    path = Path(path)
    if not path.exists():
        raise InputError("region table not found; fix the path", path=path)
    if path.stat().st_size == 0:
        raise InputError("the region table is empty", path=path)
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    df.columns = [c.lstrip("#").strip() for c in df.columns]
    needed = {"chrom", "start", "end", "group"}
    if not needed <= set(df.columns):
        raise InputError(f"needs a header with columns {sorted(needed)} (found {list(df.columns)})",
                         path=path, record=1)
    if df.empty:
        raise InputError("the region table has a header but no rows", path=path)
    start = pd.to_numeric(df["start"], errors="coerce")
    end = pd.to_numeric(df["end"], errors="coerce")
    lines = np.arange(len(df)) + 2
    bad = (start.isna() | end.isna()).to_numpy()
    if bad.any():
        raise InputError("start/end must be integers", path=path, record=int(lines[bad][0]))
    start, end = start.to_numpy(np.int64), end.to_numpy(np.int64)
    bad = (start > end) | (start < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"start > end or negative ({start[i]}, {end[i]})", path=path, record=int(lines[i]))
    unknown = ~df["chrom"].isin(list(reference.aliases)).to_numpy()
    if unknown.any():
        i = int(np.flatnonzero(unknown)[0])
        raise InputError(f"unknown chromosome '{df['chrom'].iat[i]}'; known: "
                         f"{', '.join(reference.chroms[:30])}", path=path, record=int(lines[i]))
    chrom = df["chrom"].map(reference.aliases)
    past = end > chrom.map(reference.chrom_sizes).to_numpy(np.int64)
    if past.any():
        i = int(np.flatnonzero(past)[0])
        raise InputError(f"interval ends at {end[i]}, past the end of {chrom.iat[i]} "
                         f"({reference.chrom_sizes[chrom.iat[i]]} bp)", path=path, record=int(lines[i]))
    _check_groups(df["group"], path)
    out = pd.DataFrame({"region_id": df.get("region_id", chrom + ":" + df["start"] + "-" + df["end"]),
                        "chrom": chrom, "start": start, "end": end,
                        "strand": df.get("strand", pd.Series("+", index=df.index)).replace("", "+"),
                        "group": df["group"], "gene": df.get("gene", pd.Series("", index=df.index))})
    if out["region_id"].duplicated().any():
        dup = out["region_id"][out["region_id"].duplicated()].iat[0]
        raise InputError(f"duplicate region_id '{dup}'", path=path)
    return out


def _read_fasta_records(path: Path) -> list[tuple[str, str, str]]:
    data = read_fasta_bytes(path)
    validate_fasta_bytes(data, path)
    recs = []
    for block in data.decode().split(">")[1:]:
        head, _, body = block.partition("\n")
        parts = head.strip().split(maxsplit=1)
        recs.append((parts[0], parts[1] if len(parts) > 1 else "", "".join(body.split())))
    return recs


def read_sequence_design(table: str | Path | None = None,
                         fasta_by_group: Mapping[str, str | Path] | None = None) -> pd.DataFrame:
    """Sequences with groups: a TSV/CSV (``region_id`` or ``id``, ``sequence``, ``group``), a FASTA
    whose headers carry ``group=<label>``, and/or one FASTA per group.

    Records named ``chrom:start-end`` keep those coordinates (``chrom``, ``start``, ``end`` columns).

    Returns
    -------
    DataFrame ``region_id, group, sequence, chrom, start, end`` (coordinates NA when not given).
    """
    rows: list[tuple[str, str, str]] = []
    source = None
    if table is not None:
        source = Path(table)
        if not source.exists():
            raise InputError("sequence table not found; fix the path", path=source)
        head = source.read_text()[:1]
        if head == ">":
            for name, desc, seq in _read_fasta_records(source):
                m = re.search(r"group=(\S+)", desc)
                if not m:
                    raise InputError(f"record '{name}' has no 'group=<label>' in its header", path=source)
                rows.append((name, m.group(1), seq))
        else:
            sep = "," if source.suffix == ".csv" else "\t"
            df = pd.read_csv(source, sep=sep, dtype=str, keep_default_na=False)
            if "id" in df and "region_id" not in df:
                df = df.rename(columns={"id": "region_id"})
            if not {"region_id", "sequence", "group"} <= set(df.columns):
                raise InputError("needs columns region_id (or id), sequence, group", path=source, record=1)
            rows += list(df[["region_id", "group", "sequence"]].itertuples(index=False, name=None))
    for group, fasta in (fasta_by_group or {}).items():
        source = source or Path(fasta)
        rows += [(name, str(group), seq) for name, _, seq in _read_fasta_records(Path(fasta))]
    if not rows:
        raise InputError("no sequences given; set 'sequences' or 'fasta_by_group'", record="design")
    out = pd.DataFrame(rows, columns=["region_id", "group", "sequence"])
    seq_bytes = np.frombuffer("".join(out["sequence"]).encode(), dtype=np.uint8)
    if (~SEQUENCE_BYTES[seq_bytes]).any() or (out["sequence"].str.len() == 0).any():
        bad = out["sequence"].str.contains(r"[^ACGTURYSWKMBDHVNacgturyswkmbdhvn]|^$", regex=True)
        raise InputError(f"sequence '{out['region_id'][bad].iat[0]}' is empty or has non-IUPAC "
                         "characters", path=source)
    if out["region_id"].duplicated().any():
        raise InputError(f"duplicate sequence id '{out['region_id'][out['region_id'].duplicated()].iat[0]}'",
                         path=source)
    _check_groups(out["group"], source)
    coords = out["region_id"].str.extract(_COORD)
    out["chrom"] = coords["chrom"]
    out["start"] = pd.to_numeric(coords["start"]).astype("Int64")
    out["end"] = pd.to_numeric(coords["end"]).astype("Int64")
    return out


def read_samples(path: str | Path) -> pd.DataFrame:
    """A cohort sample sheet: TSV with ``sample_id``, ``condition``, ``vcf`` or ``fasta`` and optional
    covariates. Relative file paths are resolved against the sheet's folder (then the working
    directory). Refuses duplicated IDs, a single condition level and missing files."""
    path = Path(path)
    if not path.exists():
        raise InputError("sample sheet not found; fix the path", path=path)
    if path.stat().st_size == 0:
        raise InputError("the sample sheet is empty; it needs a header sample_id, condition, vcf|fasta",
                         path=path)
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    if not {"sample_id", "condition"} <= set(df.columns) or not ({"vcf", "fasta"} & set(df.columns)):
        raise InputError(f"needs columns sample_id, condition and vcf or fasta (found {list(df.columns)})",
                         path=path, record=1)
    if df.empty:
        raise InputError("the sample sheet has no samples", path=path)
    dup = df["sample_id"].duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise InputError(f"duplicated sample_id '{df['sample_id'].iat[i]}'; IDs must be unique",
                         path=path, record=i + 2)
    _check_groups(df["condition"].replace("", np.nan), path, "condition")
    for col in ("vcf", "fasta"):
        if col not in df:
            continue
        resolved = []
        for i, value in enumerate(df[col]):
            if not value:
                resolved.append("")
                continue
            p = Path(value)
            cand = p if p.is_absolute() else path.parent / p
            if not cand.exists() and Path(value).exists():
                cand = Path(value)
            if not cand.exists():
                raise InputError(f"{col} file '{value}' of sample '{df['sample_id'].iat[i]}' does not exist",
                                 path=path, record=i + 2)
            resolved.append(str(cand))
        df[col] = resolved
    has = np.zeros(len(df), dtype=bool)
    for col in ("vcf", "fasta"):
        if col in df:
            has |= (df[col] != "").to_numpy()
    if not has.all():
        i = int(np.flatnonzero(~has)[0])
        raise InputError(f"sample '{df['sample_id'].iat[i]}' has neither a vcf nor a fasta", path=path,
                         record=i + 2)
    for c in df.columns:
        if c not in {"sample_id", "condition", "vcf", "fasta"}:
            num = pd.to_numeric(df[c], errors="coerce")
            if num.notna().all():
                df[c] = num
    return df


DesignKind = Literal["region", "sequence", "cohort"]
Unit = Literal["region_id", "sample_id"]
#: Keys of a design's config section each kind reads (besides ``kind``, ``case_label``, ``control_label``).
KIND_KEYS: dict[str, tuple[str, ...]] = {
    "region": ("regions", "gene_set", "region_type", "max_controls"),
    "sequence": ("sequences", "fasta_by_group"),
    "cohort": ("samples", "regions", "simulate"),
}


def _path(value: str | Path | None) -> Path | None:
    return None if value is None or value == "" else Path(value)


@dataclass(frozen=True)
class Design:
    """What is compared: a case and a control group of units. Built from the config by
    :func:`design_from_config`; one subclass per kind (:class:`RegionDesign`,
    :class:`SequenceDesign`, :class:`CohortDesign`).

    Attributes
    ----------
    name
        The design's key under ``designs``.
    case_label, control_label
        The two group labels compared (different).
    source
        The config file, named in errors.
    kind, unit
        Class constants: the kind's name and the windows column that identifies a unit.
    """

    name: str = ""
    case_label: str = "case"
    control_label: str = "control"
    source: str | None = field(default=None, compare=False, repr=False)

    kind: ClassVar[DesignKind]
    unit: ClassVar[Unit] = "region_id"

    def __post_init__(self) -> None:
        if str(self.case_label) == str(self.control_label):
            raise InputError(f"case_label and control_label are both {self.case_label!r}; give the two "
                             "groups different labels", path=self.source, record=self.key())

    def key(self, sub: str | None = None) -> str:
        """The design's config key (``key 'designs.NAME[.sub]'``), for error records."""
        return f"key 'designs.{self.name}{'.' + sub if sub else ''}'"

    def require_sources(self) -> None:
        """Refuse a design that names nothing to build its windows from."""

    def windows(self, reference: Reference, *, size: int, stride: int,
                annotation: str | Path | None = None) -> pd.DataFrame:
        """The design's windows table (``size`` bp every ``stride`` bp; ``annotation``: the prepared
        ``annotation.gff3``)."""
        raise NotImplementedError


@dataclass(frozen=True)
class RegionDesign(Design):
    """Case and control regions of the reference: a ``regions`` table with a ``group`` column, or
    the promoters / gene bodies of a ``gene_set`` (cases) against all other coding genes."""

    regions: Path | None = None
    gene_set: Path | None = None
    region_type: RegionType = "promoter"
    max_controls: int | None = None
    promoter_upstream: int = 500
    promoter_downstream: int = 0
    seed: int = 0

    kind: ClassVar[DesignKind] = "region"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.region_type not in REGION_TYPES:
            raise InputError(f"region_type must be one of {REGION_TYPES}, got {self.region_type!r}",
                             path=self.source, record=self.key("region_type"))

    def require_sources(self) -> None:
        if not (self.regions or self.gene_set):
            raise InputError("a region design needs 'regions' or 'gene_set'", path=self.source,
                             record=self.key())

    def region_table(self, reference: Reference, annotation: str | Path | None = None) -> pd.DataFrame:
        """The design's regions (:data:`DESIGN_COLUMNS`): the table, else built from the gene set."""
        from genosae.genome.annotation import read_annotation

        self.require_sources()
        if self.regions:
            return read_region_design(self.regions, reference)
        if annotation is None:
            raise InputError("a gene-set design needs the annotation; run `genosae prepare-reference`",
                             path=self.source, record=self.key("gene_set"))
        return region_design_from_genes(
            read_annotation(annotation, reference), self.gene_set, region_type=self.region_type,
            case_label=self.case_label, control_label=self.control_label, max_controls=self.max_controls,
            seed=self.seed, upstream=self.promoter_upstream, downstream=self.promoter_downstream,
            chrom_sizes=reference.chrom_sizes)

    def windows(self, reference: Reference, *, size: int, stride: int,
                annotation: str | Path | None = None) -> pd.DataFrame:
        from genosae.genome.windows import make_windows

        return make_windows(self.region_table(reference, annotation), size=size, stride=stride,
                            chrom_sizes=reference.chrom_sizes)


@dataclass(frozen=True)
class SequenceDesign(Design):
    """Given sequences per group: a table or FASTA (``sequences``) and/or one FASTA per group."""

    sequences: Path | None = None
    fasta_by_group: Mapping[str, Path] | None = None

    kind: ClassVar[DesignKind] = "sequence"

    def require_sources(self) -> None:
        if not (self.sequences or self.fasta_by_group):
            raise InputError("a sequence design needs 'sequences' or 'fasta_by_group'", path=self.source,
                             record=self.key())

    def windows(self, reference: Reference | None = None, *, size: int, stride: int,
                annotation: str | Path | None = None) -> pd.DataFrame:
        from genosae.genome.windows import sequence_windows

        self.require_sources()
        return sequence_windows(read_sequence_design(self.sequences, self.fasta_by_group), size=size,
                                stride=stride)


@dataclass(frozen=True)
class CohortDesign(Design):
    """Samples (VCF or FASTA per sample, a condition, covariates) over a BED of regions; the units
    are samples. ``simulate`` (the config's section) builds both with ``genosae simulate``."""

    samples: Path | None = None
    regions: Path | None = None
    simulate: Mapping[str, Any] | None = None

    kind: ClassVar[DesignKind] = "cohort"
    unit: ClassVar[Unit] = "sample_id"

    def require_sources(self) -> None:
        if not (self.samples or self.simulate):
            raise InputError("a cohort design needs 'samples' or 'simulate'", path=self.source,
                             record=self.key())

    def region_table(self, reference: Reference, annotation: str | Path | None = None) -> pd.DataFrame:
        """The cohort's regions (``region_id, chrom, start, end, strand`` + gene ``name`` when the
        region ids are gene ids of ``annotation``)."""
        from genosae.genome.annotation import read_annotation

        bed = read_annotation(self.regions, reference, fmt="bed")
        regions = pd.DataFrame({"region_id": np.where(bed["name"] != "", bed["name"],
                                                      bed["chrom"] + ":" + bed["start"].astype(str) + "-" +
                                                      bed["end"].astype(str)),
                                "chrom": bed["chrom"], "start": bed["start"], "end": bed["end"],
                                "strand": bed["strand"].replace(".", "+")})
        if annotation is not None and Path(annotation).exists():  # gene names for the reports
            genes = read_annotation(annotation, reference)
            genes = genes[genes["feature"] == "gene"].drop_duplicates("gene_id")
            names = genes.set_index(genes["gene_id"].astype(str))["name"].astype(str)
            regions["name"] = regions["region_id"].map(names).replace("", np.nan).fillna(regions["region_id"])
        return regions

    def windows(self, reference: Reference, *, size: int, stride: int,
                annotation: str | Path | None = None) -> pd.DataFrame:
        from genosae.genome.windows import cohort_windows

        if not self.samples or not self.regions:
            raise InputError("a cohort design needs 'samples' and 'regions' (run `genosae simulate` first "
                             "when they are simulated)", path=self.source, record=self.key())
        return cohort_windows(reference, read_samples(self.samples), self.region_table(reference, annotation),
                              size, stride)


DESIGN_TYPES: dict[str, type[Design]] = {"region": RegionDesign, "sequence": SequenceDesign,
                                         "cohort": CohortDesign}


def design_from_section(section: Mapping[str, Any], name: str = "", *, source: str | Path | None = None,
                        promoter_upstream: int = 500, promoter_downstream: int = 0, seed: int = 0) -> Design:
    """The typed design of one ``designs`` config section, validated against the schema.

    Keys the kind does not read (:data:`KIND_KEYS`) must keep their schema default: a cohort's
    ``gene_set`` is refused rather than ignored. ``promoter_*`` and ``seed`` are the config's
    ``concepts`` and ``seed`` a region design built from a gene set uses.
    """
    from genosae.config import fill_design_defaults, load_schema

    schema = load_schema()
    src = None if source is None else str(source)
    d = fill_design_defaults(copy.deepcopy({k: v for k, v in section.items() if k != "name"}),
                             name or "<design>", source=src, schema=schema)
    cls = DESIGN_TYPES[d["kind"]]
    defaults = schema["properties"]["designs"]["additionalProperties"]["properties"]
    others = sorted({k for keys in KIND_KEYS.values() for k in keys} - set(KIND_KEYS[cls.kind]))
    stray = [k for k in others if d.get(k) != defaults[k].get("default")]
    if stray:
        raise InputError(f"{', '.join(stray)} do(es) not apply to a {cls.kind} design; remove the key(s)",
                         path=src, record=f"key 'designs.{name}'")
    common = dict(name=name, case_label=str(d["case_label"]), control_label=str(d["control_label"]), source=src)
    if cls is RegionDesign:
        return RegionDesign(**common, regions=_path(d["regions"]), gene_set=_path(d["gene_set"]),
                            region_type=d["region_type"], max_controls=d["max_controls"],
                            promoter_upstream=int(promoter_upstream),
                            promoter_downstream=int(promoter_downstream), seed=int(seed))
    if cls is SequenceDesign:
        fbg = d["fasta_by_group"]
        return SequenceDesign(**common, sequences=_path(d["sequences"]),
                              fasta_by_group={str(g): Path(f) for g, f in fbg.items()} if fbg else None)
    return CohortDesign(**common, samples=_path(d["samples"]), regions=_path(d["regions"]),
                        simulate=dict(d["simulate"]) if d["simulate"] else None)


def design_from_config(config: Mapping[str, Any], name: str, *, source: str | Path | None = None) -> Design:
    """The design ``name`` of a validated config, typed (:func:`design_from_section`)."""
    designs = config.get("designs") or {}
    if name not in designs:
        raise InputError(f"no design '{name}' in the config (designs: {', '.join(designs) or 'none'})",
                         path=source, record="designs")
    concepts = config.get("concepts") or {}
    return design_from_section(designs[name], name, source=source,
                               promoter_upstream=concepts.get("promoter_upstream", 500),
                               promoter_downstream=concepts.get("promoter_downstream", 0),
                               seed=config.get("seed", 0))


def as_design(design: Design | Mapping[str, Any]) -> Design:
    """``design`` typed: a :class:`Design` as it is, a config section (``kind`` + keys, optional
    ``name``) through :func:`design_from_section`."""
    if isinstance(design, Design):
        return design
    return design_from_section(design, str(design.get("name", "")))


def design_windows(config: Mapping[str, Any], name: str, reference_dir: str | Path) -> pd.DataFrame:
    """Windows of the design ``name`` (``genosae windows --design``) on a prepared reference folder
    (``genome.fa``, ``annotation.gff3``): ``windows.size`` bp every ``windows.stride`` bp."""
    design = design_from_config(config, name)
    reference_dir = Path(reference_dir)
    reference = Reference.open(reference_dir / "genome.fa", config["reference"].get("chrom_aliases") or {})
    gff = reference_dir / "annotation.gff3"
    return design.windows(reference, size=config["windows"]["size"], stride=config["windows"]["stride"],
                          annotation=gff if gff.exists() else None)
