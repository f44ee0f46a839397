#!/usr/bin/env bash
# Create (or reuse) .venv in the repo root and install gr00t with its CPU dependencies.
# torch is installed first and pinned, so no dependency can pull a CUDA build.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
PY="${PYTHON:-python3}"
TORCH_VERSION="${GR00T_TORCH_VERSION:-2.13.0}"
stamp=".venv/.gr00t-installed"
bash scripts/install_system_deps.sh
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "gr00t: installing into .venv (first run takes a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q "torch==${TORCH_VERSION}"
  .venv/bin/python -m pip install -q -e ".[dev]"
  touch "$stamp"
fi
