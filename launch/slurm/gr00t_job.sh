#!/usr/bin/env bash
# Body shared by the sbatch templates (sourced; not a job script itself).
#
# Starts one torchrun agent per srun task (launch/torchrun/run.sh), with a c10d rendezvous on the
# first host of the allocation; forwards the preemption signal the batch shell receives
# (`#SBATCH --signal=B:USR1@<grace>` or `scancel --batch --signal=USR1 <job>`) to the trainers;
# requeues the job when the trainer stopped for preemption. The run directory is
# runs/<job name> (override: RUN_DIR), so the requeued job resumes from its newest checkpoint.
#
# Inputs: the training command and its key=value arguments ("$@"), e.g.
#   gr00t-finetune embodiment=libero_panda data=/data/libero base=/ckpt/GR00T-N1.6-3B
# Environment: GR00T_REPO (default: the submit directory), RUN_DIR, NPROC_PER_NODE,
#   MAX_REQUEUES (default 20), GR00T_PYTHON.
set -uo pipefail

REQUEUE_EXIT_CODE=75
repo="${GR00T_REPO:-$SLURM_SUBMIT_DIR}"
if [ ! -x "$repo/launch/torchrun/run.sh" ]; then
  echo "[gr00t_job] $repo/launch/torchrun/run.sh not found: submit from the repository root or set GR00T_REPO" >&2
  exit 2
fi
if [ $# -lt 1 ]; then
  echo "[gr00t_job] usage: sbatch <template> gr00t-finetune|gr00t-train [key=value ...]" >&2
  exit 2
fi
run_dir="${RUN_DIR:-runs/$SLURM_JOB_NAME}"
for arg in "$@"; do  # an explicit run_dir=... argument wins
  case "$arg" in run_dir=*) run_dir="${arg#run_dir=}" ;; esac
done
restarts="${SLURM_RESTART_COUNT:-0}"

# Rendezvous from the allocation: the first host runs the c10d store on a port derived from the job id.
master_addr=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
master_port=$(( 20000 + SLURM_JOB_ID % 20000 ))
agents="${SLURM_NTASKS:-1}"   # one torchrun agent per srun task (normally one per node)
if [ -z "${NPROC_PER_NODE:-}" ]; then
  NPROC_PER_NODE="${SLURM_GPUS_ON_NODE:-1}"
fi
echo "[gr00t_job] $(date +%T) job $SLURM_JOB_ID ($SLURM_JOB_NAME) restart $restarts: $agents agent(s) x" \
     "$NPROC_PER_NODE process(es), rendezvous $master_addr:$master_port, run_dir $run_dir"
mkdir -p "$run_dir"

export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export NNODES="$agents" NPROC_PER_NODE RDZV_ENDPOINT="$master_addr:$master_port" RDZV_ID="$SLURM_JOB_ID"
# Exactly one agent (task 0) hosts the store, even when several agents share a host.
srun --kill-on-bad-exit=0 --export=ALL \
  bash -c 'RDZV_IS_HOST=$([ "$SLURM_PROCID" = 0 ] && echo 1 || echo 0) exec "$0" "$@"' \
  "$repo/launch/torchrun/run.sh" "$@" "run_dir=$run_dir" &
srun_pid=$!

preempted=0
interrupted=0
on_preempt() {
  preempted=1
  interrupted=1
  echo "[gr00t_job] $(date +%T) preemption signal: forwarding SIGUSR1 to the job step" >&2
  kill -s USR1 "$srun_pid" 2>/dev/null || true
}
trap on_preempt USR1 TERM

while :; do
  interrupted=0
  wait "$srun_pid"; rc=$?
  if [ "$interrupted" = 1 ] && [ "$rc" -gt 128 ]; then
    if kill -0 "$srun_pid" 2>/dev/null; then continue; fi
    wait "$srun_pid"; rc=$?  # srun exited while the trap ran: collect its real status
  fi
  break
done
echo "[gr00t_job] $(date +%T) training step exited with $rc"

if [ "$rc" = "$REQUEUE_EXIT_CODE" ] || { [ "$preempted" = 1 ] && [ -e "$run_dir/PREEMPTED" ]; }; then
  if [ "$restarts" -ge "${MAX_REQUEUES:-20}" ]; then
    echo "[gr00t_job] preempted, but already requeued $restarts times (MAX_REQUEUES): giving up" >&2
    exit 1
  fi
  echo "[gr00t_job] $(date +%T) checkpoint saved for preemption: scontrol requeue $SLURM_JOB_ID"
  scontrol requeue "$SLURM_JOB_ID"
  exit 0
fi
exit "$rc"
