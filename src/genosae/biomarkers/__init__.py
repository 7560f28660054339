"""Case/control biomarker discovery on SAE feature profiles.

``profiles`` (per-region/sample AnnData), ``stats`` (per-feature tests), ``calibration``
(permutation null, cross-validated classifier), ``baselines`` (k-mers, linear probe), ``tables``
(biomarkers.csv / biomarker_loci.csv), ``simulate`` (cohorts with a planted motif), ``inputs``
(loading a design's files), ``pipeline`` (one run).
"""

from genosae.biomarkers.baselines import (
    compare_methods,
    kmer_baseline,
    kmer_counts,
    kmer_profiles,
    linear_probe,
    mean_embeddings,
)
from genosae.biomarkers.calibration import (
    ClassifierResult,
    PermutationResult,
    cv_classifier,
    permutation_null,
)
from genosae.biomarkers.inputs import (
    BiomarkerInputs,
    load_biomarker_inputs,
    read_activations,
    read_windows,
)
from genosae.biomarkers.pipeline import (
    BiomarkerRun,
    design_profiles,
    run_biomarkers,
    run_design,
    write_run,
)
from genosae.biomarkers.profiles import (
    LocusProfiles,
    locus_profiles,
    read_profiles,
    region_profiles,
    write_profiles,
)
from genosae.biomarkers.simulate import (
    SimulatedCohort,
    SyntheticActivations,
    candidate_promoters,
    resolve_motif,
    simulate_cohort,
    simulate_design,
    synthetic_activations,
)
from genosae.biomarkers.stats import case_control_masks, rank_features, test_features
from genosae.biomarkers.tables import biomarker_loci, biomarker_table

__all__ = [
    "BiomarkerInputs",
    "BiomarkerRun",
    "ClassifierResult",
    "LocusProfiles",
    "PermutationResult",
    "SimulatedCohort",
    "SyntheticActivations",
    "biomarker_loci",
    "biomarker_table",
    "candidate_promoters",
    "case_control_masks",
    "compare_methods",
    "cv_classifier",
    "design_profiles",
    "kmer_baseline",
    "kmer_counts",
    "kmer_profiles",
    "linear_probe",
    "load_biomarker_inputs",
    "locus_profiles",
    "mean_embeddings",
    "permutation_null",
    "rank_features",
    "read_activations",
    "read_profiles",
    "read_windows",
    "region_profiles",
    "resolve_motif",
    "run_biomarkers",
    "run_design",
    "simulate_cohort",
    "simulate_design",
    "synthetic_activations",
    "test_features",
    "write_profiles",
    "write_run",
]
