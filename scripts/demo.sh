#!/usr/bin/env bash
# Set everything up and run the main job: a finetune of the tiny N1.6 model on the built-in demo
# dataset, on CPU. Ends with runs/demo/checkpoint-<step>/ and runs/demo/loss_curve.png.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup_venv.sh
export HF_HUB_OFFLINE=1 WANDB_MODE="${WANDB_MODE:-offline}" TOKENIZERS_PARALLELISM=false
exec .venv/bin/gr00t-finetune recipe=demo "$@"
