"""Resuming after the trainable set changed: stored optimiser parameter names decide whether the
AdamW moments are restored (bit-exactly) or started fresh.

A tiny real ``PreTrainedModel`` with two same-shaped linear layers trains either one of them, so
the trainable tensors have identical counts and shapes in both configurations and only their
names tell them apart (the case a count/shape comparison cannot catch).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel, TrainerCallback
from transformers.utils import ModelOutput

from gr00t.train import run_dir as rd
from gr00t.train.resume_check import names_difference, param_group_names, shape_mismatch
from gr00t.train.run_dir import Checkpoint, CheckpointStaging
from gr00t.train.trainer import TrainingSettings, run_training


class PairConfig(PretrainedConfig):
    model_type = "gr00t_test_pair"

    def __init__(self, trained: str = "first", **kwargs) -> None:
        self.trained = trained
        super().__init__(**kwargs)


class PairModel(PreTrainedModel):
    """y = second(first(x)); only the layer named by ``config.trained`` is trainable."""

    config_class = PairConfig

    def __init__(self, config: PairConfig) -> None:
        super().__init__(config)
        self.first = nn.Linear(3, 3)
        self.second = nn.Linear(3, 3)
        self.post_init()
        for name, param in self.named_parameters():
            param.requires_grad_(name.startswith(config.trained + "."))

    def _init_weights(self, module: nn.Module) -> None:  # keep torch's seeded default init
        pass

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> ModelOutput:
        return ModelOutput(loss=nn.functional.mse_loss(self.second(self.first(x)), y))


def _data() -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, generator=g)
    return [{"x": x[i], "y": x[i].flip(0) * 2.0} for i in range(16)]


def _collate(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([s[k] for s in samples]) for k in samples[0]}


class _CaptureOptimizerAtStart(TrainerCallback):
    """Records, per parameter name, the optimiser state the run starts from (after the resume load)."""

    def __init__(self, checkpoint: Path) -> None:
        self.checkpoint = checkpoint
        self.state: dict[str, dict[str, torch.Tensor]] | None = None
        self.shape_check: str | None = "not run"

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        names = {id(p): n for n, p in model.named_parameters()}
        self.state = {
            names[id(p)]: {k: v.clone() for k, v in optimizer.state[p].items()}
            for group in optimizer.param_groups
            for p in group["params"]
            if p in optimizer.state
        }
        self.shape_check = shape_mismatch(self.checkpoint, optimizer)


def _train(run_dir: Path, trained: str, max_steps: int, callbacks=None):
    torch.manual_seed(0)
    model = PairModel(PairConfig(trained=trained))
    settings = TrainingSettings(
        max_steps=max_steps,
        per_device_batch_size=4,
        save_steps=2,
        logging_steps=1,
        learning_rate=1e-2,
        weight_decay=0.01,
        warmup_ratio=0.0,
        dataloader_num_workers=0,
        wandb_mode="disabled",
        progress_bar=False,
        seed=1,
        deepspeed="none",
    )
    return run_training(model, _data(), _collate, settings, run_dir, callbacks=callbacks)


def _resume(source_run: Path, run_dir: Path, trained: str) -> _CaptureOptimizerAtStart:
    """Copy ``source_run`` to ``run_dir`` and train one more step from its checkpoint-2."""
    shutil.copytree(source_run, run_dir)
    capture = _CaptureOptimizerAtStart(run_dir / "checkpoint-2")
    result = _train(run_dir, trained, max_steps=3, callbacks=[capture])
    assert result.resumed_from == run_dir / "checkpoint-2" and result.global_step == 3
    return capture


def _saved_moments(checkpoint: Path) -> dict[str, dict[str, torch.Tensor]]:
    """optimizer.pt's per-tensor state keyed by the parameter names stored next to it."""
    saved = torch.load(checkpoint / "optimizer.pt", weights_only=True)
    names = [n for g in Checkpoint(Path(checkpoint)).optimizer_param_names() for n in g["params"]]
    ids = [i for g in saved["param_groups"] for i in g["params"]]
    return {name: saved["state"][i] for name, i in zip(names, ids)}


def test_same_shapes_other_names_start_fresh_unchanged_restore_exactly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first_run = tmp_path / "first"
    _train(first_run, "first", max_steps=2)
    source = first_run / "checkpoint-2"
    stored = json.loads((source / rd.OPTIMIZER_PARAMS_NAME).read_text())
    assert stored["param_groups"] == [
        {"name": "head/decay", "params": ["first.weight"]},
        {"name": "head/no_decay", "params": ["first.bias"]},
    ]
    moments = _saved_moments(source)
    assert set(moments) == {"first.weight", "first.bias"} and int(moments["first.bias"]["step"]) == 2

    # Unchanged trainable set: the moments the run starts from are the stored ones, bit for bit.
    with caplog.at_level("WARNING", logger="gr00t.train.trainer"):
        capture = _resume(first_run, tmp_path / "same", "first")
    assert "fresh optimiser moments" not in caplog.text
    assert capture.state is not None and set(capture.state) == {"first.weight", "first.bias"}
    for name, state in capture.state.items():
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(state[key], moments[name][key]), (name, key)
    assert {int(s["step"]) for s in _saved_moments(tmp_path / "same" / "checkpoint-3").values()} == {3}

    # Other layer trained: same counts and shapes (the count/shape check cannot tell), other names.
    caplog.clear()
    with caplog.at_level("WARNING", logger="gr00t.train.trainer"):
        capture = _resume(first_run, tmp_path / "other", "second")
    assert capture.shape_check is None, "shapes alone would have let the old moments through"
    assert capture.state == {}, f"stored moments were loaded onto {sorted(capture.state or {})}"
    assert (
        "fresh optimiser moments: the optimiser's parameters changed: now also trains second.bias"
        in caplog.text
    )
    assert "no longer trains first.bias, first.weight" in caplog.text
    after = _saved_moments(tmp_path / "other" / "checkpoint-3")
    assert set(after) == {"second.weight", "second.bias"}
    assert all(int(s["step"]) == 1 for s in after.values())  # one step on fresh moments
    scheduler = torch.load(tmp_path / "other" / "checkpoint-3" / "scheduler.pt", weights_only=True)
    assert scheduler["last_epoch"] == 3  # the schedule position was kept

    # A checkpoint from before the names file: today's count/shape rule, moments restored.
    legacy = tmp_path / "legacy_source"
    shutil.copytree(first_run, legacy)
    (legacy / "checkpoint-2" / rd.OPTIMIZER_PARAMS_NAME).unlink()
    caplog.clear()
    with caplog.at_level("WARNING", logger="gr00t.train.trainer"):
        capture = _resume(legacy, tmp_path / "legacy", "first")
    assert "fresh optimiser moments" not in caplog.text
    assert capture.state is not None and torch.equal(
        capture.state["first.weight"]["exp_avg"], moments["first.weight"]["exp_avg"]
    )


def test_names_difference_and_file_validation(tmp_path: Path) -> None:
    model = PairModel(PairConfig(trained="first"))
    groups = [{"name": "all", "params": [model.second.weight, model.first.weight]}]
    names = param_group_names(model, groups)
    assert names == [{"name": "all", "params": ["second.weight", "first.weight"]}]
    assert names_difference(names, names) is None
    reordered = [{"name": "all", "params": ["first.weight", "second.weight"]}]
    assert "same parameters in another group layout or order" in names_difference(names, reordered)
    regrouped = [{"name": "a", "params": ["second.weight"]}, {"name": "b", "params": ["first.weight"]}]
    assert "another group layout" in names_difference(names, regrouped)
    assert names_difference(names, [{"name": "all", "params": ["second.weight"]}]) == (
        "the optimiser's parameters changed: no longer trains first.weight"
    )
    # Round trip through the file, then corrupt files are refused naming the file.
    CheckpointStaging(tmp_path, 1).write_side_files(settings={}, data_state={}, optimizer_param_names=names)
    assert Checkpoint(tmp_path).optimizer_param_names() == names
    assert Checkpoint(tmp_path / "missing").optimizer_param_names() is None
    path = tmp_path / rd.OPTIMIZER_PARAMS_NAME
    path.write_text("{oops")
    with pytest.raises(ValueError, match=r"optimizer_params\.json: corrupt"):
        Checkpoint(tmp_path).optimizer_param_names()
    path.write_text(json.dumps({"param_groups": [{"name": "x", "params": [1, 2]}]}))
    with pytest.raises(ValueError, match=r"optimizer_params\.json: expected"):
        Checkpoint(tmp_path).optimizer_param_names()
