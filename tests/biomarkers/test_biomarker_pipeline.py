"""End to end on synthetic activations: the planted feature and loci are recovered."""

import json

import numpy as np
import pandas as pd
import pytest

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
    # calibration: under permuted labels the planted feature is null too; the figure written is
    # the share of permutations with any BH rejection, with its interval, and it is consistent
    perm = run.permutation
    assert perm.n_tested == 24 and perm.rejections.shape == (50,)
    assert perm.familywise_ci[0] <= 0.05  # calibrated: not clearly above α
    assert perm.mean_rejections < (run.stats["q"] <= 0.05).sum()  # the real labels find more
    paths = write_run(run, tmp_path / "out")
    assert all(p.stat().st_size > 0 for p in paths.values())
    cal = json.loads(paths["calibration"].read_text())
    assert cal["n_permutations"] == 50 and "observed_fpr" not in cal
    rej = np.array(cal["rejections_per_permutation"])
    assert cal["familywise_rate"] == pytest.approx((rej > 0).mean())
    assert cal["mean_rejections"] == pytest.approx(rej.mean())
    assert cal["familywise_ci_low"] <= cal["familywise_rate"] <= cal["familywise_ci_high"]
    # 8 vs 8 samples: features without ties get the exact Mann-Whitney p, permuted as observed
    assert 0 < cal["n_exact_features"] <= 24
    clf = json.loads(paths["classifier"].read_text())
    from sklearn.metrics import roc_auc_score

    y = (run.adata.obs["condition"] == "case").to_numpy()
    assert clf["auroc"] == pytest.approx(roc_auc_score(y, clf["oof_scores"]))
    base = run.baselines.set_index("method")
    assert base.loc["sae_features", "cv_auroc"] == pytest.approx(clf["auroc"])
    assert base.loc["sae_features", "best_feature"] == cohort.planted_feature
    assert base.loc["kmer_k3", "n_features"] == 64
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
    lo, hi = run.permutation.familywise_ci
    assert lo <= 0.05 and lo <= run.permutation.familywise_rate <= hi


def test_typed_design_and_its_config_section_give_the_same_run(cohort):
    from genosae.genome.designs import CohortDesign

    kw = dict(params={**PARAMS, "permutations": 0}, feature_names=cohort.feature_names)
    typed = run_biomarkers(cohort.codes, cohort.tokens, cohort.windows, design=CohortDesign(name="toy"), **kw)
    plain = run_biomarkers(cohort.codes, cohort.tokens, cohort.windows, design=COHORT, **kw)
    pd.testing.assert_frame_equal(typed.biomarkers, plain.biomarkers)
    assert typed.locus_tests is not None and typed.design_summary["unit"] == "sample_id"
    assert typed.design_summary["kind"] == "cohort" and typed.design_summary["design"] == "toy"


def test_known_motif_baseline_finds_a_motif_planted_at_one_locus_in_cases(cohort, tmp_path):
    """RAP1's site written into the cases' R03 windows: the per-locus Fisher test finds it at R03 only,
    the sample-level test too, it enters the baselines and its files are written."""
    from genosae.genome.motifs import Motif

    site = "ACACCCATACAT"
    pwm = np.full((len(site), 4), 0.01)
    pwm[np.arange(len(site)), ["ACGT".index(b) for b in site]] = 0.97
    other = np.full((8, 4), 0.01)
    other[np.arange(8), ["ACGT".index(b) for b in "TTACCCGG"]] = 0.97
    motifs = [Motif("M1", "RAP1", pwm), Motif("M2", "REB1", other)]
    w = cohort.windows.copy()
    hit = (w["region_id"] == "R03") & (w["condition"] == "case")
    w.loc[hit, "sequence"] = [s[:5] + site + s[5 + len(site):] for s in w.loc[hit, "sequence"]]
    run = run_biomarkers(cohort.codes, cohort.tokens, w, design=COHORT, params={**PARAMS, "permutations": 0},
                         feature_names=cohort.feature_names, obs=cohort.samples.set_index("sample_id"),
                         motifs=motifs)
    km = run.known_motifs
    r03 = km[(km["group"] == "R03") & (km["motif_id"] == "M1")].iloc[0]
    assert r03["n_case_with"] == r03["n_case"] and r03["n_control_with"] == 0 and r03["fisher_q"] < 0.05
    # the only other hits: REB1 at the loci where the simulator planted its REB1 core in cases
    others = km[(km["group"] != "R03") & (km["group"] != "") & (km["fisher_q"] <= 0.05)]
    assert set(others["motif_id"]) <= {"M2"} and set(others["group"]) <= set(cohort.planted_regions)
    assert (km[(km["motif_id"] == "M1") & (km["group"] != "R03") & (km["group"] != "")]["fisher_q"] > 0.05).all()
    unit = km[(km["group"] == "") & (km["motif_id"] == "M1")].iloc[0]
    assert unit["fisher_q"] < 0.05 and unit["direction"] == "case"
    base = run.baselines.set_index("method").loc["known_motifs_fisher"]
    assert base["best_feature"] == "RAP1" and base["n_significant"] >= 1
    s = run.design_summary["known_motifs"]
    assert s["motifs_significant"][0] == "RAP1" and "RAP1" in s["line_found"]
    paths = write_run(run, tmp_path / "out")
    back = pd.read_csv(paths["known_motifs"], keep_default_na=False)
    assert len(back) == len(km) and set(back["group"]) >= {"", "R03"}
    assert paths["known_motif_biomarkers"].exists()
