"""The Snakemake workflow: lint, SLURM planning, and a tiny real run that reruns as a no-op."""

from __future__ import annotations

import re

import pandas as pd
import yaml

from .conftest import ROOT, run_snakemake, tiny_config


def test_lint_is_clean(tmp_path):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(tiny_config(tmp_path)))
    proc = run_snakemake(tmp_path, "--lint", check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_slurm_profile_plans_gpu_jobs(tmp_path):
    cfg = tiny_config(tmp_path)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(tmp_path, "--profile", str(ROOT / "workflow" / "profiles" / "slurm"), "--dry-run",
                         "--printshellcmds")
    out = proc.stdout + proc.stderr
    assert "embed_part" in out and "train_sae" in out
    for rule in ("embed_part", "train_sae"):
        block = out[out.index(f"rule {rule}:"):][:1500]
        assert re.search(r"gpu=1", block), block


def test_bad_config_stops_before_running(tmp_path):
    cfg = tiny_config(tmp_path)
    cfg["sae"]["k"] = "lots"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(tmp_path, "--cores", "1", "--dry-run", check=False)
    assert proc.returncode != 0
    assert "sae" in (proc.stdout + proc.stderr)


def test_tiny_run_produces_every_output_and_reruns_as_noop(tiny_run):
    out = tiny_run / "results"
    for design in ("promoters", "cohort"):
        bio = pd.read_csv(out / "biomarkers" / design / "biomarkers.csv")
        assert len(bio) > 0 and {"feature", "p", "q", "auroc"} <= set(bio.columns)
        assert (out / "biomarkers" / design / "report.html").stat().st_size > 1000
        assert (out / "biomarkers" / design / "profiles.h5ad").exists()
    loci = pd.read_csv(out / "biomarkers" / "cohort" / "locus_summary.csv")
    n_regions = pd.read_csv(tiny_run / "results" / "simulate" / "cohort" / "regions.bed", sep="\t",
                            header=None).shape[0]
    assert len(loci) == n_regions and loci["locus_rank"].tolist() == list(range(1, n_regions + 1))
    variants = pd.read_csv(out / "biomarkers" / "cohort" / "locus_variants.csv")
    truth = pd.read_csv(tiny_run / "results" / "simulate" / "cohort" / "truth.tsv", sep="\t")
    # every planted promoter shows its motif SNVs as variants carried by cases only
    enriched = variants[(variants["freq_control"] == 0) & (variants["freq_case"] > 0)]
    assert set(truth.loc[truth["n_snvs"] > 0, "region_id"]) <= set(enriched["region_id"])
    catalog = pd.read_csv(out / "features" / "feature_catalog.csv")
    assert len(catalog) > 0
    assert (out / "sae" / "seed0" / "eval_metrics.json").exists()
    assert any((out / "logs").rglob("*.log"))
    assert any((out / "benchmarks").rglob("*.tsv"))
    again = run_snakemake(tiny_run, "--cores", "1", "--dry-run")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_notebook_runs_on_the_tiny_run(tiny_run):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "notebooks" / "explore_results.ipynb", as_version=4)
    import os

    os.environ["GENOSAE_RESULTS"] = str(tiny_run / "results")
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    finally:
        os.environ.pop("GENOSAE_RESULTS", None)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any(o.get("output_type") == "display_data" for o in outputs)  # the plots were drawn
