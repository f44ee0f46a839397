"""Validation loss on held-out episodes (gr00t/train/validation.py): deterministic, logged as `val_loss`,
no effect on training; end to end through gr00t-finetune `val_episodes=` and gr00t-eval's default."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gr00t.data.dataset import Gr00tDataset, MixtureDataset
from gr00t.train.loader import finish_pixel_values
from gr00t.train.trainer import TrainingSettings, run_training
from gr00t.train.validation import ValidationLoss, spread_positions

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _pipeline import EMBODIMENT, build_pipeline  # noqa: E402
from conftest import logged  # noqa: E402


def test_positions_are_evenly_spread() -> None:
    assert spread_positions(10, 3) == [0, 4, 9] or spread_positions(10, 3) == [0, 5, 9]
    assert spread_positions(4, 10) == [0, 1, 2, 3]
    assert spread_positions(0, 5) == []


def _settings(**kw) -> TrainingSettings:
    base = dict(
        max_steps=2,
        per_device_batch_size=2,
        save_steps=2,
        logging_steps=1,
        dataloader_num_workers=0,
        wandb_mode="disabled",
        progress_bar=False,
        learning_rate=1e-3,
        eval_steps=1,
        eval_samples=6,
    )
    base.update(kw)
    return TrainingSettings(**base)


@pytest.mark.slow
def test_validation_is_deterministic_and_leaves_training_untouched(train_data: Path, tmp_path: Path) -> None:
    model, dataset, collator, processor, _ = build_pipeline(train_data)
    held = MixtureDataset(
        [Gr00tDataset(train_data, EMBODIMENT, episodes=[4, 5])], copy.copy(processor).eval()
    )
    record = {"format": 1, "datasets": [{"path": str(train_data), "episodes": [4, 5]}]}
    run_training(
        model, dataset, collator, _settings(), tmp_path / "val", eval_dataset=held, heldout_episodes=record
    )
    rows = logged(tmp_path / "val")
    val = {r["step"]: r["val_loss"] for r in rows if "val_loss" in r}
    assert sorted(val) == [1, 2] and all(0 < v < 10 for v in val.values()) and val[1] != val[2]
    assert json.loads((tmp_path / "val" / "checkpoint-2" / "heldout_episodes.json").read_text()) == record
    # the same weights give the same value, bit for bit
    again = ValidationLoss(held, collator, batch_size=3, max_samples=6, seed=42)(model, finish_pixel_values)
    assert again == pytest.approx(val[2], rel=1e-6)
    assert ValidationLoss(held, collator, 3, 6, 42)(model, finish_pixel_values) == again
    # a run without validation trains identically: the validation never touches the RNG or the data order
    model2, dataset2, collator2, _, _ = build_pipeline(train_data)
    run_training(model2, dataset2, collator2, _settings(), tmp_path / "plain")
    plain = [(r["step"], r["loss"]) for r in logged(tmp_path / "plain") if "loss" in r]
    assert plain == [(r["step"], r["loss"]) for r in rows if "loss" in r]
    for (name, a), b in zip(model.state_dict().items(), model2.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.slow
def test_finetune_holds_episodes_out_and_eval_uses_them(tmp_path: Path, demo_dataset_v3: Path) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(demo_dataset_v3, data)
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "gr00t.cli.finetune", "embodiment=new_embodiment", f"data={data}"]
    cmd += [
        "model=n16_tiny",
        "trainer=demo",
        f"run_dir={run_dir}",
        "trainer.max_steps=2",
        "trainer.save_steps=2",
    ]
    cmd += ["trainer.global_batch_size=2", "trainer.logging_steps=1", "trainer.eval_steps=1"]
    cmd += ["trainer.eval_samples=4", "val_episodes=2", "seed=3"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads((run_dir / "checkpoint-2" / "heldout_episodes.json").read_text())
    held = record["datasets"][0]["episodes"]
    assert len(held) == 2 and record["datasets"][0]["path"] == str(data.resolve())
    effective = json.loads((run_dir / "effective_settings.json").read_text())
    assert effective["samples_per_dataset"] == [4 * (60 - 15)]  # 4 of 6 episodes train, 45 steps each
    assert sorted(r["step"] for r in logged(run_dir) if "val_loss" in r) == [1, 2]
    out = tmp_path / "eval"
    evaluate = [sys.executable, "-m", "gr00t.cli.eval", f"checkpoint={run_dir}", f"data={data}"]
    evaluate += ["embodiment=new_embodiment", "max_steps=16", "plots=false", f"output_dir={out}"]
    proc = subprocess.run(evaluate, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"held out of training {held}" in proc.stderr
    assert [e["episode_index"] for e in json.loads((out / "metrics.json").read_text())["episodes"]] == held
    proc = subprocess.run(
        [*evaluate, "episodes=all"], capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(json.loads((out / "metrics.json").read_text())["episodes"]) == 6
