#!/usr/bin/env bash
# Install genosae with everything the demo and the test suite need, from nothing but Python >= 3.10.
#
#   VENV=.venv (default): creates that virtual environment if missing and installs into it.
#   VENV= (empty) PYTHON=python3: installs into that interpreter's environment instead.
#
# Puts the CPU build of torch in place when no torch is installed (GPU users: install your CUDA torch
# into the environment first; an existing torch is kept). Installs the package editable with the dev
# extras (pytest, notebook kernel, SAELens, the SLURM executor plugin, ...). As root on Debian/Ubuntu it
# also installs slurm-wlm and munge for the live-SLURM workflow test (GENOSAE_SKIP_SLURM=1 skips that) and
# Debian's chromium for the headless-browser report test (GENOSAE_SKIP_BROWSER=1 skips that).
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_PYTHON="${BASE_PYTHON:-python3}"
VENV="${VENV-.venv}"
if [[ -n "$VENV" ]]; then
  if [[ ! -x "$VENV/bin/python" ]]; then
    echo "[setup] creating virtual environment $VENV"
    "$BASE_PYTHON" -m venv "$VENV"
  fi
  PY="$VENV/bin/python"
else
  PY="${PYTHON:-python3}"
fi

"$PY" - <<'EOF'
import sys
if sys.version_info < (3, 10):
    sys.exit(f"[setup] genosae needs Python >= 3.10, this is {sys.version.split()[0]}")
EOF
"$PY" -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24"
if ! "$PY" -c "import torch" 2>/dev/null; then
  echo "[setup] no torch found: installing the CPU build torch==2.13.0"
  "$PY" -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
fi
"$PY" -m pip install --quiet --disable-pip-version-check -e ".[dev]"
"$PY" -c "import genosae, torch, snakemake_executor_plugin_slurm; print(f'[setup] genosae {genosae.__version__}, torch {torch.__version__}, python {__import__(\"sys\").executable}')"

if [[ "${GENOSAE_SKIP_BROWSER:-0}" != 1 ]] && [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null \
    && ! command -v chromium >/dev/null; then
  # headless Chromium renders report.html and the dashboards in tests/report/test_browser.py
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "[setup] chromium not installed: the headless-browser test will skip"
fi
if [[ "${GENOSAE_SKIP_SLURM:-0}" != 1 ]]; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    bash scripts/slurm_test_cluster.sh install || echo "[setup] slurm-wlm/munge not installed: the live-SLURM test will skip"
  elif ! command -v slurmctld >/dev/null; then
    echo "[setup] not root: slurm-wlm/munge not installed, the live-SLURM test will skip"
  fi
fi
