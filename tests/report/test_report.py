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
