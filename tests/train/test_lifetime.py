"""Trainers don't outlive their launcher (gr00t/train/lifetime.py): real SIGKILLs, real torchrun."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import REPO, alive, descendants, free_port, kill_pids, logged, worker_env  # noqa: E402

from gr00t.train import checkpoint as ckpt  # noqa: E402

# A parent that starts `child` and sleeps; prints the child's pid.
PARENT = """
import subprocess, sys, time
child = subprocess.Popen(sys.argv[1:])
print(child.pid, flush=True)
time.sleep(600)
"""


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


@pytest.mark.parametrize("tied", [True, False])
def test_child_dies_with_its_parent_only_when_tied(tied: bool) -> None:
    child = [sys.executable, "-m", "gr00t.train.lifetime", "sleep", "600"] if tied else ["sleep", "600"]
    parent = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(PARENT), *child], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    assert parent.stdout is not None
    pid = int(parent.stdout.readline())
    try:
        deadline = time.monotonic() + 30
        while not Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep"):  # exec'd
            assert time.monotonic() < deadline
            time.sleep(0.05)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        left = _wait_gone([pid], timeout=3)
        assert (left == []) is tied  # untied, the orphan lives on (the failure this module prevents)
    finally:
        kill_pids([pid])


@pytest.mark.slow
@pytest.mark.parametrize("target", ["group", "launcher"])
def test_sigkill_of_the_launcher_leaves_no_trainer_and_no_new_checkpoint(
    train_data, tmp_path, target
) -> None:
    """run.sh (torchrun, 2 trainers, a DataLoader worker each) killed by SIGKILL, as a dead job step is."""
    run_dir = tmp_path / "run"
    env = {**worker_env(), "NPROC_PER_NODE": "2", "RDZV_ENDPOINT": f"127.0.0.1:{free_port()}"}
    command = ["bash", str(REPO / "launch/torchrun/run.sh"), "gr00t-finetune", "embodiment=new_embodiment"]
    command += [f"data={train_data}", "model=n16_tiny", "trainer=demo", "trainer.max_steps=5000"]
    command += ["trainer.save_steps=1", "trainer.save_total_limit=null", "trainer.logging_steps=1"]
    command += ["trainer.global_batch_size=2", "trainer.deepspeed=none", "trainer.dataloader_num_workers=1"]
    command += [f"run_dir={run_dir}"]
    proc = subprocess.Popen(
        command,
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    tree: list[int] = []
    try:
        deadline = time.monotonic() + 300
        while not (
            (run_dir / "metrics.jsonl").exists() and any(r.get("step", 0) >= 2 for r in logged(run_dir))
        ):
            assert proc.poll() is None, proc.communicate()[1][-4000:]
            assert time.monotonic() < deadline, "training did not start"
            time.sleep(0.2)
        tree = descendants(proc.pid)
        assert len(tree) >= 5, f"expected torchrun, 2 trainers and their workers below run.sh: {tree}"
        if target == "group":
            import os

            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        left = _wait_gone(tree, timeout=10)
        assert left == [], f"processes outlived the launcher: {left}"
        before = sorted(p.name for p in run_dir.iterdir())
        assert any(name.startswith("checkpoint-") for name in before)
        time.sleep(5)  # an orphan saving every step would publish a checkpoint within this time
        assert sorted(p.name for p in run_dir.iterdir()) == before
        steps = [ckpt.checkpoint_step(p) for p in ckpt.list_checkpoints(run_dir)]
        assert max(r.get("step", 0) for r in logged(run_dir)) <= max(steps) + 1
    finally:
        kill_pids([proc.pid, *tree])
