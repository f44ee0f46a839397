"""Whether a checkpoint fits the model that would resume from it (`gr00t.train.resume_check`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gr00t.model.checkpoint_files import WEIGHTS_INDEX_NAME, WEIGHTS_NAME
from gr00t.train.resume_check import ResumeMismatchError, check_resume_compatible
from gr00t.train.run_dir import Checkpoint, RunDir


def _tiny(**overrides):
    import torch

    from gr00t.model.gr00t_n16 import Gr00tN16Model
    from gr00t.model.presets import load_preset

    torch.manual_seed(0)
    return Gr00tN16Model(load_preset("n16_tiny", **overrides))


@pytest.fixture(scope="module")
def dropout_checkpoint(tmp_path_factory) -> Path:
    """A published checkpoint of the tiny model trained with state dropout (it has `mask_token`)."""
    run = RunDir(tmp_path_factory.mktemp("resume_run"))
    tmp = run.begin_checkpoint(3, 1, create=True)
    _tiny(state_dropout_prob=0.5).save_pretrained(tmp.path)
    return run.publish(tmp).path


def test_published_checkpoint_files_are_shareable(dropout_checkpoint: Path) -> None:
    """safetensors writes its weights 0600; a published checkpoint has ordinary umask modes (0644/0755)."""
    import stat

    from gr00t import atomic

    assert (dropout_checkpoint / "model.safetensors").is_file()
    for path in [dropout_checkpoint, *dropout_checkpoint.rglob("*")]:
        want = atomic.dir_mode() if path.is_dir() else atomic.file_mode()
        assert stat.S_IMODE(path.stat().st_mode) == want, path


def test_resume_check_refuses_removed_and_reshaped_parameters(dropout_checkpoint: Path) -> None:
    with pytest.raises(ResumeMismatchError) as info:
        check_resume_compatible(dropout_checkpoint, _tiny(state_dropout_prob=0.0))
    message = str(info.value)
    assert str(dropout_checkpoint) in message and "resume=false" in message and "new run_dir" in message
    assert "state_dropout_prob: 0.5 -> 0.0" in message
    assert "in the checkpoint but not in the model: action_head.mask_token" in message
    with pytest.raises(ResumeMismatchError) as info:
        check_resume_compatible(dropout_checkpoint, _tiny(state_dropout_prob=0.5, dit_num_layers=2))
    message = str(info.value)
    assert "dit_num_layers: 4 -> 2" in message and "state_dropout_prob" not in message
    assert "action_head.model.transformer_blocks.2." in message
    with pytest.raises(ResumeMismatchError, match=r"with another shape: .*\[.*\] -> \[.*\]"):
        check_resume_compatible(dropout_checkpoint, _tiny(state_dropout_prob=0.5, max_action_dim=16))


def test_resume_check_allows_training_only_changes(dropout_checkpoint: Path) -> None:
    assert check_resume_compatible(dropout_checkpoint, _tiny(state_dropout_prob=0.5)) == {}
    changed = check_resume_compatible(
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
    assert (tmp_path / WEIGHTS_INDEX_NAME).is_file() and not (tmp_path / WEIGHTS_NAME).exists()
    shapes = Checkpoint(tmp_path).tensor_shapes()
    assert shapes == {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert check_resume_compatible(tmp_path, model) == {}
    assert Checkpoint(tmp_path / "nothing").tensor_shapes() is None
