"""End to end on synthetic activations: the planted feature and loci are recovered."""

import json

import numpy as np
import pandas as pd

from genosae.biomarkers import region_profiles, run_biomarkers, synthetic_activations, write_run

PARAMS = {"permutations": 50, "alpha": 0.05, "kmer_k": 3, "cv_folds": 4,
          "covariates": ["age", "gc_fraction"]}
COHORT = {"kind": "cohort", "case_label": "case", "control_label": "control", "name": "toy"}


def test_cohort_recovers_planted_feature_and_loci(cohort, tmp_path):
    emb = pd.DataFrame(np.random.default_rng(0).normal(size=(17, 5)),
                       index=cohort.samples["sample_id"])
    run = run_biomarkers(cohort.codes, cohort.tokens, cohort.windows, design=COHORT, params=PARAMS,
                         feature_names=cohort.feature_names, obs=cohort.samples.set_index("sample_id"),
                         embeddings=emb, catalog=pd.DataFrame({"feature": [7], "label": ["planted"]}))
    top = run.biomarkers.iloc[0]
    assert top["feature"] == cohort.planted_feature and top["label"] == "planted"
    assert top["q"] < 0.05 and top["q_adjusted"] < 0.05 and top["direction"] == "up"
    assert top["empirical_p"] <= 1 / 51 + 1e-12
    assert (run.biomarkers["q"].iloc[1:] > 0.05).all()
    loci = run.loci[run.loci["feature"] == cohort.planted_feature].sort_values("locus_rank")
    assert set(loci["region_id"].head(3)) == set(cohort.planted_regions)
    assert "chrI:" in top["top_loci"] and "GENE" in top["top_loci"]
    assert run.design_summary["covariates_used"] == ["age"]
    assert set(run.baselines["method"]) == {"sae_features", "kmer_k3", "linear_probe_l2",
                                           "linear_probe_l1"}
    assert run.permutation.observed_fpr <= 0.05
    paths = write_run(run, tmp_path / "out")
    assert all(p.exists() for p in paths.values())
    assert json.loads(paths["calibration"].read_text())["n_permutations"] == 50
    back = pd.read_csv(paths["biomarkers"])
    assert back.loc[0, "feature"] == cohort.planted_feature


def test_region_design_top_loci_are_planted():
    c = synthetic_activations(n_case=1, n_control=0, n_regions=24, n_planted=6, reference=False, seed=2)
    w = c.windows.copy()
    w["condition"] = np.where(w["region_id"].isin(c.planted_regions), "case", "control")
    design = {"kind": "region", "case_label": "case", "control_label": "control"}
    run = run_biomarkers(c.codes, c.tokens, w, design=design, params=PARAMS,
                         feature_names=c.feature_names)
    assert run.biomarkers.iloc[0]["feature"] == c.planted_feature
    assert run.biomarkers.iloc[0]["q"] < 0.05
    loci = run.loci[run.loci["feature"] == c.planted_feature]
    assert set(loci["region_id"].head(6)) == set(c.planted_regions)
    ad = region_profiles(c.codes, c.tokens, w)
    assert {"gc_fraction", "cpg_ratio", "length"} <= set(ad.obs.columns)


def test_null_cohort_finds_nothing():
    c = synthetic_activations(effect=0.0, planted_tokens=0, seed=5)
    run = run_biomarkers(c.codes, c.tokens, c.windows, design=COHORT, params=PARAMS,
                         feature_names=c.feature_names)
    assert (run.biomarkers["q"] > 0.05).all()
