"""Truncated or corrupt checkpoint files are named (gr00t/model/checkpoint_files.py), wherever they are loaded."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gr00t.model.checkpoint_files import IncompleteCheckpointError, check_checkpoint_files, check_safetensors
from gr00t.model.gr00t_n16 import Gr00tN16Model
from gr00t.model.presets import load_preset


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A tiny model saved with save_pretrained plus a torch.save file, as in a training checkpoint."""
    folder = tmp_path_factory.mktemp("ckpt") / "checkpoint-2"
    torch.manual_seed(0)
    Gr00tN16Model(load_preset("n16_tiny")).save_pretrained(folder)
    torch.save({"step": 2, "moments": torch.zeros(1000)}, folder / "optimizer.pt")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
    return folder


@pytest.fixture
def copy(saved, tmp_path) -> Path:
    return Path(shutil.copytree(saved, tmp_path / "checkpoint-2"))


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_intact_checkpoint_passes(saved):
    check_checkpoint_files(saved)
    Gr00tN16Model.from_pretrained(str(saved))


def test_truncated_weights_are_named_when_loading(copy):
    weights = copy / "model.safetensors"
    size = weights.stat().st_size
    _truncate(weights)
    with pytest.raises(IncompleteCheckpointError) as info:
        Gr00tN16Model.from_pretrained(str(copy))
    message = str(info.value)
    assert message.startswith(f"{weights}: truncated: {size // 2} bytes, the header declares {size}")
    assert f"the checkpoint {copy} is incomplete or corrupt" in message and "\n" not in message


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda p: p.write_bytes(b"\x01\x02"), "too short for a safetensors header"),
        (lambda p: p.write_bytes(b"\xff" * 64), "header length"),
        (
            lambda p: p.write_bytes((30).to_bytes(8, "little") + b"{not json at all, no" + b"x" * 40),
            "unreadable safetensors header",
        ),
        (lambda p: p.write_bytes(p.read_bytes() + b"junk"), "longer than its header declares"),
    ],
)
def test_corrupt_weights(copy, damage, expected):
    damage(copy / "model.safetensors")
    with pytest.raises(IncompleteCheckpointError, match=expected):
        check_safetensors(copy / "model.safetensors")
    with pytest.raises(IncompleteCheckpointError, match="model.safetensors"):
        Gr00tN16Model.from_pretrained(str(copy))


def test_missing_shard_and_broken_json_are_named(copy):
    (copy / "model.safetensors").rename(copy / "model-00001-of-00002.safetensors")
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (copy / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(IncompleteCheckpointError, match="model-00002-of-00002.safetensors: missing"):
        check_checkpoint_files(copy)
    _truncate(copy / "config.json")
    with pytest.raises(IncompleteCheckpointError, match="config.json: not valid JSON"):
        Gr00tN16Model.from_pretrained(str(copy))


def test_resume_files_are_checked(copy):
    """What only a resume reads: optimizer state and trainer state."""
    from gr00t.train import checkpoint as ckpt

    _truncate(copy / "optimizer.pt", 0.9)
    with pytest.raises(IncompleteCheckpointError, match="optimizer.pt: not a complete torch.save archive"):
        ckpt.check_resume_compatible(copy, Gr00tN16Model(load_preset("n16_tiny")))
    Gr00tN16Model.from_pretrained(str(copy))  # serving the weights still works
    (copy / "optimizer.pt").unlink()
    _truncate(copy / "trainer_state.json")
    with pytest.raises(IncompleteCheckpointError, match="trainer_state.json: not valid JSON"):
        check_checkpoint_files(copy)


def test_finetune_from_a_truncated_base_is_one_line(copy, demo_dataset_v3, tmp_path):
    data = Path(shutil.copytree(demo_dataset_v3, tmp_path / "data"))
    _truncate(copy / "model.safetensors")
    proc = subprocess.run(
        [sys.executable, "-m", "gr00t.cli.finetune", "embodiment=new_embodiment", f"data={data}"]
        + ["model=n16_tiny", "trainer=demo", f"base={copy}", f"run_dir={tmp_path / 'run'}", "tokenizer=tiny"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert errors[0].startswith(f"gr00t-finetune: error: {copy / 'model.safetensors'}: truncated")
