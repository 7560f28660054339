"""Case/control biomarker discovery on SAE feature profiles.

``profiles`` (per-region/sample AnnData), ``stats`` (per-feature tests), ``calibration``
(permutation null, cross-validated classifier), ``baselines`` (k-mers, linear probe), ``tables``
(biomarkers.csv / biomarker_loci.csv), ``simulate`` (cohorts with a planted motif), ``pipeline``.
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
from genosae.biomarkers.pipeline import BiomarkerRun, run_biomarkers, write_run
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
    resolve_motif,
    simulate_cohort,
    synthetic_activations,
)
from genosae.biomarkers.stats import rank_features, test_features
from genosae.biomarkers.tables import biomarker_loci, biomarker_table

__all__ = [
    "BiomarkerRun",
    "ClassifierResult",
    "LocusProfiles",
    "PermutationResult",
    "SimulatedCohort",
    "SyntheticActivations",
    "biomarker_loci",
    "biomarker_table",
    "compare_methods",
    "cv_classifier",
    "kmer_baseline",
    "kmer_counts",
    "kmer_profiles",
    "linear_probe",
    "locus_profiles",
    "mean_embeddings",
    "permutation_null",
    "rank_features",
    "read_profiles",
    "region_profiles",
    "resolve_motif",
    "run_biomarkers",
    "simulate_cohort",
    "synthetic_activations",
    "test_features",
    "write_profiles",
    "write_run",
]
