"""Genome-browser output: annotate any sequence with SAE features as bigWig/bedGraph tracks, feature
elements (BED), a per-sequence feature table and an IGV session / UCSC trackDb.

Public API
----------
- :func:`annotate` (``genosae annotate``), :func:`annotate_sequences` (the streaming engine)
- :func:`variant_effect` (``genosae variant-effect``), :func:`score_variants`, :func:`effect_tables`,
  :func:`variant_alleles`
- :class:`FeatureRun`, :func:`open_feature_run`, :func:`feature_run_paths`: a finished run's model, SAE, catalogue
- :class:`TrackInput`, :func:`parse_region`, :func:`read_bed_inputs`, :func:`read_fasta_inputs`
- :func:`window_layout`, :func:`select_features`, :func:`element_thresholds`, :func:`per_base_codes` (each base's token code)
- :class:`TrackWriter`, :class:`TrackSpec`, :func:`write_igv_session`, :func:`write_trackdb`
"""

from genosae.tracks.annotate import (
    ELEMENT_COLUMNS,
    SUMMARY_COLUMNS,
    FeatureRun,
    TrackInput,
    annotate,
    annotate_sequences,
    base_token_rows,
    element_thresholds,
    feature_run_paths,
    open_feature_run,
    parse_region,
    per_base_codes,
    read_bed_inputs,
    read_fasta_inputs,
    select_features,
    window_layout,
)
from genosae.tracks.variant_effect import (
    VariantScores,
    effect_tables,
    score_variants,
    variant_alleles,
    variant_effect,
)
from genosae.tracks.writers import (
    TrackSpec,
    TrackWriter,
    run_length,
    write_igv_session,
    write_trackdb,
)

__all__ = [
    "ELEMENT_COLUMNS",
    "SUMMARY_COLUMNS",
    "FeatureRun",
    "TrackInput",
    "TrackSpec",
    "TrackWriter",
    "VariantScores",
    "annotate",
    "annotate_sequences",
    "base_token_rows",
    "effect_tables",
    "element_thresholds",
    "feature_run_paths",
    "open_feature_run",
    "parse_region",
    "per_base_codes",
    "read_bed_inputs",
    "read_fasta_inputs",
    "run_length",
    "score_variants",
    "select_features",
    "variant_alleles",
    "variant_effect",
    "window_layout",
    "write_igv_session",
    "write_trackdb",
]
