"""Preemption flag handling (in-process) and the full SIGUSR1 -> checkpoint -> requeue path (slow)."""

from __future__ import annotations

import os
import signal

import pytest

from gr00t.train.preemption import REQUEUE_EXIT_CODE, PreemptionHandler


def test_signal_sets_flag_and_handlers_are_restored() -> None:
    before = signal.getsignal(signal.SIGUSR1)
    with PreemptionHandler(["SIGUSR1", "term"]) as handler:
        assert not handler.requested and not handler.sync()
        os.kill(os.getpid(), signal.SIGUSR1)
        assert handler.requested and handler.sync()
        assert handler.signal_name == "SIGUSR1"
        assert handler.seconds_since_signal() is not None
        os.kill(os.getpid(), signal.SIGTERM)  # a second signal changes nothing (and does not kill us)
        assert handler.signal_name == "SIGUSR1"
    assert signal.getsignal(signal.SIGUSR1) == before


def test_unknown_signal_name_is_rejected() -> None:
    with pytest.raises(ValueError, match="SIGNOPE"):
        PreemptionHandler(["SIGNOPE"])


def test_requeue_exit_code_is_distinct() -> None:
    # 75 = EX_TEMPFAIL; must differ from success, generic failure, `timeout`'s 124 and kill codes.
    assert REQUEUE_EXIT_CODE == 75
    assert REQUEUE_EXIT_CODE not in (0, 1, 2, 124, 137, 143)


@pytest.mark.slow
def test_sigusr1_checkpoints_and_exits_with_requeue_code(train_data, tmp_path) -> None:
    import json
    import subprocess
    import sys
    import time
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from conftest import REPO, describe, logged, run_worker, worker_command, worker_env

    from gr00t.train import checkpoint as ckpt

    args = [
        "--run-dir",
        str(tmp_path),
        "--data",
        str(train_data),
        "--max-steps",
        "500",
        "--save-steps",
        "1000",
        "--batch",
        "2",
        "--step-sleep",
        "0.2",
    ]
    proc = subprocess.Popen(
        worker_command(args),
        env=worker_env(),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            metrics = tmp_path / "metrics.jsonl"
            if metrics.exists() and any(r.get("step", 0) >= 2 for r in logged(tmp_path)):
                break
            time.sleep(0.2)
        assert proc.poll() is None, "worker ended before it could be signalled"
        proc.send_signal(signal.SIGUSR1)
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert proc.returncode == REQUEUE_EXIT_CODE, describe(done)
    marker = json.loads((tmp_path / ckpt.PREEMPTED_MARKER).read_text())
    step = marker["step"]
    assert marker["signal"] == "SIGUSR1" and 2 <= step < 500
    latest = ckpt.latest_checkpoint(tmp_path)
    assert latest == tmp_path / f"checkpoint-{step}"  # save_steps=1000: only the preemption saved
    assert json.loads((latest / ckpt.DATA_STATE_NAME).read_text())["consumed"] == 2 * step
    assert "RESULT_JSON" not in out  # exited before returning

    # The requeued job resumes from there and clears the marker.
    rerun, result = run_worker(
        [
            "--run-dir",
            str(tmp_path),
            "--data",
            str(train_data),
            "--max-steps",
            str(step + 2),
            "--save-steps",
            "1000",
            "--batch",
            "2",
        ]
    )
    assert rerun.returncode == 0 and result is not None, describe(rerun)
    assert result["resumed_from"] == str(latest) and result["global_step"] == step + 2
    assert not (tmp_path / ckpt.PREEMPTED_MARKER).exists()


def _ignored_signals(pid: int) -> set[int]:
    """Signals a live process ignores (SigIgn of /proc/<pid>/status)."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("SigIgn:"):
            mask = int(line.split()[1], 16)
            return {n for n in range(1, 65) if mask >> (n - 1) & 1}
    raise AssertionError(f"no SigIgn in /proc/{pid}/status")


def test_dataloader_workers_ignore_preemption_signals_and_keep_serving(monkeypatch) -> None:
    """A group-wide SIGTERM/SIGUSR1 reaches the workers too: they must survive it (the trainer saves)."""
    import time

    import torch

    from gr00t.data.sampler import MixtureSampler
    from gr00t.train import loader as loader_module
    from gr00t.train.loader import build_train_dataloader

    original_init = loader_module.worker_init

    def slow_worker_init(worker_id: int, **kwargs) -> None:  # widens the fork -> worker_init window
        time.sleep(1.0)
        original_init(worker_id, **kwargs)

    monkeypatch.setattr(loader_module, "worker_init", slow_worker_init)
    from gr00t.train.settings import TrainingSettings

    dataset = torch.arange(64, dtype=torch.float32)
    settings = TrainingSettings(
        max_steps=1,
        per_device_batch_size=4,
        dataloader_num_workers=2,
        preemption_signals=("SIGTERM", "SIGHUP"),
    )
    loader = build_train_dataloader(dataset, MixtureSampler([64], seed=0), None, settings, 0)
    iterator = iter(loader)
    workers = [w.pid for w in iterator._workers]
    assert len(workers) == 2
    for pid in workers:  # before the workers reach their worker_init_fn
        os.kill(pid, signal.SIGTERM)
        os.kill(pid, signal.SIGUSR1)
    first = next(iterator)
    batches = [next(iterator) for _ in range(20)]  # every worker has served a batch since
    for pid in workers:
        assert {signal.SIGTERM, signal.SIGUSR1, signal.SIGHUP} <= _ignored_signals(pid)
        os.kill(pid, signal.SIGTERM)
        os.kill(pid, signal.SIGHUP)
    batches += [next(iterator) for _ in range(20)]  # still served after the signals
    assert all(b.shape == first.shape for b in batches)
    assert all(w.is_alive() for w in iterator._workers)
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # the trainer's mask is back
    del iterator


# ---- slow: the signal reaches the whole job (trainer + DataLoader workers), as SLURM sends it ------


def _wait_for_step(run_dir, proc, step: int, timeout: float = 300) -> None:
    import time

    from conftest import logged

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be signalled"
        if (run_dir / "metrics.jsonl").exists() and any(r.get("step", 0) >= step for r in logged(run_dir)):
            return
        time.sleep(0.2)
    raise AssertionError(f"no step {step} within {timeout} s")


def _assert_preempted(run_dir, batch_per_step: int) -> int:
    import json

    from gr00t.train import checkpoint as ckpt

    marker = json.loads((run_dir / ckpt.PREEMPTED_MARKER).read_text())
    step = marker["step"]
    latest = ckpt.latest_checkpoint(run_dir)
    assert latest == run_dir / f"checkpoint-{step}", (latest, marker)
    assert json.loads((latest / ckpt.DATA_STATE_NAME).read_text())["consumed"] == batch_per_step * step
    return step


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_group_signal_with_dataloader_workers_checkpoints(train_data, tmp_path, sig) -> None:
    """One process with 2 DataLoader workers; the signal goes to its whole process group."""
    import subprocess
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from conftest import REPO, descendants, describe, kill_pids, worker_command, worker_env

    args = ["--run-dir", str(tmp_path), "--data", str(train_data), "--max-steps", "500"]
    args += ["--save-steps", "1000", "--batch", "2", "--workers", "2", "--step-sleep", "0.1"]
    proc = subprocess.Popen(
        worker_command(args),
        env=worker_env(),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, like a job step
    )
    try:
        _wait_for_step(tmp_path, proc, 2)
        assert len(descendants(proc.pid)) >= 2, "the DataLoader workers should be running"
        os.killpg(proc.pid, sig)
        out, err = proc.communicate(timeout=240)
    finally:
        kill_pids([proc.pid, *descendants(proc.pid)])
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert proc.returncode == REQUEUE_EXIT_CODE, describe(done)
    assert "killed by signal" not in err, describe(done)
    _assert_preempted(tmp_path, batch_per_step=2)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_to_every_process_of_a_torchrun_job_checkpoints(train_data, tmp_path, sig) -> None:
    """launch/torchrun/run.sh, 2 trainers with a DataLoader worker each; every process is signalled."""
    import subprocess
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from conftest import REPO, descendants, free_port, kill_pids, signal_job, worker_env

    run_dir = tmp_path / "run"
    env = {**worker_env(), "NPROC_PER_NODE": "2", "RDZV_ENDPOINT": f"127.0.0.1:{free_port()}"}
    command = ["bash", str(REPO / "launch/torchrun/run.sh"), "gr00t-finetune", "embodiment=new_embodiment"]
    command += [f"data={train_data}", "model=n16_tiny", "trainer=demo", "trainer.max_steps=5000"]
    command += ["trainer.save_steps=5000", "trainer.logging_steps=1", "trainer.global_batch_size=4"]
    command += ["trainer.deepspeed=none", "trainer.dataloader_num_workers=1", f"run_dir={run_dir}"]
    proc = subprocess.Popen(
        command,
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    tree: list[int] = []
    try:
        _wait_for_step(run_dir, proc, 2)
        tree = signal_job(proc.pid, sig)
        out, err = proc.communicate(timeout=300)
    finally:
        kill_pids([proc.pid, *descendants(proc.pid)])
    log = f"exit {proc.returncode}\n--- stdout ---\n{out[-3000:]}\n--- stderr ---\n{err[-6000:]}"
    assert len(tree) >= 6, f"expected run.sh, torchrun, 2 trainers and their workers: {tree}"
    assert proc.returncode == REQUEUE_EXIT_CODE, log
    assert "killed by signal" not in err, log
    _assert_preempted(run_dir, batch_per_step=4)
