"""Feature interpretation: sparse activations, concept alignment, motifs/logos, catalogue, dashboards."""

from genosae.features.activations import (
    FeatureActs,
    feature_activations,
    neuron_activations,
    random_direction_activations,
    window_split,
)
from genosae.features.alignment import (
    align_concepts,
    benjamini_hochberg,
    best_per_concept,
    best_per_feature,
    token_concepts,
    trivial_f1,
)
from genosae.features.catalog import (
    baseline_summary,
    build_catalog,
    match_saes,
    strand_alignment,
    window_feature_matrix,
    write_feature_anndata,
)
from genosae.features.dashboards import write_dashboards
from genosae.features.motifs import (
    codon_preference,
    feature_pwms,
    logo_png,
    match_motifs,
    pwm_from_sequences,
    top_sites,
)
from genosae.features.pipeline import run_features

__all__ = [
    "FeatureActs",
    "align_concepts",
    "baseline_summary",
    "benjamini_hochberg",
    "best_per_concept",
    "best_per_feature",
    "build_catalog",
    "codon_preference",
    "feature_activations",
    "feature_pwms",
    "logo_png",
    "match_motifs",
    "match_saes",
    "neuron_activations",
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
