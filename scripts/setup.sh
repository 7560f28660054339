#!/usr/bin/env bash
# Install genosae and its dependencies into the current Python environment.
# Puts the CPU build of torch in place when no torch is installed (GPU users: install your CUDA torch first).
set -euo pipefail
PY="${PYTHON:-python3}"
if ! "$PY" -c "import torch" 2>/dev/null; then
  echo "[setup] no torch found: installing the CPU build torch==2.13.0"
  "$PY" -m pip install --quiet "torch==2.13.0"
fi
"$PY" -m pip install --quiet -e ".[dev]"
"$PY" -c "import genosae, torch; print(f'[setup] genosae {genosae.__version__}, torch {torch.__version__}')"
