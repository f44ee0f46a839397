"""`gr00t-train`: --help, --cfg job, recipe selection and errors (real Hydra, real subprocesses)."""

from __future__ import annotations

import subprocess
import sys

import yaml


def _run(*args: str, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gr00t.cli.train", *args], capture_output=True, text=True, timeout=timeout
    )


def test_help_lists_usage_groups_and_config():
    proc = _run("--help")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "gr00t-train recipe=pretrain_n16" in out
    # config groups with their options, from configs/
    assert "model: " in out and "n16_tiny" in out
    assert "trainer: " in out and "pretrain" in out
    assert "launcher: " in out and "slurm" in out
    assert "max_steps: 300000" in out  # the pretraining recipe's config is shown


def test_cfg_job_prints_the_pretraining_recipe():
    proc = _run("--cfg", "job")
    assert proc.returncode == 0, proc.stderr
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["recipe"] == "pretrain_n16"
    assert cfg["data"] == "pretrain_n16"  # a named co-training mixture from data_mixtures/
    t = cfg["trainer"]
    # SPEC-N16 §3 pretraining figures
    assert (t["max_steps"], t["global_batch_size"], t["deepspeed"]) == (300000, 16384, "zero2")
    assert (t["learning_rate"], t["weight_decay"], t["warmup_ratio"], t["lr_scheduler"]) == (
        1e-4,
        1e-5,
        0.05,
        "cosine",
    )
    assert t["max_grad_norm"] == 1.0 and t["gradient_checkpointing"] is False
    assert cfg["model"]["name"] == "n16" and cfg["model"]["select_layer"] == 16


def test_cfg_job_with_recipe_and_overrides():
    proc = _run(
        "recipe=finetune_n16",
        "embodiment=libero_panda",
        "data=/datasets/libero",
        "trainer.max_steps=20000",
        "--cfg",
        "job",
    )
    assert proc.returncode == 0, proc.stderr
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["recipe"] == "finetune_n16"
    assert cfg["embodiment"]["tag"] == "libero_panda"
    assert cfg["trainer"]["max_steps"] == 20000


def test_unknown_recipe_fails_with_choices():
    proc = _run("recipe=pretrain_n61")
    assert proc.returncode == 2
    assert "Did you mean 'pretrain_n16'?" in proc.stderr


def test_missing_mixture_dataset_is_reported(tmp_path):
    # The shipped pretraining mixture has placeholder paths: running it without the data must name them.
    proc = _run(f"data_root={tmp_path}", f"run_dir={tmp_path / 'run'}", "model=n16_tiny", timeout=120)
    assert proc.returncode != 0
    assert "not found" in proc.stderr and str(tmp_path / "real" / "unitree_g1") in proc.stderr
