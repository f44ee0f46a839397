"""Checkpoint folders: atomic publication, newest-complete discovery, clean-up and rotation.

The crash-during-write and resume-exactness tests run the real trainer in subprocesses (slow).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gr00t.train import checkpoint as ckpt

# A pid no process can have (above the kernel's pid_max): its temporary folders belong to no live run.
DEAD_PID = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1


def _fake_written(run_dir: Path, step: int, pid: int = DEAD_PID) -> Path:
    tmp = ckpt.temp_checkpoint_dir(run_dir, step, pid)
    tmp.mkdir(parents=True)
    (tmp / "model.safetensors").write_bytes(b"weights-%d" % step)
    return tmp


def test_publish_renames_and_marks_complete(tmp_path: Path) -> None:
    tmp = _fake_written(tmp_path, 10)
    assert ckpt.latest_checkpoint(tmp_path) is None  # a temp folder is never a checkpoint
    final = ckpt.publish(tmp, 10)
    assert final == tmp_path / "checkpoint-10"
    assert not tmp.exists()
    assert ckpt.is_complete(final)
    assert json.loads((final / ckpt.COMPLETE_MARKER).read_text())["step"] == 10
    assert (final / "model.safetensors").read_bytes() == b"weights-10"
    assert ckpt.latest_checkpoint(tmp_path) == final


def test_latest_ignores_incomplete_and_orders_numerically(tmp_path: Path) -> None:
    for step in (2, 10, 9):
        ckpt.publish(_fake_written(tmp_path, step), step)
    (tmp_path / "checkpoint-100").mkdir()  # final name but no marker: a crash mid-rename/delete
    _fake_written(tmp_path, 200)  # being written
    (tmp_path / "checkpoint-final").mkdir()  # not ours
    (tmp_path / "checkpoint-300").write_text("a file, not a folder")
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == [
        "checkpoint-2",
        "checkpoint-9",
        "checkpoint-10",
    ]
    assert ckpt.latest_checkpoint(tmp_path) == tmp_path / "checkpoint-10"
    incomplete = {p.name for p in ckpt.incomplete_checkpoints(tmp_path)}
    assert incomplete == {"checkpoint-100", f"checkpoint-200.tmp-{DEAD_PID}"}
    removed = ckpt.remove_incomplete(tmp_path)
    assert {p.name for p in removed} == incomplete
    assert (
        not (tmp_path / "checkpoint-100").exists()
        and not (tmp_path / f"checkpoint-200.tmp-{DEAD_PID}").exists()
    )
    assert (tmp_path / "checkpoint-final").exists() and (tmp_path / "checkpoint-10").exists()


def test_rotate_keeps_newest(tmp_path: Path) -> None:
    for step in (1, 2, 3, 4, 5):
        ckpt.publish(_fake_written(tmp_path, step), step)
    removed = ckpt.rotate(tmp_path, keep=2)
    assert [p.name for p in removed] == ["checkpoint-1", "checkpoint-2", "checkpoint-3"]
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["checkpoint-4", "checkpoint-5"]
    assert ckpt.rotate(tmp_path, keep=None) == [] and ckpt.rotate(tmp_path, keep=0) == []
    assert len(ckpt.list_checkpoints(tmp_path)) == 2


def test_republishing_a_step_replaces_it(tmp_path: Path) -> None:
    ckpt.publish(_fake_written(tmp_path, 7, pid=1), 7)
    tmp = ckpt.temp_checkpoint_dir(tmp_path, 7, 2)
    tmp.mkdir()
    (tmp / "model.safetensors").write_bytes(b"newer")
    final = ckpt.publish(tmp, 7)
    assert (final / "model.safetensors").read_bytes() == b"newer"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-7"]


def test_archive_for_fresh_start(tmp_path: Path) -> None:
    ckpt.publish(_fake_written(tmp_path, 3), 3)
    _fake_written(tmp_path, 4)
    (tmp_path / "metrics.jsonl").write_text("{}\n")
    dest = ckpt.archive_checkpoints(tmp_path)
    assert dest is not None and dest.name.startswith("superseded-")
    assert ckpt.list_checkpoints(tmp_path) == [] and ckpt.incomplete_checkpoints(tmp_path) == []
    assert (dest / "checkpoint-3" / ckpt.COMPLETE_MARKER).is_file() and (dest / "metrics.jsonl").is_file()
    assert ckpt.archive_checkpoints(tmp_path) is None


def test_helpers_reject_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a checkpoint folder"):
        ckpt.checkpoint_step(tmp_path / "weights")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ckpt.publish(tmp_path / "checkpoint-1.tmp-1", 1)
    bad = tmp_path / "checkpoint-5"
    bad.mkdir()
    (bad / ckpt.DATA_STATE_NAME).write_text("{not json")
    with pytest.raises(ValueError, match="data_state.json"):
        ckpt.read_data_state(bad)
    assert ckpt.read_data_state(tmp_path) is None


# ---- resume compatibility ----------------------------------------------------------------------


def _tiny(**overrides):
    import torch

    from gr00t.model.gr00t_n16 import Gr00tN16Model
    from gr00t.model.presets import load_preset

    torch.manual_seed(0)
    return Gr00tN16Model(load_preset("n16_tiny", **overrides))


@pytest.fixture(scope="module")
def dropout_checkpoint(tmp_path_factory) -> Path:
    """A published checkpoint of the tiny model trained with state dropout (it has `mask_token`)."""
    run_dir = tmp_path_factory.mktemp("resume_run")
    tmp = ckpt.temp_checkpoint_dir(run_dir, 3, 1)
    _tiny(state_dropout_prob=0.5).save_pretrained(tmp)
    return ckpt.publish(tmp, 3)


def test_published_checkpoint_files_are_shareable(dropout_checkpoint: Path) -> None:
    """safetensors writes its weights 0600; a published checkpoint has ordinary umask modes (0644/0755)."""
    import stat

    from gr00t import atomic

    assert (dropout_checkpoint / "model.safetensors").is_file()
    for path in [dropout_checkpoint, *dropout_checkpoint.rglob("*")]:
        want = atomic.dir_mode() if path.is_dir() else atomic.file_mode()
        assert stat.S_IMODE(path.stat().st_mode) == want, path


def test_resume_check_refuses_removed_and_reshaped_parameters(dropout_checkpoint: Path) -> None:
    with pytest.raises(ckpt.ResumeMismatchError) as info:
        ckpt.check_resume_compatible(dropout_checkpoint, _tiny(state_dropout_prob=0.0))
    message = str(info.value)
    assert str(dropout_checkpoint) in message and "resume=false" in message and "new run_dir" in message
    assert "state_dropout_prob: 0.5 -> 0.0" in message
    assert "in the checkpoint but not in the model: action_head.mask_token" in message
    with pytest.raises(ckpt.ResumeMismatchError) as info:
        ckpt.check_resume_compatible(dropout_checkpoint, _tiny(state_dropout_prob=0.5, dit_num_layers=2))
    message = str(info.value)
    assert "dit_num_layers: 4 -> 2" in message and "state_dropout_prob" not in message
    assert "action_head.model.transformer_blocks.2." in message
    with pytest.raises(ckpt.ResumeMismatchError, match=r"with another shape: .*\[.*\] -> \[.*\]"):
        ckpt.check_resume_compatible(dropout_checkpoint, _tiny(state_dropout_prob=0.5, max_action_dim=16))


def test_resume_check_allows_training_only_changes(dropout_checkpoint: Path) -> None:
    assert ckpt.check_resume_compatible(dropout_checkpoint, _tiny(state_dropout_prob=0.5)) == {}
    changed = ckpt.check_resume_compatible(
        dropout_checkpoint, _tiny(state_dropout_prob=0.3, tune_llm=True, tune_diffusion_model=False)
    )
    assert changed == {
        "state_dropout_prob": (0.5, 0.3),
        "tune_llm": (False, True),
        "tune_diffusion_model": (True, False),
    }


def test_resume_check_reads_sharded_weights(tmp_path: Path) -> None:
    model = _tiny()
    model.save_pretrained(tmp_path, max_shard_size="100KB")
    assert (tmp_path / ckpt.WEIGHTS_INDEX_NAME).is_file() and not (tmp_path / ckpt.WEIGHTS_NAME).exists()
    shapes = ckpt.checkpoint_tensor_shapes(tmp_path)
    assert shapes == {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ckpt.check_resume_compatible(tmp_path, model) == {}
    assert ckpt.checkpoint_tensor_shapes(tmp_path / "nothing") is None


def test_cleanup_never_touches_a_live_writers_temporary(tmp_path: Path) -> None:
    """Another live process's checkpoint-<N>.tmp-<pid> survives remove_incomplete and archiving."""
    import subprocess
    import sys

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        live = _fake_written(tmp_path, 8, pid=other.pid)
        dead = _fake_written(tmp_path, 6)
        mine = _fake_written(tmp_path, 4, pid=os.getpid())  # left by this very process: ours to clean
        assert ckpt.temp_owner(live) == other.pid and ckpt.foreign_temporaries(tmp_path) == [live]
        assert set(ckpt.remove_incomplete(tmp_path)) == {dead, mine}
        assert live.is_dir() and (live / "model.safetensors").read_bytes() == b"weights-8"
        ckpt.publish(_fake_written(tmp_path, 2), 2)
        archived = ckpt.archive_checkpoints(tmp_path)
        assert archived is not None and (archived / "checkpoint-2").is_dir() and live.is_dir()
    finally:
        other.kill()
        other.wait()
    assert ckpt.foreign_temporaries(tmp_path) == []  # its writer is gone: now it is debris
    assert ckpt.remove_incomplete(tmp_path) == [live] and not live.exists()
