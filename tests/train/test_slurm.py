"""The sbatch templates on a real single-node SLURM cluster (slurmctld + slurmd + munged on localhost).

The fixture writes a slurm.conf for this host (proctrack/linuxproc, task/none, no cgroups, so it
also runs in containers), starts munged, slurmctld and slurmd in the foreground as child processes
on free ports, and stops them afterwards. The test then submits `launch/slurm/multi_node.sbatch`
as a 2-task CPU job (two torchrun agents meeting in a c10d rendezvous, one trainer each), sends the
batch shell the preemption signal, and checks that the trainer checkpointed, the job requeued
itself and the second run resumed and finished.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

SLURM_BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "scancel", "squeue")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalSlurm:
    """A one-node SLURM cluster owned by the test (all daemons are our child processes)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[subprocess.Popen] = []
        self.host = socket.gethostname().split(".")[0]
        self.conf = root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    def write_config(self) -> None:
        r = self.root
        for sub in ("state", "spool", "log", "run"):
            (r / sub).mkdir(parents=True, exist_ok=True)
        key = r / "munge.key"
        shutil.copyfile("/etc/munge/munge.key", key)
        key.chmod(0o600)
        (r / "plugstack.conf").write_text("")
        cpus = max(2, os.cpu_count() or 2)
        # The templates derive the rendezvous port from the job id; a random first id keeps two test
        # clusters on one machine (parallel test runs) from sharing a port.
        first_job_id = 1000 + int.from_bytes(os.urandom(2), "little") % 18000
        self.conf.write_text(
            f"""ClusterName=gr00ttest
SlurmctldHost={self.host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
FirstJobId={first_job_id}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={r}/run/munge.sock,cred_expire=5
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/run/slurmctld.pid
SlurmdPidFile={r}/run/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
PlugStackConfig={r}/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SlurmdTimeout=60
InactiveLimit=0
KillWait=30
MinJobAge=600
JobRequeue=1
NodeName={self.host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes={self.host} Default=YES MaxTime=INFINITE State=UP
"""
        )

    def start(self) -> None:
        r = self.root
        self.write_config()
        self._spawn(
            [
                "munged",
                "-F",
                "--force",
                f"--socket={r}/run/munge.sock",
                f"--key-file={r}/munge.key",
                f"--log-file={r}/log/munged.log",
                f"--pid-file={r}/run/munged.pid",
                f"--seed-file={r}/run/munged.seed",
            ],
            "munged",
        )
        self._wait_for(lambda: (r / "run" / "munge.sock").exists(), "munged socket")
        self._spawn(["slurmctld", "-D", "-i", "-f", str(self.conf)], "slurmctld")
        self._wait_for(lambda: self.run(["scontrol", "ping"], check=False).returncode == 0, "slurmctld")
        self._spawn(["slurmd", "-D", "-f", str(self.conf), "-N", self.host], "slurmd")
        self._wait_for(self._node_idle, "slurmd to register the node")

    def _node_idle(self) -> bool:
        out = self.run(["sinfo", "-h", "-o", "%T"], check=False).stdout.strip()
        return out.startswith("idle")

    def _spawn(self, cmd: list[str], name: str) -> None:
        log = open(self.root / "log" / f"{name}.stdout", "w")
        self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env))

    def _wait_for(self, predicate, what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(
                        f"{p.args[0]} exited with {p.returncode} while waiting for {what}; "
                        f"logs: {self.logs()}"
                    )
            if predicate():
                return
            time.sleep(0.5)
        raise TimeoutError(f"timed out waiting for {what}; logs: {self.logs()}")

    def logs(self) -> str:
        parts = []
        for f in sorted((self.root / "log").glob("*")):
            parts.append(f"--- {f.name}\n{f.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)

    def run(self, cmd: list[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=60, **kw)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
        return proc

    def job_field(self, job_id: str, field: str) -> str | None:
        out = self.run(["scontrol", "show", "job", job_id], check=False).stdout
        match = re.search(rf"\b{field}=(\S+)", out)
        return match.group(1) if match else None

    def stop(self) -> None:
        self.run(["scancel", "--full", "--user=root"], check=False) if self.procs else None
        for p in reversed(self.procs):  # slurmd, slurmctld, munged: the processes this fixture started
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=10)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory) -> Iterator[LocalSlurm]:
    missing = [b for b in SLURM_BINARIES if shutil.which(b) is None]
    if missing:
        pytest.fail(f"SLURM test needs {missing} (Debian: apt-get install slurm-wlm munge)")
    if not Path("/etc/munge/munge.key").is_file():
        pytest.fail("SLURM test needs /etc/munge/munge.key (installed by the munge package)")
    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def _wait_job_done(slurm: LocalSlurm, job_id: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        state = slurm.job_field(job_id, "JobState")
        if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
            return state
        time.sleep(1.0)
    raise TimeoutError(f"job {job_id} still {state} after {timeout} s; {slurm.logs()}")


def _job_story(text: str) -> str:
    """What a failed job's log says that matters: the job script's own lines, every rank's errors and
    fatal messages (aborts print no traceback), then the tail."""
    keys = ("[gr00t_job]", "[rank1]", "Fatal", "terminate", "abort", "Abort", "Error", "error", "signal")
    story = [line for line in text.splitlines() if any(k in line for k in keys)]
    return "\n".join(story[-120:]) + "\n---- tail ----\n" + text[-4000:]


def test_sbatch_preempt_requeue_resume(slurm, tmp_path, demo_dataset_v3):
    work = tmp_path / "work"
    (work / "logs").mkdir(parents=True)
    data = tmp_path / "data"
    shutil.copytree(demo_dataset_v3, data)
    job_name = "gr00t-slurm-test"
    run_dir = work / "runs" / job_name
    max_steps = 60
    env_exports = ",".join(
        [
            "ALL",
            "NPROC_PER_NODE=1",
            f"GR00T_REPO={REPO_ROOT}",
            "OMP_NUM_THREADS=1",
            "HF_HUB_OFFLINE=1",
            "WANDB_MODE=disabled",
        ]
    )
    submit = slurm.run(
        [
            "sbatch",
            "--parsable",
            f"--job-name={job_name}",
            "--nodes=1",
            "--ntasks=2",
            "--ntasks-per-node=2",
            "--cpus-per-task=1",
            f"--export={env_exports}",
            str(REPO_ROOT / "launch/slurm/multi_node.sbatch"),
            "gr00t-finetune",
            "embodiment=new_embodiment",
            f"data={data}",
            "model=n16_tiny",
            "trainer=demo",
            f"trainer.max_steps={max_steps}",
            "trainer.save_steps=1000",
            "trainer.logging_steps=1",
            "trainer.global_batch_size=2",
            "trainer.deepspeed=none",
        ],
        cwd=work,
    )
    job_id = submit.stdout.strip().split(";")[0]
    log = work / "logs" / f"{job_name}-{job_id}.out"

    # Preempt once the trainers are stepping (rank 0 appends one metrics line per step).
    metrics = run_dir / "metrics.jsonl"
    deadline = time.monotonic() + 400
    while not (metrics.is_file() and metrics.read_text().strip()):
        state = slurm.job_field(job_id, "JobState")
        assert state in ("PENDING", "RUNNING", "CONFIGURING"), (
            f"job {state} before training started:\n"
            + (log.read_text() if log.exists() else "")
            + slurm.logs()
        )
        assert time.monotonic() < deadline, "training did not start:\n" + (
            log.read_text() if log.exists() else ""
        )
        time.sleep(0.5)
    slurm.run(["scancel", "--batch", "--signal=USR1", job_id])

    state = _wait_job_done(slurm, job_id, timeout=600)
    text = log.read_text()
    assert state == "COMPLETED", f"{state}\n{_job_story(text)}"
    assert slurm.job_field(job_id, "Restarts") == "1", _job_story(text)

    # First run: the signal reached the trainers, which checkpointed and asked for a requeue.
    assert "preemption signal: forwarding SIGUSR1" in text
    assert f"scontrol requeue {job_id}" in text
    preempt = re.search(r"preempted at step (\d+)", text)
    assert preempt, text[-6000:]
    preempt_step = int(preempt.group(1))
    assert 0 < preempt_step < max_steps
    # Second run (SLURM_RESTART_COUNT=1): resumed from that checkpoint and finished.
    assert "restart 1:" in text
    assert f"resuming from {run_dir / f'checkpoint-{preempt_step}'}" in text
    final = run_dir / f"checkpoint-{max_steps}"
    assert (final / "COMPLETE").is_file() and (final / "model.safetensors").is_file()
    assert not (run_dir / "PREEMPTED").exists()
    steps = [json.loads(line).get("step") for line in metrics.read_text().splitlines()]
    assert max(s for s in steps if s is not None) == max_steps


def test_single_node_template_runs_two_workers(slurm, tmp_path, demo_dataset_v3):
    """single_node.sbatch: one torchrun agent with two trainer processes; finishes and checkpoints."""
    work = tmp_path / "work"
    (work / "logs").mkdir(parents=True)
    data = tmp_path / "data"
    shutil.copytree(demo_dataset_v3, data)
    exports = ",".join(
        ["ALL", "NPROC_PER_NODE=2", f"GR00T_REPO={REPO_ROOT}", "HF_HUB_OFFLINE=1", "WANDB_MODE=disabled"]
    )
    submit = slurm.run(
        [
            "sbatch",
            "--parsable",
            "--job-name=single",
            "--cpus-per-task=2",
            f"--export={exports}",
            str(REPO_ROOT / "launch/slurm/single_node.sbatch"),
            "gr00t-finetune",
            "embodiment=new_embodiment",
            f"data={data}",
            "model=n16_tiny",
            "trainer.max_steps=3",
            "trainer.save_steps=3",
            "trainer.logging_steps=1",
            "trainer.global_batch_size=2",
            "trainer.deepspeed=none",
        ],
        cwd=work,
    )
    job_id = submit.stdout.strip().split(";")[0]
    state = _wait_job_done(slurm, job_id, timeout=400)
    text = (work / "logs" / f"single-{job_id}.out").read_text()
    assert state == "COMPLETED", text[-6000:]
    assert "1 agent(s) x 2 process(es)" in text
    assert "global batch 2 = 1 per device x 2 processes" in text
    assert (work / "runs" / "single" / "checkpoint-3" / "COMPLETE").is_file()
    assert slurm.job_field(job_id, "Restarts") == "0"
