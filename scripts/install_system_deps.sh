#!/usr/bin/env bash
# Debian packages gr00t uses at run time or in tests:
#   ffmpeg libraries (torchcodec's CPU decoder), slurm-wlm + munge (the real-SLURM launch test).
# Installs only what is missing; needs root (or sudo) and apt. Safe to re-run.
set -euo pipefail
need=()
ldconfig -p 2>/dev/null | grep -q "libavcodec.so" || need+=(ffmpeg)
command -v slurmctld >/dev/null 2>&1 || need+=(slurm-wlm)
command -v munged >/dev/null 2>&1 || need+=(munge)
[ ${#need[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "gr00t: missing system packages ${need[*]} and no apt-get; install them by hand" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
    echo "gr00t: missing system packages ${need[*]}; run as root: apt-get install ${need[*]}" >&2
    exit 0
  fi
fi
echo "gr00t: installing system packages: ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
