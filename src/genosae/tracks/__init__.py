"""Genome-browser output: annotate any sequence with SAE features as bigWig/bedGraph tracks, feature
elements (BED), a per-sequence feature table and an IGV session / UCSC trackDb.

Public API
----------
- :func:`annotate` (``genosae annotate``), :func:`annotate_sequences` (the streaming engine)
- :class:`TrackInput`, :func:`parse_region`, :func:`read_bed_inputs`, :func:`read_fasta_inputs`
- :func:`window_layout`, :func:`select_features`, :func:`element_thresholds`
- :class:`TrackWriter`, :class:`TrackSpec`, :func:`write_igv_session`, :func:`write_trackdb`
"""

from genosae.tracks.annotate import (
    ELEMENT_COLUMNS,
    SUMMARY_COLUMNS,
    TrackInput,
    annotate,
    annotate_sequences,
    element_thresholds,
    parse_region,
    read_bed_inputs,
    read_fasta_inputs,
    select_features,
    window_layout,
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
    "TrackInput",
    "TrackSpec",
    "TrackWriter",
    "annotate",
    "annotate_sequences",
    "element_thresholds",
    "parse_region",
    "read_bed_inputs",
    "read_fasta_inputs",
    "run_length",
    "select_features",
    "window_layout",
    "write_igv_session",
    "write_trackdb",
]
