"""The run directory (`gr00t.train.run_dir.RunDir`): atomic publication, newest-complete discovery,
clean-up, rotation and the resume state readers.

The crash-during-write and resume-exactness tests run the real trainer in subprocesses (slow).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gr00t.train import run_dir as rd
from gr00t.train.run_dir import Checkpoint, CheckpointStaging, RunDir, checkpoint_step

# A pid no process can have (above the kernel's pid_max): its temporary folders belong to no live run.
DEAD_PID = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1


def _fake_written(run_dir: Path, step: int, pid: int = DEAD_PID) -> CheckpointStaging:
    staging = RunDir(run_dir).begin_checkpoint(step, pid, create=True)
    (staging.path / "model.safetensors").write_bytes(b"weights-%d" % step)
    return staging


def _names(found) -> list[str]:
    return [c.path.name for c in found]


def test_publish_renames_and_marks_complete(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    tmp = _fake_written(tmp_path, 10)
    assert tmp.path.name == f"checkpoint-10.tmp-{DEAD_PID}"
    assert run.latest_checkpoint() is None  # a temp folder is never a checkpoint
    final = run.publish(tmp)
    assert final.path == tmp_path / "checkpoint-10" and final.step == 10
    assert not tmp.path.exists()
    assert final.is_complete
    assert json.loads((final.path / rd.COMPLETE_MARKER).read_text())["step"] == 10
    assert (final.path / "model.safetensors").read_bytes() == b"weights-10"
    assert run.latest_checkpoint() == final


def test_latest_ignores_incomplete_and_orders_numerically(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    for step in (2, 10, 9):
        run.publish(_fake_written(tmp_path, step))
    (tmp_path / "checkpoint-100").mkdir()  # final name but no marker: a crash mid-rename/delete
    _fake_written(tmp_path, 200)  # being written
    (tmp_path / "checkpoint-final").mkdir()  # not ours
    (tmp_path / "checkpoint-300").write_text("a file, not a folder")
    assert _names(run.checkpoints()) == [
        "checkpoint-2",
        "checkpoint-9",
        "checkpoint-10",
    ]
    assert run.latest_checkpoint().path == tmp_path / "checkpoint-10"
    incomplete = {p.name for p in run.incomplete()}
    assert incomplete == {"checkpoint-100", f"checkpoint-200.tmp-{DEAD_PID}"}
    removed = run.remove_incomplete()
    assert {p.name for p in removed} == incomplete
    assert (
        not (tmp_path / "checkpoint-100").exists()
        and not (tmp_path / f"checkpoint-200.tmp-{DEAD_PID}").exists()
    )
    assert (tmp_path / "checkpoint-final").exists() and (tmp_path / "checkpoint-10").exists()


def test_rotate_keeps_newest(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    for step in (1, 2, 3, 4, 5):
        run.publish(_fake_written(tmp_path, step))
    removed = run.rotate(keep=2)
    assert [p.name for p in removed] == ["checkpoint-1", "checkpoint-2", "checkpoint-3"]
    assert _names(run.checkpoints()) == ["checkpoint-4", "checkpoint-5"]
    assert run.rotate(keep=None) == [] and run.rotate(keep=0) == []
    assert len(run.checkpoints()) == 2


def test_republishing_a_step_replaces_it(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.publish(_fake_written(tmp_path, 7, pid=1))
    tmp = run.begin_checkpoint(7, 2, create=True)
    (tmp.path / "model.safetensors").write_bytes(b"newer")
    final = run.publish(tmp)
    assert (final.path / "model.safetensors").read_bytes() == b"newer"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-7"]


def test_archive_for_fresh_start(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.publish(_fake_written(tmp_path, 3))
    _fake_written(tmp_path, 4)
    (tmp_path / "metrics.jsonl").write_text("{}\n")
    dest = run.archive()
    assert dest is not None and dest.name.startswith("superseded-")
    assert run.checkpoints() == [] and run.incomplete() == []
    assert (dest / "checkpoint-3" / rd.COMPLETE_MARKER).is_file() and (dest / "metrics.jsonl").is_file()
    assert run.archive() is None


def test_helpers_reject_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a checkpoint folder"):
        checkpoint_step(tmp_path / "weights")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        RunDir(tmp_path).publish(CheckpointStaging(tmp_path / "checkpoint-1.tmp-1", 1))
    bad = tmp_path / "checkpoint-5"
    bad.mkdir()
    (bad / rd.DATA_STATE_NAME).write_text("{not json")
    with pytest.raises(ValueError, match="data_state.json"):
        Checkpoint(bad).data_state()
    assert Checkpoint(tmp_path).data_state() is None


def test_cleanup_never_touches_a_live_writers_temporary(tmp_path: Path) -> None:
    """Another live process's checkpoint-<N>.tmp-<pid> survives remove_incomplete and archiving."""
    import subprocess
    import sys

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        run = RunDir(tmp_path)
        live = _fake_written(tmp_path, 8, pid=other.pid).path
        dead = _fake_written(tmp_path, 6).path
        mine = _fake_written(tmp_path, 4, pid=os.getpid()).path  # left by this very process: ours to clean
        assert rd.temp_owner(live) == other.pid and run.foreign_temporaries() == [live]
        assert set(run.remove_incomplete()) == {dead, mine}
        assert live.is_dir() and (live / "model.safetensors").read_bytes() == b"weights-8"
        run.publish(_fake_written(tmp_path, 2))
        archived = run.archive()
        assert archived is not None and (archived / "checkpoint-2").is_dir() and live.is_dir()
    finally:
        other.kill()
        other.wait()
    assert run.foreign_temporaries() == []  # its writer is gone: now it is debris
    assert run.remove_incomplete() == [live] and not live.exists()
