"""genosae as a real package: a wheel built from the sources works outside the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_wheel_installs_and_validates_the_demo_config_from_another_directory(tmp_path, yeast_reference):
    # build from a copy of the sources (nothing is written into the repository)
    src = tmp_path / "src-copy"
    shutil.copytree(REPO / "src", src / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path / "dist"), str(src)])
    wheel = next((tmp_path / "dist").glob("genosae-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"genosae/data/config.schema.yaml", "genosae/py.typed"} <= names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "genosae = genosae.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()

    # a clean venv holding only the wheel; the dependencies are read from this environment's
    # site-packages through a path entry, which does not activate this environment's editable genosae
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    py = venv / "bin" / "python"
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(site), str(wheel)])
    (venv / "bin" / "genosae").write_text(f"#!{py}\nimport sys\nfrom genosae.cli import main\nsys.exit(main())\n")
    (venv / "bin" / "genosae").chmod(0o755)
    where = _run([str(py), "-c", "import genosae; print(genosae.__file__)"], cwd="/").stdout.strip()
    assert where.startswith(str(site)), where  # the wheel's copy, not the checkout's

    # the demo config with its inputs given as absolute paths, validated from /
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["outdir"] = str(tmp_path / "results")
    cfg["reference"]["cache_dir"] = str(yeast_reference.fasta.parent)
    cfg["model"]["path"] = str(REPO / "models" / "genosae-yeast-cnn")
    cfg["designs"]["promoters"]["gene_set"] = str(REPO / "config" / "gene_set.txt")
    config = tmp_path / "demo.yaml"
    config.write_text(yaml.safe_dump(cfg))
    env = {"PATH": f"{venv / 'bin'}{os.pathsep}/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    out = _run([str(venv / "bin" / "genosae"), "validate", "--config", str(config)], cwd="/", env=env).stdout
    assert f"config {config}: OK" in out
    assert "16 sequences, 12,071,326 bp" in out and "193 motifs" in out
    assert "design promoters (region): 132 genes matched" in out and "samples produced by `genosae simulate`" in out

    # a bad key still gets one clean line, not a traceback
    cfg["sae"]["k"] = "lots"
    config.write_text(yaml.safe_dump(cfg))
    bad = subprocess.run([str(venv / "bin" / "genosae"), "validate", "--config", str(config)], cwd="/", env=env,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "sae.k" in bad.stderr and "Traceback" not in bad.stderr
