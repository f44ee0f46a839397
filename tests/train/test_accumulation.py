"""Gradient accumulation through the real trainer: 2 micro-batches of 4 make the same update as one
batch of 8 (fp32), and the pretraining recipe runs with accumulation under torchrun."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gr00t.model.gr00t_n16 import Gr00tN16Model
from gr00t.train.trainer import TrainingSettings, run_training

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _pipeline import build_pipeline  # noqa: E402
from conftest import REPO, describe, free_port, worker_env  # noqa: E402


class SampleKeyedFlow(Gr00tN16Model):
    """The real model with its flow draw (noise, t) a pure function of each sample, so that one batch
    of 8 and two of 4 see the same draws (the global RNG is consumed in another order)."""

    def forward(self, batch, noise=None, t=None):
        state = batch.head.state.float()
        key = state.flatten(1).sum(-1)  # [B]
        shape = batch.head.action.shape
        grid = torch.arange(shape[1] * shape[2], dtype=torch.float32).reshape(1, shape[1], shape[2])
        noise = torch.sin(grid * 0.37 + key[:, None, None] * 3.1)
        t = torch.sigmoid(key) * 0.999
        return super().forward(batch, noise=noise, t=t)


def _train(data: Path, run_dir: Path, batch: int, accumulation: int) -> Path:
    model, dataset, collator, processor, stats = build_pipeline(data, dit_dropout=0.0)
    flow = SampleKeyedFlow(model.config)
    flow.load_state_dict(model.state_dict())
    settings = TrainingSettings(
        max_steps=2,
        per_device_batch_size=batch,
        gradient_accumulation_steps=accumulation,
        save_steps=1,
        logging_steps=1,
        learning_rate=1e-4,  # the recipe's; Adam's first steps move each weight by about the lr
        warmup_ratio=0.0,
        dataloader_num_workers=0,
        wandb_mode="disabled",
        progress_bar=False,
        seed=11,
    )
    result = run_training(flow, dataset, collator, settings, run_dir, processor=processor, statistics=stats)
    assert result.global_step == 2 and result.global_batch_size == 8
    return run_dir


def test_accumulating_two_batches_of_4_equals_one_batch_of_8(train_data: Path, tmp_path: Path) -> None:
    whole = _train(train_data, tmp_path / "one-by-8", batch=8, accumulation=1)
    split = _train(train_data, tmp_path / "two-by-4", batch=4, accumulation=2)
    for step in (1, 2):
        a = load_file(str(whole / f"checkpoint-{step}" / "model.safetensors"))
        b = load_file(str(split / f"checkpoint-{step}" / "model.safetensors"))
        diffs = {k: float((a[k].float() - b[k].float()).abs().max()) for k in a}
        worst = max(diffs, key=diffs.get)
        assert diffs[worst] <= 1e-6, (
            f"step {step}: largest weight difference {diffs[worst]:.3g} ({worst}, |w| up to {float(a[worst].abs().max()):.3g})"
        )
        moved = max(float((a[k].float() - c.float()).abs().max()) for k, c in _initial(train_data).items())
        assert moved > 5e-5  # the step did change the weights
    # both consumed the same samples (the decode-aware order records the per-device micro-batch in its
    # layout; with one stream the order does not depend on it)
    assert _data_state(whole) == _data_state(split)


def _data_state(run_dir: Path) -> dict:
    state = json.loads((run_dir / "checkpoint-2" / "data_state.json").read_text())
    state.get("layout", {}).pop("batch_size", None)
    return state


def _initial(data: Path) -> dict[str, torch.Tensor]:
    model, *_ = build_pipeline(data, dit_dropout=0.0)
    return {k: v for k, v in model.state_dict().items() if k in dict(model.named_parameters())}


@pytest.mark.slow
def test_pretrain_recipe_with_accumulation_under_torchrun(tmp_path: Path) -> None:
    """`recipe=pretrain_n16` on the synthetic mixture, 2 processes x 2 accumulation steps."""
    root = tmp_path / "data"
    env = worker_env()
    demo = subprocess.run([sys.executable, "-m", "gr00t.cli.demo_data", "--mixture", "pretrain_n16", str(root)],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert demo.returncode == 0, demo.stderr
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
           "--master_addr=127.0.0.1", f"--master_port={free_port()}", "-m", "gr00t.cli.train",
           "recipe=pretrain_n16", "model=n16_tiny", f"data_root={root}", f"run_dir={run_dir}",
           "trainer.max_steps=2", "trainer.save_steps=2", "trainer.per_device_batch_size=2",
           "trainer.gradient_accumulation_steps=2", "trainer.dataloader_num_workers=0", "trainer.cpu_threads=1",
           "image.size=64"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, describe(proc)
    assert "global batch 8 = 2 per device x 2 processes x 2 accumulation" in proc.stdout
    checkpoint = run_dir / "checkpoint-2"
    assert (checkpoint / "COMPLETE").is_file()
    config = (checkpoint / "config.json").read_text()
    assert '"action_horizon": 50' in config and '"max_action_dim": 128' in config
    shutil.rmtree(root)
