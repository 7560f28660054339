"""The workflow under a live SLURM scheduler (single node on localhost, started by the test).

Runs the tiny workflow with the real ``workflow/profiles/slurm`` profile through
``snakemake-executor-plugin-slurm``, kills one job mid-run, and checks that every job went through
``sbatch``, that the GPU rules asked for a GPU, that the killed job was retried and that the outputs
equal the local run's. Needs root and Debian's ``slurm-wlm``/``munge`` (``scripts/slurm_test_cluster.sh
install``); ``.ci/run`` installs them and sets ``GENOSAE_REQUIRE_SLURM=1`` so that a missing cluster fails
instead of skipping.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time

import pandas as pd
import pytest
import yaml

from .conftest import ROOT, run_snakemake, tiny_config

SCRIPT = ROOT / "scripts" / "slurm_test_cluster.sh"
PROFILE = ROOT / "workflow" / "profiles" / "slurm"
GPU_RULES = {"embed_part", "train_sae", "evaluate_sae", "control_embed", "control_train_sae"}
KILL_RULE = "train_sae"


def _unavailable(reason: str) -> None:
    if os.environ.get("GENOSAE_REQUIRE_SLURM") == "1":
        pytest.fail(f"live SLURM required (GENOSAE_REQUIRE_SLURM=1) but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """SLURM_CONF of a running single-node cluster; daemons stopped afterwards."""
    missing = [b for b in ("slurmctld", "slurmd", "munged", "sbatch", "squeue") if shutil.which(b) is None]
    if missing:
        _unavailable(f"{', '.join(missing)} not installed (as root: scripts/slurm_test_cluster.sh install)")
    if os.geteuid() != 0:
        _unavailable("slurmd must run as root to start a test cluster")
    state = tmp_path_factory.mktemp("genosae-slurm")
    env = {**os.environ, "SLURM_CONF": str(state / "slurm.conf")}
    start = subprocess.run(["bash", str(SCRIPT), "start", str(state)], capture_output=True, text=True, env=env)
    try:
        if start.returncode != 0:
            pytest.fail(f"test cluster did not start:\n{start.stdout}\n{start.stderr}")
        yield env
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(state)], capture_output=True, text=True, env=env)


def _jobs(env: dict) -> pd.DataFrame:
    """Every job the controller remembers (MinJobAge keeps finished ones): id, rule, state, GPU request."""
    out = subprocess.run(
        ["squeue", "--states=all", "--noheader", "-O", "JobID:|,Comment:|,State:|,tres-per-job:|,tres-per-node:"],
        capture_output=True, text=True, env=env, check=True).stdout
    rows = [[f.strip() for f in line.split("|")[:5]] for line in out.splitlines() if line.strip()]
    jobs = pd.DataFrame(rows, columns=["job_id", "comment", "state", "tres_job", "tres_node"])
    jobs["rule"] = jobs["comment"].str.extract(r"^rule_(.+?)(?:_wildcards_.*)?$")[0]
    jobs["gpus"] = (jobs["tres_job"] + " " + jobs["tres_node"]).str.extract(r"gpu:(\d+)")[0].fillna(0).astype(int)
    return jobs


def _kill_first_running(env: dict, rule: str, stop: threading.Event, killed: list[str]) -> None:
    """Cancel the first job of ``rule`` once it has been running a moment (a node failure mid-run)."""
    while not stop.is_set() and not killed:
        jobs = _jobs(env)
        running = jobs[(jobs["rule"] == rule) & (jobs["state"] == "RUNNING")]
        if len(running):
            time.sleep(2)  # let it get into its work
            job_id = running["job_id"].iloc[0]
            subprocess.run(["scancel", "--signal=KILL", "--full", job_id], env=env, check=False)
            subprocess.run(["scancel", job_id], env=env, check=False)
            killed.append(job_id)
            return
        time.sleep(0.5)


def _rules_run(log_text: str) -> set[str]:
    import re

    return set(re.findall(r"^(?:local)?rule (\w+):", log_text, flags=re.M)) - {"all"}


def test_workflow_runs_under_live_slurm(slurm_cluster, tiny_run, tmp_path):
    env = slurm_cluster
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(tiny_config(tmp_path)))
    stop, killed = threading.Event(), []
    watcher = threading.Thread(target=_kill_first_running, args=(env, KILL_RULE, stop, killed), daemon=True)
    watcher.start()
    try:
        proc = run_snakemake(tmp_path, "--profile", str(PROFILE), "--slurm-status-command", "squeue",
                             "--slurm-init-seconds-before-status-checks", "2", check=False, env=env)
    finally:
        stop.set()
        watcher.join(timeout=5)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]

    jobs = _jobs(env)
    submitted = jobs.dropna(subset=["rule"])
    # every rule Snakemake ran went through sbatch (no job ran on the submitting host)
    assert _rules_run(log) and _rules_run(log) <= set(submitted["rule"]), (_rules_run(log), submitted)
    # the GPU rules asked for one GPU each; nothing else asked for any
    for rule, gpus in submitted.groupby("rule")["gpus"]:
        expected = 1 if rule in GPU_RULES else 0
        assert (gpus == expected).all(), (rule, gpus.tolist())
    assert GPU_RULES <= set(submitted["rule"])
    # the job killed mid-run was retried by Snakemake and the retry completed
    assert killed, f"no {KILL_RULE} job was seen running"
    kill_rows = submitted[submitted["rule"] == KILL_RULE]
    assert kill_rows.loc[kill_rows["job_id"] == killed[0], "state"].iloc[0] in {"CANCELLED", "FAILED"}
    assert (kill_rows["state"] == "COMPLETED").any() and len(kill_rows) >= 2, kill_rows

    # the outputs equal the local run's
    local, remote = tiny_run / "results", tmp_path / "results"
    for design in ("promoters", "cohort"):
        a = pd.read_csv(local / "biomarkers" / design / "biomarkers.csv")
        b = pd.read_csv(remote / "biomarkers" / design / "biomarkers.csv")
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-6)
    pd.testing.assert_frame_equal(pd.read_csv(local / "features" / "feature_catalog.csv"),
                                  pd.read_csv(remote / "features" / "feature_catalog.csv"),
                                  check_exact=False, rtol=1e-6)
    ma = json.loads((local / "sae" / "seed0" / "eval_metrics.json").read_text())
    mb = json.loads((remote / "sae" / "seed0" / "eval_metrics.json").read_text())
    assert ma.keys() == mb.keys()
    for key, value in ma.items():
        if isinstance(value, float):
            assert mb[key] == pytest.approx(value, rel=1e-6), key
