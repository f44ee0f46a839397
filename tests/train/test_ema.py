"""Weight EMA (`trainer.ema_decay`, gr00t/train/ema.py): the warm-up rule, the checkpoint file, exact
resume after SIGKILL, the loaders' default, and DeepSpeed ZeRO-2 with two processes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from gr00t.model.gr00t_n16 import Gr00tN16Model
from gr00t.train.ema import WeightEma, ema_decay_at
from gr00t.train.trainer import TrainingSettings, run_training

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _pipeline import build_pipeline  # noqa: E402
from conftest import assert_same_weights, describe, logged, run_worker  # noqa: E402


def test_decay_warms_up_then_holds() -> None:
    assert ema_decay_at(0.999, 0) == pytest.approx(0.1)
    assert ema_decay_at(0.999, 1) == pytest.approx(2 / 11)
    assert ema_decay_at(0.5, 10) == 0.5  # (1+10)/(10+10) = 0.55 > 0.5
    assert ema_decay_at(0.999, 10**6) == 0.999
    with pytest.raises(ValueError, match="ema_decay"):
        WeightEma(1.0)
    with pytest.raises(ValueError, match=r"trainer.ema_decay=1.5"):
        TrainingSettings(ema_decay=1.5, per_device_batch_size=1).validate()


def test_update_save_and_load_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    model[1].requires_grad_(False)
    ema = WeightEma(0.9)
    ema.start(model)
    assert set(ema.shadow) == {"0.weight", "0.bias"}  # trained parameters only
    start = {n: t.clone() for n, t in ema.shadow.items()}
    with torch.no_grad():
        model[0].weight.add_(1.0)
    ema.update(model)
    expected = start["0.weight"] * 0.1 + model[0].weight * 0.9  # decay 0.1 at the first update
    torch.testing.assert_close(ema.shadow["0.weight"], expected, rtol=0, atol=3e-7)
    path = ema.save(tmp_path)
    again = WeightEma(0.9)
    assert again.load(path, model) and again.updates == 1
    assert all(torch.equal(again.shadow[n], ema.shadow[n]) for n in ema.shadow)
    model[1].requires_grad_(True)  # another trained set: the stored average does not fit
    assert not WeightEma(0.9).load(path, model)


def _initial_trained(data: Path) -> dict[str, torch.Tensor]:
    model, *_ = build_pipeline(data)
    return {n: p.detach().float().clone() for n, p in model.named_parameters() if p.requires_grad}


def _replay_ema(
    initial: dict[str, torch.Tensor], checkpoints: list[Path], decay: float
) -> dict[str, torch.Tensor]:
    """The EMA recomputed from the raw weights each step's checkpoint holds."""
    ema = {n: t.clone() for n, t in initial.items()}
    for t, checkpoint in enumerate(checkpoints):
        raw = load_file(str(checkpoint / "model.safetensors"))
        d = ema_decay_at(decay, t)
        for name, avg in ema.items():
            avg.mul_(d).add_(raw[name].float(), alpha=1.0 - d)
    return ema


def _assert_ema_matches_replay(data: Path, run_dir: Path, steps: int, decay: float) -> None:
    checkpoints = [run_dir / f"checkpoint-{s}" for s in range(1, steps + 1)]
    expected = _replay_ema(_initial_trained(data), checkpoints, decay)
    path = checkpoints[-1] / "ema.safetensors"
    stored = load_file(str(path))
    assert stored.keys() == expected.keys()
    assert stored.keys() <= load_file(str(checkpoints[-1] / "model.safetensors")).keys()  # same key names
    with safe_open(str(path), "pt") as f:
        assert f.metadata()["updates"] == str(steps)
    different = [n for n in stored if not torch.equal(stored[n], expected[n])]
    assert not different, different[:5]
    raw = load_file(str(checkpoints[-1] / "model.safetensors"))
    assert any(not torch.equal(stored[n], raw[n].float()) for n in stored)  # an average, not a copy


@pytest.mark.slow
def test_ema_checkpoint_is_the_average_of_the_raw_weights_and_loaders_use_it(
    train_data: Path, tmp_path: Path
) -> None:
    model, dataset, collator, processor, _ = build_pipeline(train_data)
    settings = TrainingSettings(
        max_steps=3,
        per_device_batch_size=2,
        save_steps=1,
        logging_steps=1,
        dataloader_num_workers=0,
        wandb_mode="disabled",
        progress_bar=False,
        learning_rate=1e-3,
        ema_decay=0.9,
    )
    run_training(model, dataset, collator, settings, tmp_path, processor=processor)
    _assert_ema_matches_replay(train_data, tmp_path, 3, 0.9)
    final = tmp_path / "checkpoint-3"
    stored = load_file(str(final / "ema.safetensors"))
    live = model.state_dict()
    assert all(torch.equal(t, live[n]) for n, t in load_file(str(final / "model.safetensors")).items())
    name = next(n for n in stored if n.startswith("action_head."))
    policy_default = Gr00tN16Model.from_pretrained(str(final)).state_dict()[name]
    policy_raw = Gr00tN16Model.from_pretrained(str(final), weights="raw").state_dict()[name]
    assert torch.equal(policy_default, stored[name].to(live[name].dtype))
    assert torch.equal(policy_raw, live[name])


COMMON = ["--max-steps", "6", "--save-steps", "2", "--batch", "3", "--lr", "1e-3", "--workers", "1"]


@pytest.mark.slow
def test_ema_resumes_exactly_after_sigkill(train_data: Path, tmp_path: Path) -> None:
    common = ["--data", str(train_data), *COMMON, "--ema-decay", "0.9"]
    reference = tmp_path / "reference"
    proc, _ = run_worker(["--run-dir", str(reference), *common])
    assert proc.returncode == 0, describe(proc)
    run = tmp_path / "killed"
    killed, _ = run_worker(["--run-dir", str(run), *common, "--kill-after-save", "4"])
    assert killed.returncode == -9, describe(killed)
    proc, result = run_worker(["--run-dir", str(run), *common])
    assert proc.returncode == 0 and result is not None, describe(proc)
    assert result["resumed_from"] == str(run / "checkpoint-4")
    assert_same_weights(reference / "checkpoint-6", run / "checkpoint-6")
    ref_ema = load_file(str(reference / "checkpoint-6" / "ema.safetensors"))
    res_ema = load_file(str(run / "checkpoint-6" / "ema.safetensors"))
    assert ref_ema.keys() == res_ema.keys() and len(ref_ema) > 20
    different = [n for n in ref_ema if not torch.equal(ref_ema[n], res_ema[n])]
    assert not different, different[:5]
    ref = {r["step"]: r["loss"] for r in logged(reference) if "loss" in r}
    assert {r["step"]: r["loss"] for r in logged(run) if "loss" in r and r["step"] > 4} == {
        5: ref[5],
        6: ref[6],
    }


@pytest.mark.slow
def test_ema_under_deepspeed_zero2_two_processes(train_data: Path, tmp_path: Path) -> None:
    args = ["--run-dir", str(tmp_path), "--data", str(train_data), "--deepspeed", "zero2", "--batch", "2"]
    args += ["--lr", "3e-3", "--max-steps", "3", "--save-steps", "1", "--ema-decay", "0.9"]
    proc, result = run_worker(args, nproc=2)
    assert proc.returncode == 0 and result is not None, describe(proc)
    assert "DeepSpeed ZeRO-2" in proc.stdout and result["global_step"] == 3
    _assert_ema_matches_replay(train_data, tmp_path, 3, 0.9)
