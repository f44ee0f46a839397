#!/usr/bin/env bash
# Run a gr00t training command under torchrun on this node, forwarding preemption signals.
#
#   launch/torchrun/run.sh gr00t-finetune embodiment=<name> data=<dir> [run_dir=runs/x] [key=value ...]
#   launch/torchrun/run.sh gr00t-train recipe=pretrain_n16 [run_dir=runs/pretrain] [key=value ...]
# Without run_dir=, the command's default (runs/<recipe>/<embodiment>-<dataset>) is used by every process.
#
# Environment (all optional):
#   NPROC_PER_NODE  worker processes on this node (default: visible GPUs, else 1)
#   NNODES          torchrun agents taking part in the rendezvous (default 1)
#   RDZV_ENDPOINT   host:port of the c10d rendezvous (default 127.0.0.1:29500)
#   RDZV_ID         rendezvous id shared by all agents (default gr00t)
#   RDZV_IS_HOST    1 on the one agent that hosts the rendezvous store (default: torchrun decides)
#   GR00T_PYTHON    python of the gr00t environment (default: <repo>/.venv/bin/python, else python3)
#   TORCH_ELASTIC_SHUTDOWN_TIMEOUT  seconds torchrun waits for the trainers after SIGTERM (default 300)
#
# Preemption: SIGUSR1 or SIGTERM reaching this script (or its whole process group, as scancel
# does) is passed to the trainer processes, which
# save a checkpoint, write <run_dir>/PREEMPTED and exit. torchrun itself ignores SIGUSR1 (it would
# otherwise die of it) and reports a failed worker as exit code 1, so this script turns "the run
# left PREEMPTED behind" back into the trainer's requeue exit code 75.
set -uo pipefail

REQUEUE_EXIT_CODE=75
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
if [ $# -lt 1 ]; then
  echo "usage: $0 gr00t-finetune|gr00t-train|<python module> [key=value ...]" >&2
  exit 2
fi
cmd="$1"; shift
case "$cmd" in
  gr00t-*) module="gr00t.cli.${cmd#gr00t-}" ;;
  *) module="$cmd" ;;
esac

python="${GR00T_PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x "$repo/.venv/bin/python" ]; then python="$repo/.venv/bin/python"; else python=python3; fi
fi

run_dir=""
for arg in "$@"; do
  case "$arg" in run_dir=*) run_dir="${arg#run_dir=}" ;; esac
done
if [ -z "$run_dir" ] && [ "${module#gr00t.cli.}" != "$module" ]; then
  # the command's default run_dir (deterministic: runs/<recipe>/<embodiment>-<dataset>)
  run_dir=$("$python" -m "$module" "$@" --cfg job 2>/dev/null | sed -n 's/^run_dir: //p' | head -n 1)
fi
if [ -z "${NPROC_PER_NODE:-}" ]; then
  NPROC_PER_NODE=$("$python" -c 'import torch; print(max(torch.cuda.device_count(), 1))' 2>/dev/null || echo 1)
fi
rdzv_conf=""
if [ -n "${RDZV_IS_HOST:-}" ]; then rdzv_conf="--rdzv-conf=is_host=${RDZV_IS_HOST}"; fi

# Started with SIGUSR1 ignored: torchrun keeps ignoring it, the trainer installs its own handler.
# SIGTERM makes torchrun pass it on to every trainer's process group and wait
# TORCH_ELASTIC_SHUTDOWN_TIMEOUT seconds for the preemption checkpoint before it kills them.
# `gr00t.train.lifetime` ties torchrun to this script (and the trainers tie themselves to torchrun):
# when this script or its process group is SIGKILLed, no trainer lives on as an orphan.
export TORCH_ELASTIC_SHUTDOWN_TIMEOUT="${TORCH_ELASTIC_SHUTDOWN_TIMEOUT:-300}"
trap '' USR1
"$python" -m gr00t.train.lifetime "$python" -m torch.distributed.run \
  --nnodes="${NNODES:-1}" --nproc-per-node="$NPROC_PER_NODE" \
  --rdzv-backend=c10d --rdzv-endpoint="${RDZV_ENDPOINT:-127.0.0.1:29500}" --rdzv-id="${RDZV_ID:-gr00t}" \
  $rdzv_conf --max-restarts=0 \
  -m "$module" "$@" &
launcher_pid=$!

interrupted=0
forward() {  # $1: signal name
  interrupted=1
  echo "[run.sh] $(date +%T) received SIG$1, passing it to the trainer processes of torchrun $launcher_pid" >&2
  local pids
  pids=$(pgrep -P "$launcher_pid" || true)
  if [ -n "$pids" ]; then kill -s "$1" $pids 2>/dev/null || true; fi
}
trap 'forward USR1' USR1
trap 'forward TERM' TERM

while :; do
  interrupted=0
  wait "$launcher_pid"; rc=$?
  if [ "$interrupted" = 1 ] && [ "$rc" -gt 128 ]; then
    if kill -0 "$launcher_pid" 2>/dev/null; then continue; fi
    wait "$launcher_pid"; rc=$?  # it exited while the trap ran: collect its real status
  fi
  break
done

if [ "$rc" -ne 0 ] && [ -n "$run_dir" ] && [ -e "$run_dir/PREEMPTED" ]; then
  echo "[run.sh] $(date +%T) trainer saved and stopped for preemption (torchrun exit $rc): exit $REQUEUE_EXIT_CODE" >&2
  exit "$REQUEUE_EXIT_CODE"
fi
exit "$rc"
