#!/usr/bin/env bash
# The GPU check of issue 8 (bench/gpu.py): n16_release bf16 finetune steps at per-device batch
# 8/16/32 under memory=default and memory=24gb (real peak memory, samples/s, MFU, next to
# bench/memory.py's estimate), flash-attn vs SDPA, get_action latency eager and compiled.
# Finishes in under 8 minutes on one H100 (sections past the budget are skipped and say so).
#
#   bash bench/gpu.sh                # on a machine with a CUDA GPU
#   bash bench/gpu.sh --cpu-smoke    # every section on the CPU with the tiny model (the test suite)
#
# It needs only torch, transformers, safetensors, numpy, PyYAML and pillow beside the repo copy
# (PYTHONPATH=.); Hydra and DeepSpeed are not used. memory=24gb's 8-bit AdamW needs bitsandbytes:
# where there is no internet, carry its wheel in .whl/ (bash bench/gpu_wheels.sh here) and it is
# installed into /tmp/gr00t-site first; without it the 24gb rows are reported as skipped.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
PY="${PYTHON:-python3}"
if [ -x .venv/bin/python ] && [ "${1:-}" = "--cpu-smoke" ]; then PY=.venv/bin/python; fi
if compgen -G ".whl/*.whl" > /dev/null && ! "$PY" -c "import bitsandbytes" 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gr00t-site .whl/*.whl \
    && export PYTHONPATH="/tmp/gr00t-site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$root:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec timeout 470 "$PY" bench/gpu.py "$@"
