"""What a biomarker run reads: activations, windows, catalogue, sample sheet and VCF variants.

:func:`load_biomarker_inputs` is what ``genosae profiles`` / ``genosae biomarkers`` do before any
statistics, as a function a notebook can call: every file is opened and checked once, with an
:class:`~genosae.errors.InputError` naming the file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import scipy.sparse as sp

from genosae._io import read_json
from genosae.errors import InputError
from genosae.features.activations import WINDOW_FORMAT, FeatureActs, WindowActs
from genosae.genome.designs import CohortDesign, Design, design_from_config


@dataclass
class BiomarkerInputs:
    """The loaded inputs of one design's biomarker run.

    Attributes
    ----------
    config
        The validated workflow config.
    design
        The typed design (:func:`~genosae.genome.designs.design_from_config`).
    acts, tokens, feature_names
        Per-window aggregates (``WindowActs``, ``tokens`` None) or token-level codes (CSR) with
        their token table, and the feature names.
    windows
        The windows table the activations index (cohorts: ``condition`` from the sample sheet).
    catalog
        Feature catalogue, or None.
    obs
        Cohorts: the sample sheet indexed by ``sample_id``; else None.
    sequences
        Window sequences fetched from the reference when the table has no ``sequence`` column.
    variants
        Cohorts with VCFs and a reference: variants per locus read from the VCFs
        (:func:`~genosae.biomarkers.loci.vcf_locus_variants`, indels included); else None.
    motifs
        Known motifs for the known-motif enrichment baseline, or None.
    """

    config: dict[str, Any]
    design: Design
    acts: WindowActs | sp.csr_matrix
    tokens: pd.DataFrame | None
    windows: pd.DataFrame
    feature_names: list[str]
    catalog: pd.DataFrame | None = None
    obs: pd.DataFrame | None = None
    sequences: list[str] | None = None
    variants: pd.DataFrame | None = None
    motifs: list[Any] | None = None


def read_activations(folders: Sequence[str | Path]) -> tuple[WindowActs | sp.csr_matrix, pd.DataFrame | None,
                                                              list[str]]:
    """Feature activations from ``genosae window-acts`` (one folder) or ``genosae encode-features``
    (one or more folders, concatenated in order).

    Returns
    -------
    ``(acts, tokens, feature_names)``: ``WindowActs`` and ``None``, or CSR codes and their tokens.
    """
    if not folders:
        raise InputError("give at least one activations folder", record="--acts")
    for folder in folders:
        if not (Path(folder) / "meta.json").is_file():
            raise InputError("not an activations folder (no meta.json); make one with `genosae "
                             "window-acts` (or `genosae encode-features`)", path=folder)
    if read_json(Path(folders[0]) / "meta.json").get("format") == WINDOW_FORMAT:
        if len(folders) > 1:
            raise InputError("give one window-activations folder (one per design)", path=folders[1])
        wa = WindowActs.load(folders[0])
        return wa, None, wa.feature_names
    parts = [FeatureActs.load(p) for p in folders]
    names = parts[0].feature_names
    for p, fa in zip(folders[1:], parts[1:]):
        if fa.feature_names != names:
            raise InputError("feature names differ from the first --acts folder", path=p)
    codes = sp.vstack([fa.codes for fa in parts]).tocsr()
    return codes, pd.concat([fa.tokens for fa in parts], ignore_index=True), names


def read_windows(path: str | Path) -> pd.DataFrame:
    """A windows table (``*.windows.tsv``), ids read as text."""
    path = Path(path)
    if not path.exists():
        raise InputError("windows table not found", path=path)
    return pd.read_csv(path, sep="\t", dtype={"window_id": str, "region_id": str, "sample_id": str})


def load_biomarker_inputs(config: Mapping[str, Any], design: str, *, acts: Sequence[str | Path],
                          windows: str | Path, catalog: str | Path | None = None,
                          samples: str | Path | None = None,
                          reference: str | Path | None = None,
                          motifs: str | Path | None = None) -> BiomarkerInputs:
    """Open and check everything a biomarker run of ``design`` reads.

    Parameters
    ----------
    config
        Validated config (:func:`genosae.config.load_config`).
    design
        Name of a design under ``designs``.
    acts
        Activations folder(s) (:func:`read_activations`).
    windows
        The windows table they index.
    catalog
        ``feature_catalog.csv`` (optional).
    samples
        Cohort sample sheet (default: the design's ``samples``).
    reference
        FASTA for window sequences when the windows table has none, and for VCF variants.
    motifs
        MEME / JASPAR motif file (the prepared ``motifs.meme``) for the known-motif baseline.
    """
    from genosae.genome.reference import Reference

    d = design_from_config(config, design)
    codes, tokens, names = read_activations(list(acts))
    table = read_windows(windows)
    ref = Reference.open(reference) if reference else None
    sequences = None
    if "sequence" not in table.columns and ref is not None:
        sequences = [ref.fetch(r.chrom, int(r.start), int(r.end), getattr(r, "strand", "+"))
                     for r in table.itertuples()]
    cat = None
    if catalog:
        if not Path(catalog).exists():
            raise InputError("feature catalogue not found", path=catalog)
        cat = pd.read_csv(catalog)
    obs = variants = None
    sheet_path = samples or (d.samples if isinstance(d, CohortDesign) else None)
    if isinstance(d, CohortDesign) and sheet_path:
        obs, table = _sample_sheet(sheet_path, table)
        if "vcf" in obs.columns and ref is not None:
            variants = _vcf_variants(sheet_path, table, ref, d)
    known = None
    if motifs:
        from genosae.genome.motifs import read_motif_file

        known = read_motif_file(motifs)
    return BiomarkerInputs(config=dict(config), design=d, acts=codes, tokens=tokens, windows=table,
                           feature_names=names, catalog=cat, obs=obs, sequences=sequences,
                           variants=variants, motifs=known)


def _sample_sheet(path: str | Path, windows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The sheet indexed by sample id; ``windows`` gains the samples' ``condition`` if it has none."""
    if not Path(path).exists():
        raise InputError("sample sheet not found", path=path)
    obs = pd.read_csv(path, sep="\t", dtype={"sample_id": str})
    if "sample_id" not in obs.columns:
        raise InputError("sample sheet lacks 'sample_id'", path=path, record=1)
    obs = obs.set_index("sample_id")
    if "condition" in obs.columns and not ({"condition", "group"} & set(windows.columns)):
        windows = windows.assign(condition=windows["sample_id"].map(obs["condition"]))
    return obs, windows


def _vcf_variants(path: str | Path, windows: pd.DataFrame, reference: Any, design: Design) -> pd.DataFrame:
    """Variants per locus from the samples' VCFs (indels too), over the windows' loci."""
    from genosae.biomarkers.loci import vcf_locus_variants
    from genosae.genome.designs import read_samples

    regions = (windows.assign(region_id=windows["region_id"].astype(str))
               .groupby("region_id", sort=False).agg(chrom=("chrom", "first"), start=("start", "min"),
                                                     end=("end", "max")).reset_index())
    sheet = read_samples(path)  # VCF paths resolved as the windows step resolved them
    sheet = sheet[sheet["sample_id"].astype(str).isin(set(windows["sample_id"].astype(str)))]
    return vcf_locus_variants(sheet, regions, reference, case=design.case_label, control=design.control_label)
