"""The precision policy (SPEC §1.1) through the real trainer: frozen weights in `model_dtype`,
trainable ones float32 master weights, bf16 autocast compute — in checkpoints, after resume, in
the policy, on CPU and under DeepSpeed ZeRO-2 with two processes."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gr00t.model.gr00t_n16 import Gr00tN16Model, stored_dtypes
from gr00t.policy.policy import Gr00tPolicy
from gr00t.train.trainer import TrainingSettings, run_training

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _pipeline import build_pipeline  # noqa: E402
from conftest import describe, run_worker  # noqa: E402


def expected_dtypes(model: Gr00tN16Model) -> dict[str, torch.dtype]:
    """What the policy says, from the trainability flags (not from the model's current dtypes)."""
    return {n: torch.float32 if p.requires_grad else torch.bfloat16 for n, p in model.named_parameters()}


def _train(data: Path, run_dir: Path, max_steps: int) -> tuple[Gr00tN16Model, object]:
    model, dataset, collator, processor, stats = build_pipeline(data, model_dtype="bfloat16")
    settings = TrainingSettings(
        max_steps=max_steps,
        per_device_batch_size=2,
        save_steps=2,
        logging_steps=1,
        dataloader_num_workers=0,
        wandb_mode="disabled",
        progress_bar=False,
        precision="bf16",
        learning_rate=1e-3,
    )
    result = run_training(
        model,
        dataset,
        collator,
        settings,
        run_dir,
        processor=processor,
        statistics=stats,
        embodiment_map=processor.embodiment_id_map(),
    )
    return model, result


def _observation(model: Gr00tN16Model) -> dict:
    rng = np.random.default_rng(0)
    return {
        "video": {
            cam: rng.integers(0, 255, (1, 1, 96, 128, 3), dtype=np.uint8) for cam in ("front", "wrist")
        },
        "state": {
            "arm": rng.normal(size=(1, 1, 6)).astype(np.float32),
            "gripper": np.ones((1, 1, 1), np.float32),
        },
        "language": {"annotation.human.task_description": [["pick up the red block"]]},
    }


@pytest.mark.slow
def test_bf16_cpu_training_keeps_the_policy_in_checkpoints_resume_and_the_policy(train_data, tmp_path):
    model, result = _train(train_data, tmp_path, max_steps=2)
    want = expected_dtypes(model)
    assert {str(d) for d in want.values()} == {"torch.float32", "torch.bfloat16"}
    assert np.isfinite(result.train_loss)
    first = tmp_path / "checkpoint-2"
    assert stored_dtypes(first) == {k: v for k, v in want.items()}
    # resume: the restored model trains on with the same dtypes and saves them again
    resumed, result2 = _train(train_data, tmp_path, max_steps=4)
    assert result2.resumed_from == first and result2.global_step == 4
    assert {n: p.dtype for n, p in resumed.named_parameters()} == want
    assert stored_dtypes(tmp_path / "checkpoint-4") == want
    # the policy loads exactly those dtypes and runs inference under the model's autocast
    policy = Gr00tPolicy.from_checkpoint(tmp_path / "checkpoint-4", "new_embodiment", seed=0)
    assert {n: p.dtype for n, p in policy.model.named_parameters()} == want
    actions = policy.get_action(_observation(policy.model))
    assert actions["arm"].dtype == np.float32 and np.isfinite(actions["arm"]).all()


def test_fp32_precision_with_a_bf16_model_is_a_clear_error():
    from gr00t.train.arguments import resolve_precision

    with pytest.raises(ValueError, match="trainer.precision=fp32 with model.model_dtype=bfloat16"):
        resolve_precision("fp32", "bfloat16")
    assert resolve_precision("auto", "bfloat16") == "bf16"  # CPU: autocast bf16
    assert resolve_precision("auto", "float32") == "fp32"
    assert resolve_precision("bf16", "float32") == "bf16"


@pytest.mark.slow
def test_zero2_two_processes_keep_the_precision_policy(train_data, tmp_path):
    """DeepSpeed's bf16 mode would cast the module (bf16 copies of the trainable weights); the trainer
    runs its fp32 engine on the float32 trainable parameters and autocasts instead."""
    args = ["--run-dir", str(tmp_path), "--data", str(train_data), "--deepspeed", "auto", "--batch", "2",
            "--max-steps", "2", "--save-steps", "2", "--model-dtype", "bfloat16", "--precision", "bf16"]  # fmt: skip
    proc, result = run_worker(args, nproc=2)
    assert proc.returncode == 0 and result is not None, describe(proc)
    assert "DeepSpeed ZeRO-2" in proc.stdout and "bf16" in proc.stdout
    model, *_ = build_pipeline(train_data, model_dtype="bfloat16")
    want = {n: str(d) for n, d in expected_dtypes(model).items()}
    assert result["dtypes"] == want
    assert {n: str(d) for n, d in stored_dtypes(tmp_path / "checkpoint-2").items()} == want
