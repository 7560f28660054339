import base64
import re

import pandas as pd

from genosae.biomarkers import run_biomarkers, synthetic_activations
from genosae.report import write_report


def test_write_report_is_self_contained(tmp_path):
    c = synthetic_activations(seed=1)
    run = run_biomarkers(c.codes, c.tokens, c.windows,
                         design={"kind": "cohort", "case_label": "case", "control_label": "control"},
                         params={"permutations": 20, "cv_folds": 3, "kmer_k": 2, "covariates": []},
                         feature_names=c.feature_names)
    paths = write_report(tmp_path, biomarkers=run.biomarkers, loci=run.loci,
                         locus_table=run.locus_table, adata=run.adata,
                         catalog=None, baselines=run.baselines,
                         calibration=run.permutation.summary(), sae_metrics={"l0": 32.0},
                         config={"seed": 0}, design_summary=run.design_summary)
    html = paths["report"].read_text()
    imgs = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(imgs) >= 4  # volcano, loci, baselines, calibration
    assert base64.b64decode(imgs[0])[:4] == b"\x89PNG"
    assert 'href="../../features/dashboards/feature_f7.html"' in html
    assert "src=\"http" not in html and "<script" not in html
    for section in ("Design", "QC", "Volcano", "features without covariates",
                    "features adjusted for covariates", "Loci (variant-aware", "Baselines",
                    "Calibration", "SAE metrics", "Config", "versions"):
        assert section in html
    assert pd.read_csv(paths["biomarkers"]).loc[0, "feature"] == "f7"
    assert len(pd.read_csv(paths["loci"])) > 0
    # the locus table ranks the planted loci first and names their case-enriched variants
    loci_html = html.split("Loci (variant-aware")[1].split("</table>")[0]
    for rid in c.planted_regions:
        assert rid in loci_html
    assert "(case 1.0 / control 0.0)" in loci_html
    # the calibration section states the family-wise figure it measured and what it bounds
    cal = run.permutation.summary()
    section = html.split("Calibration (label permutations)")[1].split("<h2>")[0]
    assert f"family-wise rate {cal['familywise_rate']:.3f}" in section
    assert f"{cal['familywise_ci_low']:.3f}–{cal['familywise_ci_high']:.3f}" in section
    assert "chance of any rejection by α" in section and "false discovery rate" in section
    assert "observed_fpr" not in html and "false-positive rate" not in html
    assert len(re.findall(r"data:image/png", section)) == 1


def test_report_refuses_to_restate_an_old_calibration_figure():
    from genosae.report.html import render_report

    bio = pd.DataFrame({"rank": [1], "feature": ["f1"], "cliffs_delta": [0.1], "p": [0.5], "q": [0.5]})
    html = render_report(biomarkers=bio, calibration={"observed_fpr": 0.001, "alpha": 0.05,
                                                      "n_permutations": 10})
    section = html.split("Calibration (label permutations)")[1].split("<h2>")[0]
    assert "older genosae" in section and "within" not in section


def test_report_shows_feature_trust_beside_the_control(tmp_path):
    import json

    from genosae.report import features_section_inputs, render_report

    d = tmp_path / "features"
    d.mkdir()
    (d / "features.json").write_text(json.dumps({
        "split": {"rule": "chromosome", "n_calibration_windows": 90, "n_heldout_windows": 10},
        "n_candidates": {"sae": 16, "control": 16, "neuron": 8, "random": 16},
        "motif_naming": {"n_named": 3, "n_features": 16, "q_max": 0.01, "expected_false_names": 0.2,
                         "expected_false_names_upper95": 1.1, "flagged_motifs": ["GAL4"], "max_share": 0.05},
        "control": {"motif_naming": {"n_named": 1}}}))
    pd.DataFrame({"concept": ["CDS", "motif:REB1"], "prevalence": [0.7, 0.01], "trivial_f1": [0.8, 0.02],
                  "best_sae_feature": ["f1", "f2"], "best_sae_f1": [0.91, 0.6], "best_control_f1": [0.42, 0.1],
                  "best_neuron_f1": [0.7, 0.2], "best_random_f1": [0.5, 0.1]}).to_csv(d / "baseline_summary.csv", index=False)
    pd.DataFrame({"motif_name": ["REB1"], "n_sites_calibration": [40], "n_sites_heldout": [12], "sae_unit": ["f2"],
                  "sae_f1": [0.6], "control_f1": [0.1], "neuron_f1": [0.2], "random_f1": [0.1],
                  "captured": [True]}).to_csv(d / "motif_capture.csv", index=False)
    bio = pd.DataFrame({"rank": [1], "feature": ["f1"], "q": [0.01], "p": [0.001], "auroc": [0.9],
                        "direction": ["up"], "log2fc": [1.0], "mean_diff": [0.5], "cliffs_delta": [0.8]})
    page = render_report(biomarkers=bio, features=features_section_inputs(d))
    section = page[page.index("How far the feature names can be trusted"):]
    assert "3 of 16 features carry a motif name" in section and "expect 0.2 false names" in section
    assert "GAL4" in section and "Control model: 1 features named" in section
    assert "best_control_f1" in section and "0.42" in section and "motif:REB1" not in section.split("<h3>Motif")[0]
    assert "1 of 1 motifs captured" in section and "candidates: control model SAE" in section


def test_report_shows_the_known_motif_baseline_and_what_the_sae_found(tmp_path):
    from genosae.genome.motifs import Motif

    c = synthetic_activations(seed=1)
    pwm = pd.DataFrame(0.01, index=range(7), columns=list("ACGT")).to_numpy()
    pwm[range(7), ["ACGT".index(b) for b in "TTACCCG"]] = 0.97
    run = run_biomarkers(c.codes, c.tokens, c.windows,
                         design={"kind": "cohort", "case_label": "case", "control_label": "control"},
                         params={"permutations": 0, "cv_folds": 3, "kmer_k": 2, "covariates": []},
                         feature_names=c.feature_names, motifs=[Motif("MA0363.2", "REB1", pwm)])
    paths = write_report(tmp_path, biomarkers=run.biomarkers, loci=run.loci, baselines=run.baselines,
                         design_summary=run.design_summary, known_motifs=run.known_motifs,
                         known_motif_biomarkers=run.known_motif_biomarkers)
    html = paths["report"].read_text()
    section = html.split("Known-motif enrichment")[1].split("<h2>")[0]
    s = run.design_summary["known_motifs"]
    import html as html_lib

    assert html_lib.escape(s["line_found"]) in section and html_lib.escape(s["line_unexplained"]) in section
    assert "REB1" in section and "known_motifs_fisher" in html  # and in the baselines table
    assert "line_found" not in html.split("<h2>Design</h2>")[1].split("<h2>")[0]  # not dumped as a dict
