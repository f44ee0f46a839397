"""Two-process DeepSpeed training (torchrun, gloo on CPU) of the real tiny model: ZeRO-2 and ZeRO-3.

Each run must lower the flow-matching loss measured on a fixed batch with fixed noise and t
(eval mode), write complete checkpoints holding DeepSpeed's engine state, and resume from them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gr00t.model.gr00t_n16 import Gr00tN16Model
from gr00t.train import checkpoint as ckpt
from gr00t.train.preemption import REQUEUE_EXIT_CODE

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _pipeline import build_pipeline  # noqa: E402
from conftest import REPO, describe, logged, run_worker, worker_command, worker_env  # noqa: E402

pytestmark = pytest.mark.slow


def fixed_batch_loss(data: Path, weights: Path | None) -> float:
    """Loss of the initial model (weights=None) or a checkpoint on 16 samples, fixed noise and t."""
    model, dataset, collator, processor, _ = build_pipeline(data)
    if weights is not None:
        model = Gr00tN16Model.from_pretrained(str(weights))
    processor.eval()
    batch = collator([dataset[i * 16] for i in range(16)])
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(batch.head.action.shape, generator=g)
    t = torch.rand(16, generator=g) * 0.999
    model.eval()
    with torch.no_grad():
        return float(model(batch, noise=noise, t=t).loss)


@pytest.mark.parametrize(("choice", "stage"), [("auto", 2), ("zero3", 3)])
def test_two_process_deepspeed_lowers_loss_and_resumes(
    train_data: Path, tmp_path: Path, choice: str, stage: int
) -> None:
    steps = 80
    args = [
        "--run-dir",
        str(tmp_path),
        "--data",
        str(train_data),
        "--deepspeed",
        choice,
        "--batch",
        "4",
        "--lr",
        "3e-3",
        "--scheduler",
        "constant",
        "--warmup-ratio",
        "0",
        "--save-steps",
        str(steps // 2),
    ]
    proc, result = run_worker([*args, "--max-steps", str(steps)], nproc=2)
    assert proc.returncode == 0 and result is not None, describe(proc)
    assert f"DeepSpeed ZeRO-{stage}" in proc.stdout
    assert "global batch 8 = 4 per device x 2 processes x 1 accumulation" in proc.stdout
    assert result["global_step"] == steps and result["global_batch_size"] == 8
    final = tmp_path / f"checkpoint-{steps}"
    assert ckpt.is_complete(final)
    for name in (
        f"global_step{steps}",
        "latest",
        "rng_state_0.pth",
        "rng_state_1.pth",
        "model.safetensors",
        "scheduler.pt",
        "processor_config.json",
        "data_state.json",
    ):
        assert (final / name).exists(), f"{final} lacks {name}"
    assert (final / "latest").read_text().strip() == f"global_step{steps}"
    assert json.loads((final / "data_state.json").read_text())["consumed"] == steps * 8
    assert not list(tmp_path.glob("*.tmp-*"))

    before, after = fixed_batch_loss(train_data, None), fixed_batch_loss(train_data, final)
    assert after < before - 0.02, f"ZeRO-{stage}: loss {before:.4f} -> {after:.4f} did not go down"

    # Resume from the engine checkpoint and keep training.
    if stage == 2:
        resumed_at = preempt_one_rank(args, tmp_path, after_step=steps + 1)
    else:
        resumed_at = steps
    proc2, result2 = run_worker([*args, "--max-steps", str(resumed_at + 2)], nproc=2)
    assert proc2.returncode == 0 and result2 is not None, describe(proc2)
    assert result2["resumed_from"] == str(tmp_path / f"checkpoint-{resumed_at}")
    assert result2["global_step"] == resumed_at + 2
    assert ckpt.is_complete(tmp_path / f"checkpoint-{resumed_at + 2}")
    assert not (tmp_path / ckpt.PREEMPTED_MARKER).exists()


def test_deepspeed_refuses_resume_with_other_trainable_parameters(train_data: Path, tmp_path: Path) -> None:
    args = [
        "--run-dir",
        str(tmp_path),
        "--data",
        str(train_data),
        "--deepspeed",
        "zero2",
        "--batch",
        "2",
        "--max-steps",
        "1",
        "--save-steps",
        "1",
    ]
    proc, result = run_worker(args, nproc=2)
    assert proc.returncode == 0 and result is not None, describe(proc)
    names = json.loads((tmp_path / "checkpoint-1" / ckpt.OPTIMIZER_PARAMS_NAME).read_text())["param_groups"]
    stored = {n for g in names for n in g["params"]}
    assert stored and not any(
        ".language_model.model.layers.0." in n for n in stored
    )  # frozen lower LLM layer
    # Same parameters, other trainable set (the whole LLM): DeepSpeed's engine state cannot follow.
    refused, _ = run_worker([*args, "--max-steps", "2", "--tune-llm"], nproc=2)
    assert refused.returncode != 0, describe(refused)
    assert "ResumeMismatchError" in refused.stderr, describe(refused)
    assert (
        "under DeepSpeed with other trainable parameters (the optimiser's parameters changed: now also "
        "trains backbone.model.language_model" in refused.stderr
    ), describe(refused)
    assert ckpt.latest_checkpoint(tmp_path) == tmp_path / "checkpoint-1"  # nothing was written


def preempt_one_rank(args: list[str], run_dir: Path, after_step: int) -> int:
    """Resume a 2-process run, SIGTERM only rank 1 once `after_step` is logged; both ranks must stop at
    the same step with one complete checkpoint (flag OR-ed over ranks). Returns that step."""
    for old in run_dir.glob("worker-*.pid"):
        old.unlink()
    cmd = worker_command([*args, "--max-steps", "100000", "--step-sleep", "0.3", "--write-pid"], nproc=2)
    proc = subprocess.Popen(
        cmd, env=worker_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if (run_dir / "worker-1.pid").exists() and any(
                r.get("step", 0) > after_step for r in logged(run_dir)
            ):
                break
            time.sleep(0.2)
        assert proc.poll() is None, "torchrun ended before it could be signalled"
        os.kill(int((run_dir / "worker-1.pid").read_text()), signal.SIGTERM)
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    done = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    assert proc.returncode != 0, describe(done)  # torchrun reports the workers' requeue exit as a failure
    assert (
        f"exitcode  : {REQUEUE_EXIT_CODE}" in err
        or f"exit code {REQUEUE_EXIT_CODE}" in err
        or str(REQUEUE_EXIT_CODE) in err
    ), describe(done)
    marker = json.loads((run_dir / ckpt.PREEMPTED_MARKER).read_text())
    step = marker["step"]
    assert step > after_step and marker["signal"] == "peer"  # rank 0 learned it from rank 1
    latest = ckpt.latest_checkpoint(run_dir)
    assert latest == run_dir / f"checkpoint-{step}" and (latest / f"global_step{step}").is_dir()
    assert (latest / "rng_state_0.pth").exists() and (latest / "rng_state_1.pth").exists()
    return step
