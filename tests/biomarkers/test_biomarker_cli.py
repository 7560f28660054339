"""`genosae simulate`, `genosae profiles`, `genosae biomarkers` and `genosae report` on tiny inputs."""

import anndata
import pandas as pd
import pytest
import yaml

from genosae.cli import main


@pytest.fixture
def run_dir(cohort, tmp_path):
    FeatureActs = pytest.importorskip("genosae.features.activations").FeatureActs
    acts = FeatureActs(cohort.codes, cohort.tokens, cohort.feature_names)
    acts.save(tmp_path / "acts")
    cohort.windows.to_csv(tmp_path / "w.windows.tsv", sep="\t", index=False)
    cohort.samples.to_csv(tmp_path / "samples.tsv", sep="\t", index=False)
    pd.DataFrame({"feature": cohort.feature_names, "label": "x", "best_concept": "",
                  "f1": 0.0}).to_csv(tmp_path / "cat.csv", index=False)
    cfg = {"designs": {"toy": {"kind": "cohort", "samples": str(tmp_path / "samples.tsv")}},
           "biomarkers": {"permutations": 20, "cv_folds": 3, "kmer_k": 3}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path


def test_biomarkers_and_report_commands(run_dir, cohort):
    d = run_dir
    common = ["--config", str(d / "c.yaml"), "--design", "toy", "--acts", str(d / "acts"),
              "--windows", str(d / "w.windows.tsv"), "--catalog", str(d / "cat.csv")]
    assert main(["profiles", *common, "--out", str(d / "p.h5ad")]) == 0
    ad = anndata.read_h5ad(d / "p.h5ad")
    assert ad.n_obs == 17 and "age" in ad.obs.columns
    assert main(["biomarkers", *common, "--out", str(d / "bm")]) == 0
    table = pd.read_csv(d / "bm" / "biomarkers.csv")
    assert table.loc[0, "feature"] == cohort.planted_feature
    # the same run from per-window aggregates (what the workflow passes) gives the same table
    WindowActs = pytest.importorskip("genosae.features.activations").WindowActs
    WindowActs.from_codes(cohort.codes, cohort.tokens, len(cohort.windows),
                          feature_names=cohort.feature_names).save(d / "wacts")
    common_w = [*common[:5], str(d / "wacts"), *common[6:]]
    assert main(["biomarkers", *common_w, "--out", str(d / "bm_w")]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(d / "bm_w" / "biomarkers.csv"), table)
    (d / "metrics.json").write_text('{"fvu": 0.1, "l0": 32}')
    assert main(["report", "--config", str(d / "c.yaml"), "--design", "toy", "--biomarkers-dir",
                 str(d / "bm"), "--sae-metrics", str(d / "metrics.json"),
                 "--out", str(d / "bm" / "report.html")]) == 0
    html = (d / "bm" / "report.html").read_text()
    assert "data:image/png;base64," in html and "feature_f7.html" in html and "fvu" in html


def test_cli_errors_are_one_line(run_dir, capsys):
    d = run_dir
    rc = main(["biomarkers", "--config", str(d / "c.yaml"), "--design", "nope", "--acts",
               str(d / "acts"), "--windows", str(d / "w.windows.tsv"), "--out", str(d / "x")])
    assert rc == 2 and "no design 'nope'" in capsys.readouterr().err
    rc = main(["biomarkers", "--config", str(d / "c.yaml"), "--design", "toy", "--acts", str(d),
               "--windows", str(d / "w.windows.tsv"), "--out", str(d / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and "not an activations folder" in err and "window-acts" in err


def test_simulate_command(tmp_path, yeast_reference):
    cfg = {"designs": {"cohort": {"kind": "cohort", "simulate": {"n_cases": 3, "n_controls": 2,
                                                                   "n_genes": 3}}}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["simulate", "--config", str(tmp_path / "c.yaml"), "--design", "cohort",
                 "--reference-dir", str(yeast_reference.fasta.parent), "--out", str(tmp_path / "sim")]) == 0
    truth = pd.read_csv(tmp_path / "sim" / "truth.tsv", sep="\t")
    assert len(truth) == 3 and truth["motif"].iloc[0] == "ATTACCCGG"
