#!/usr/bin/env bash
# Download the wheel bench/gpu.sh needs on a GPU machine without internet (bitsandbytes, for
# memory=24gb's 8-bit AdamW; ~43 MB, CUDA 11.8-13.2 kernels) into .whl/ (git-ignored locally).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> "$(git rev-parse --git-path info/exclude)"
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 -d .whl "bitsandbytes==${BNB_VERSION:-0.50.2}"
