"""`genosae summarize`: the Markdown headline numbers state only claims that passed their test."""

import json

import numpy as np
import pandas as pd

from genosae.biomarkers import run_biomarkers, synthetic_activations, write_run
from genosae.summary import summarize_run


def test_summary_shows_only_tested_names_and_the_familywise_figure(tmp_path):
    c = synthetic_activations(seed=1)
    catalog = pd.DataFrame({
        "feature": ["f7", "f3", "f5"], "label": ["planted", "x", "y"],
        "best_concept": ["promoter", "intron", "CDS"], "f1": [0.8, 0.4, 0.6],
        "captured": [True, False, False],
        "best_motif": ["REB1", "GAL4", "PPR1"], "motif_q": [0.001, 0.3, 0.2]})
    run = run_biomarkers(c.codes, c.tokens, c.windows,
                         design={"kind": "cohort", "case_label": "case", "control_label": "control"},
                         params={"permutations": 40, "cv_folds": 3, "kmer_k": 2, "covariates": []},
                         feature_names=c.feature_names, catalog=catalog)
    bio = run.biomarkers.set_index("feature")
    # the catalogue's untested names never reach the biomarker table
    assert bio.loc["f7", "best_concept"] == "promoter" and bio.loc["f7", "concept_f1"] == 0.8
    assert bio.loc["f7", "best_motif"] == "REB1" and bio.loc["f7", "motif_q"] == 0.001
    assert bio.loc["f3", "best_concept"] == "" and np.isnan(bio.loc["f3", "concept_f1"])
    assert bio.loc["f3", "best_motif"] == "" and np.isnan(bio.loc["f3", "motif_q"])
    assert "motif_score" not in run.biomarkers.columns
    res = tmp_path / "results"
    write_run(run, res / "biomarkers" / "toy")
    (res / "sae" / "seed0").mkdir(parents=True)
    (res / "sae" / "seed0" / "eval_metrics.json").write_text(json.dumps(
        {"architecture": "topk", "d_sae": 24, "fvu": 0.1, "l0": 8.0, "dead_frac": 0.0, "dense_frac": 0.0,
         "frac_loss_recovered": 0.9, "frac_loss_recovered_mean_abl": 0.8}))
    (res / "features").mkdir()
    pd.DataFrame({"concept": ["promoter"], "prevalence": [0.1], "trivial_f1": [0.18],
                  "best_sae_f1": [0.8], "best_sae_feature": ["f7"], "best_neuron_f1": [0.5],
                  "best_random_f1": [0.2]}).to_csv(res / "features" / "baseline_summary.csv", index=False)
    catalog.assign(frequency=0.1).to_csv(res / "features" / "feature_catalog.csv", index=False)
    text = summarize_run(res)
    top = next(line for line in text.splitlines() if line.startswith("| 1 | f7 |"))
    assert "promoter (0.80)" in top and "REB1 (q 0.001)" in top
    assert "GAL4" not in text and "intron" not in text and "PPR1" not in text
    cal = run.permutation.summary()
    line = next(line for line in text.splitlines() if line.startswith("Permutation calibration"))
    assert (f"{cal['n_permutations_with_rejection']} of 40 permuted labellings" in line
            and f"family-wise rate {cal['familywise_rate']:.3f}" in line
            and f"{cal['familywise_ci_low']:.3f}–{cal['familywise_ci_high']:.3f}" in line)
    assert "FPR" not in text
