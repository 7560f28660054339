"""A tiny end-to-end workflow run shared by the workflow and notebook tests (built once per session)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "genosae-yeast-cnn"


def tiny_config(workdir: Path) -> dict:
    """The demo config shrunk to run in a minute or two on 2 cores."""
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg["outdir"] = str(workdir / "results")
    cfg["reference"]["cache_dir"] = str(Path(os.environ["GENOSAE_TEST_CACHE"]) / "yeast")  # tests/conftest.py
    cfg["model"]["path"] = str(MODEL)
    cfg["atlas"]["n_windows"] = 48
    cfg["windows"] = {"size": 256, "stride": 256}
    cfg["embed"]["n_shards"] = 2
    cfg["sae"].update(expansion_factor=2, k=8, batch_size=256, training_tokens=20_000, eval_tokens=2_000)
    cfg["sae"]["sweep"] = {"expansion_factors": [2], "ks": [4, 8], "training_tokens": 5_000}
    cfg["features"]["top_examples"] = 3
    cfg["designs"]["promoters"].update(gene_set=str(ROOT / "config" / "gene_set.txt"), max_controls=20)
    cfg["designs"]["cohort"]["simulate"].update(n_cases=4, n_controls=4, n_genes=3)
    cfg["biomarkers"].update(permutations=10, cv_folds=2)
    return cfg


def run_snakemake(workdir: Path, *args: str, check: bool = True, env: dict | None = None
                  ) -> subprocess.CompletedProcess:
    """Snakemake on ``workdir`` from another directory, with this interpreter's ``bin`` first on PATH
    (the rules call the ``genosae`` command of the environment under test)."""
    env = {**(env or os.environ), "HF_HUB_OFFLINE": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=workdir.parent)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({' '.join(args)}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    if not (MODEL / "config.json").exists():
        pytest.skip("the default model folder has no weights yet")
    workdir = tmp_path_factory.mktemp("workflow")
    (workdir / "config.yaml").write_text(yaml.safe_dump(tiny_config(workdir)))
    run_snakemake(workdir, "--cores", "2")
    return workdir
