"""One trainer per run directory (gr00t/train/run_lock.py): real flock, real second processes."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gr00t.train.run_lock import LOCK_NAME, RunDirLocked, acquire_run_lock, holding_run_dir, locks_run_dir

REPO = Path(__file__).resolve().parents[2]


def _python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code), *args]


HOLD = """
import sys, time
from gr00t.train.run_lock import acquire_run_lock
lock = acquire_run_lock(sys.argv[1])
print("held", flush=True)
time.sleep(600)
"""

TRY = """
import sys
from gr00t.train.run_lock import RunDirLocked, acquire_run_lock
try:
    acquire_run_lock(sys.argv[1])
except RunDirLocked as exc:
    print(exc)
    sys.exit(3)
print("acquired")
"""


def _start_holder(run_dir: Path) -> subprocess.Popen:
    proc = subprocess.Popen(_python(HOLD, str(run_dir)), stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_second_process_is_refused_with_the_holder_named(tmp_path):
    holder = _start_holder(tmp_path)
    try:
        started = time.monotonic()
        other = subprocess.run(_python(TRY, str(tmp_path)), capture_output=True, text=True, cwd=REPO)
        message = other.stdout.strip()
        assert other.returncode == 3, other.stderr
        assert time.monotonic() - started < 10
        assert message.count("\n") == 0
        assert f"run directory {tmp_path} is locked by another run" in message
        assert f"host {socket.gethostname()}, pid {holder.pid}, started 20" in message
        with pytest.raises(RunDirLocked, match=f"pid {holder.pid}"):
            acquire_run_lock(tmp_path)  # this process too
        record = json.loads((tmp_path / LOCK_NAME).read_text())
        assert record["pid"] == holder.pid and record["host"] == socket.gethostname()
    finally:
        holder.kill()
        holder.wait()


def test_lock_of_a_killed_holder_is_taken_over_with_a_warning(tmp_path, caplog):
    holder = _start_holder(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == holder.pid  # the record outlived it
    with caplog.at_level(logging.WARNING, logger="gr00t.train.run_lock"):
        lock = acquire_run_lock(tmp_path)
    try:
        assert lock.previous is not None and lock.previous["pid"] == holder.pid
        assert (
            f"taking over the lock left by a process that is gone (host {socket.gethostname()}, pid {holder.pid}"
            in (caplog.text)
        )
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    finally:
        lock.release()


def test_stale_holder_record_without_a_lock_is_taken_over(tmp_path, caplog):
    dead = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    stale = {"host": socket.gethostname(), "pid": dead, "started": "2020-01-01 00:00:00 UTC"}
    (tmp_path / LOCK_NAME).write_text(json.dumps(stale))
    with caplog.at_level(logging.WARNING, logger="gr00t.train.run_lock"):
        with holding_run_dir(tmp_path) as lock:
            assert lock is not None and lock.previous == stale
    assert f"pid {dead}, started 2020-01-01" in caplog.text


def test_release_leaves_no_record_and_nesting_is_reentrant(tmp_path, caplog):
    outer = acquire_run_lock(tmp_path)
    inner = acquire_run_lock(tmp_path / "." / "")  # the same folder, spelled differently
    assert inner is outer
    inner.release()
    assert outer.held  # the outer acquisition still holds it
    blocked = subprocess.run(_python(TRY, str(tmp_path)), capture_output=True, text=True, cwd=REPO)
    assert blocked.returncode == 3, blocked.stdout + blocked.stderr
    outer.release()
    assert not outer.held and (tmp_path / LOCK_NAME).read_text() == ""
    with caplog.at_level(logging.WARNING, logger="gr00t.train.run_lock"):
        free = subprocess.run(_python(TRY, str(tmp_path)), capture_output=True, text=True, cwd=REPO)
        again = acquire_run_lock(tmp_path)
    assert free.stdout.strip() == "acquired"
    assert again.previous is None and "taking over" not in caplog.text  # a clean end is not stale
    again.release()


def test_decorator_holds_the_lock_on_rank_zero_only(tmp_path, monkeypatch):
    seen = {}

    @locks_run_dir("cfg", lambda cfg: cfg["run_dir"])
    def job(cfg):
        probe = subprocess.run(_python(TRY, str(cfg["run_dir"])), capture_output=True, text=True, cwd=REPO)
        seen["locked"] = probe.returncode == 3
        return 7

    assert job({"run_dir": tmp_path}) == 7 and seen["locked"]
    monkeypatch.setenv("RANK", "1")
    assert job({"run_dir": tmp_path}) == 7 and not seen["locked"]


@pytest.mark.slow
def test_second_trainer_on_a_live_run_dir_exits_2_naming_the_holder(train_data, tmp_path):
    """A real trainer holds run_dir; `gr00t-finetune` on the same folder stops at once, the first goes on."""
    from conftest import describe, logged, worker_command, worker_env

    from gr00t.train import checkpoint as ckpt

    args = ["--run-dir", str(tmp_path), "--data", str(train_data), "--max-steps", "8", "--save-steps", "4"]
    first = subprocess.Popen(
        worker_command([*args, "--batch", "2", "--step-sleep", "0.5"]),
        env=worker_env(),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not ((tmp_path / "metrics.jsonl").exists() and logged(tmp_path)):
            assert first.poll() is None and time.monotonic() < deadline, "the first run did not start"
            time.sleep(0.2)
        before = sorted(p.name for p in tmp_path.iterdir())
        started = time.monotonic()
        second = subprocess.run(
            [sys.executable, "-m", "gr00t.cli.finetune", "embodiment=new_embodiment", f"data={train_data}"]
            + ["model=n16_tiny", "trainer=demo", f"run_dir={tmp_path}", "trainer.max_steps=2"],
            env=worker_env(),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        took = time.monotonic() - started
        assert second.returncode == 2, describe(second)
        errors = [line for line in second.stderr.splitlines() if "error" in line.lower()]
        assert errors == [
            f"gr00t-finetune: error: run directory {tmp_path} is locked by another run "
            f"(host {socket.gethostname()}, pid {first.pid}, started {errors[0].split('started ')[1]}"
        ], second.stderr
        assert "Traceback" not in second.stderr and took < 30, took
        # the second run wrote nothing besides Hydra's own .hydra/ and job log (new checkpoints: the first run's)
        new = {p.name for p in tmp_path.iterdir()} - set(before) - {".hydra", "gr00t-finetune.log"}
        assert all(name.startswith("checkpoint-4") for name in new), new
        out, err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, describe(
        subprocess.CompletedProcess(first.args, first.returncode, out, err)
    )
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["checkpoint-4", "checkpoint-8"]
    assert (tmp_path / LOCK_NAME).read_text() == ""  # released at the end
