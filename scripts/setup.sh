#!/usr/bin/env bash
# Create .venv with CPU PyTorch and climgen (editable, with dev + sphere + dask extras).
# Safe to re-run: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.11 python3.12 python3.10 python3; do
    if command -v "$cand" >/dev/null 2>&1; then PY=$cand; break; fi
  done
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip_q() { .venv/bin/python -m pip install -q --disable-pip-version-check "$@" 2>&1 | grep -v '^WARNING: Location' || true; }
# Pinned CPU wheel first: an unpinned torch would pull a multi-GB CUDA build.
.venv/bin/python -c "import torch" 2>/dev/null || pip_q "torch==2.13.0" numpy
.venv/bin/python -c "import torch" || { echo "setup: torch failed to install" >&2; exit 1; }
# torch-harmonics (spherical-harmonic transforms) builds against the torch already installed.
if ! .venv/bin/python -c "import torch_harmonics" 2>/dev/null; then
  pip_q setuptools wheel numpy
  pip_q --no-build-isolation "torch-harmonics==0.8.0"
fi
# Re-install when a dependency added since the venv was made is missing (cf_units: units;
# distributed: the dask extra, for the cluster evaluation test).
.venv/bin/python -c "import climgen, pytest, hypothesis, cf_units, distributed" 2>/dev/null \
  || pip_q -e ".[dev,sphere,dask]"
.venv/bin/python -c "import climgen, torch_harmonics" || { echo "setup: climgen failed to install" >&2; exit 1; }
