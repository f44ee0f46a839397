#!/usr/bin/env bash
# Run the test suite in .venv (created on first use).
#   bash scripts/test.sh          quick tests only (not marked slow)
#   bash scripts/test.sh --all    everything, including multi-process/DeepSpeed/SLURM tests (CI)
# Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup_venv.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=offline TOKENIZERS_PARALLELISM=false
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-$HOME/.cache/gr00t/torch_extensions}"
marker=(-m "not slow")
if [ "${1:-}" = "--all" ]; then
  marker=()
  shift
fi
exec .venv/bin/python -m pytest "${marker[@]}" "$@"
