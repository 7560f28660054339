"""Feature interpretation: sparse activations, concept alignment, motifs/logos, catalogue, dashboards."""

from genosae.features.activations import (
    FeatureActs,
    calibration_windows,
    feature_activations,
    neuron_activations,
    random_direction_activations,
    window_split,
)
from genosae.features.alignment import (
    AlignmentCounts,
    align_concepts,
    align_store,
    best_per_concept,
    best_per_feature,
    token_concepts,
    trivial_f1,
)
from genosae.features.catalog import (
    baseline_summary,
    build_catalog,
    match_saes,
    motif_labels,
    strand_alignment,
    window_feature_matrix,
    write_feature_anndata,
)
from genosae.features.dashboards import write_dashboards
from genosae.features.motif_capture import motif_capture, motif_sites
from genosae.features.motifs import (
    NamingParams,
    codon_preference,
    feature_pwms,
    feature_queries,
    logo_png,
    match_motifs,
    name_features,
    null_queries,
    pwm_from_sequences,
    top_sites,
)
from genosae.features.pipeline import run_features

__all__ = [
    "AlignmentCounts",
    "FeatureActs",
    "NamingParams",
    "align_concepts",
    "align_store",
    "baseline_summary",
    "best_per_concept",
    "best_per_feature",
    "build_catalog",
    "calibration_windows",
    "codon_preference",
    "feature_activations",
    "feature_pwms",
    "feature_queries",
    "logo_png",
    "match_motifs",
    "match_saes",
    "motif_capture",
    "motif_labels",
    "motif_sites",
    "name_features",
    "neuron_activations",
    "null_queries",
    "pwm_from_sequences",
    "random_direction_activations",
    "run_features",
    "strand_alignment",
    "token_concepts",
    "top_sites",
    "trivial_f1",
    "window_feature_matrix",
    "window_split",
    "write_dashboards",
    "write_feature_anndata",
]
