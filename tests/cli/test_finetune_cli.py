"""`gr00t-finetune`: --help, --cfg job, and a real short finetune of the tiny model on the demo dataset."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml


def _run(*args: str, cwd: Path | None = None, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gr00t.cli.finetune", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def test_help_shows_usage_and_groups():
    proc = _run("--help")
    assert proc.returncode == 0, proc.stderr
    assert "gr00t-finetune embodiment=<name> data=<dataset dir | mixture name | demo>" in proc.stdout
    assert "embodiment: " in proc.stdout and "new_embodiment" in proc.stdout
    assert "use_relative_action: true" in proc.stdout


def test_cfg_job_finetune_defaults():
    proc = _run("embodiment=new_embodiment", "data=demo", "model=n16_tiny", "--cfg", "job")
    assert proc.returncode == 0, proc.stderr
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["recipe"] == "finetune_n16"
    assert cfg["data"] == "demo" and cfg["base"] is None
    assert cfg["model"]["name"] == "n16_tiny"
    assert cfg["model"]["use_relative_action"] is True  # finetuning turns relative actions on
    # a model preset never changes the trainer: n16_tiny keeps the finetune recipe's trainer ...
    t = cfg["trainer"]
    assert (t["max_steps"], t["global_batch_size"], t["dataloader_num_workers"]) == (10000, 64, 4)
    # ... and the CPU-sized settings are asked for explicitly (trainer=demo, as recipe=demo does)
    demo = yaml.safe_load(_run("data=demo", "model=n16_tiny", "trainer=demo", "--cfg", "job").stdout)[
        "trainer"
    ]
    assert (
        demo["max_steps"],
        demo["global_batch_size"],
        demo["dataloader_num_workers"],
        demo["cpu_threads"],
    ) == (
        300,
        8,
        0,
        1,
    )
    assert cfg["embodiment"]["tag"] == "new_embodiment" and cfg["embodiment"]["projector_index"] == 10
    # the full model has the same reference finetune recipe (SPEC-N16 §3)
    full = yaml.safe_load(_run("embodiment=new_embodiment", "data=demo", "--cfg", "job").stdout)["trainer"]
    assert (full["max_steps"], full["global_batch_size"], full["save_steps"], full["save_total_limit"]) == (
        10000,
        64,
        1000,
        5,
    )
    assert (full["learning_rate"], full["weight_decay"], full["warmup_ratio"], full["max_grad_norm"]) == (
        1e-4,
        1e-5,
        0.05,
        1.0,
    )
    # command-line values win over both
    small = yaml.safe_load(_run("data=demo", "model=n16_tiny", "trainer.max_steps=3", "--cfg", "job").stdout)
    assert small["trainer"]["max_steps"] == 3


def test_cfg_job_n16_trains_top_four_llm_layers_and_state_dropout_is_settable():
    proc = _run(
        "embodiment=libero_panda",
        "data=/x",
        "model.state_dropout_prob=0.8",
        "cotrain.mixture=pretrain_n16",
        "cotrain.ratio=0.2",
        "--cfg",
        "job",
    )
    assert proc.returncode == 0, proc.stderr
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["model"]["name"] == "n16" and cfg["model"]["tune_top_llm_layers"] == 4
    assert cfg["model"]["tune_llm"] is False and cfg["model"]["tune_visual"] is False
    assert cfg["model"]["state_dropout_prob"] == 0.8
    assert cfg["cotrain"] == {"mixture": "pretrain_n16", "ratio": 0.2}


def test_recipe_demo_composes_the_demo():
    proc = _run("recipe=demo", "--cfg", "job")
    assert proc.returncode == 0, proc.stderr
    cfg = yaml.safe_load(proc.stdout)
    assert (cfg["recipe"], cfg["data"], cfg["run_dir"], cfg["model"]["name"]) == (
        "demo",
        "demo",
        "runs/demo",
        "n16_tiny",
    )
    assert cfg["embodiment"]["tag"] == "new_embodiment"


def test_missing_data_is_a_clear_error(tmp_path):
    proc = _run(
        "embodiment=new_embodiment", "model=n16_tiny", f"run_dir={tmp_path / 'r'}", cwd=tmp_path, timeout=120
    )
    assert proc.returncode != 0
    assert "data=???" in proc.stderr or "data" in proc.stderr and "Missing mandatory value" in proc.stderr


@pytest.mark.slow
def test_demo_finetune_end_to_end(tmp_path, demo_dataset_v3):
    """A real run: tiny model, demo dataset, a few steps on CPU; then a second call resumes."""
    data = tmp_path / "data"
    shutil.copytree(demo_dataset_v3, data)
    run_dir = tmp_path / "run"
    args = [
        "embodiment=new_embodiment",
        f"data={data}",
        "model=n16_tiny",
        "trainer=demo",
        f"run_dir={run_dir}",
        "trainer.save_steps=2",
        "trainer.logging_steps=1",
        "trainer.global_batch_size=2",
        "model.state_dropout_prob=0.5",
    ]
    proc = _run(*args, "trainer.max_steps=4", cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    ckpt = run_dir / "checkpoint-4"
    assert (ckpt / "COMPLETE").is_file() and (ckpt / "model.safetensors").is_file()
    saved_cfg = json.loads((ckpt / "config.json").read_text())
    assert saved_cfg["use_relative_action"] is True and saved_cfg["state_dropout_prob"] == 0.5
    experiment = yaml.safe_load((ckpt / "experiment_config.yaml").read_text())
    assert experiment["trainer"]["max_steps"] == 4 and experiment["data"] == str(data)
    assert (run_dir / "loss_curve.png").stat().st_size > 1000
    assert (data / "meta" / "relative_stats.json").is_file()  # statistics were ensured
    effective = json.loads((run_dir / "effective_settings.json").read_text())
    assert effective["global_batch_size"] == 2 and effective["embodiments"] == {"new_embodiment": 10}
    losses = [
        json.loads(line)["loss"]
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
        if "loss" in json.loads(line)
    ]
    assert len(losses) >= 4 and all(x == x for x in losses)  # finite, one per step

    # Same run_dir, more steps: resumes from checkpoint-4 instead of starting over.
    proc2 = _run(*args, "trainer.max_steps=6", cwd=tmp_path, timeout=600)
    assert proc2.returncode == 0, proc2.stderr[-5000:]
    assert "resuming from" in proc2.stdout and "checkpoint-4" in proc2.stdout
    assert (run_dir / "checkpoint-6" / "COMPLETE").is_file()


@pytest.mark.slow
def test_hub_ids_default_run_dir_resume_and_no_leftovers(tmp_path, demo_dataset_v3):
    """data= and base= as Hub ids from a local cache (offline, the real huggingface_hub); the default
    run_dir is deterministic so the same command resumes; a failed run leaves no folder behind."""
    import os

    from tests.hub_cache import add_to_cache

    cache = tmp_path / "hub"
    add_to_cache(cache, "acme/arm_demo", demo_dataset_v3, repo_type="dataset")
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "gr00t.cli.finetune", *args],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=work,
            env=env,
        )

    common = [
        "embodiment=new_embodiment",
        "data=acme/arm_demo",
        "model=n16_tiny",
        "trainer=demo",
        "trainer.global_batch_size=2",
        "trainer.save_steps=2",
    ]
    first = run(*common, "trainer.max_steps=2")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    run_dir = work / "runs" / "finetune_n16" / "new_embodiment-arm_demo"
    assert (run_dir / "checkpoint-2" / "COMPLETE").is_file()
    assert (run_dir / "gr00t-finetune.log").is_file()
    again = run(*common, "trainer.max_steps=3")  # the same command, more steps: resumes
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from" in again.stdout and "checkpoint-2" in again.stdout
    assert (run_dir / "checkpoint-3" / "COMPLETE").is_file()

    # the finetuned checkpoint published as a Hub model and used as base=
    snapshot = add_to_cache(cache, "acme/arm-policy", run_dir / "checkpoint-3")
    tuned = run(*common, "base=acme/arm-policy", "trainer.max_steps=1", "trainer.run_name=from_hub")
    assert tuned.returncode == 0, tuned.stdout[-3000:] + tuned.stderr[-3000:]
    effective = json.loads(
        (work / "runs" / "finetune_n16" / "from_hub" / "effective_settings.json").read_text()
    )
    assert effective["model"]["base"] == str(snapshot)

    # fails inside the trainer, before its first step: the folders it created are removed
    broken = run(
        *common,
        "trainer.max_steps=1",
        "trainer.lora_rank=2",
        "trainer.lora_target_modules=[nothing]",
        f"run_dir={tmp_path / 'new' / 'deep' / 'run'}",
    )
    assert broken.returncode != 0 and "(nothing)" in broken.stderr  # peft found no target module
    assert not (tmp_path / "new").exists()
