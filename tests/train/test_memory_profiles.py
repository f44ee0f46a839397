"""`memory=<profile>`: a Hydra config group that sets trainer keys, visible in `--cfg job`; every
shipped profile trains the tiny model on CPU through the real command; LoRA on the DiT."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from gr00t.paths import available

PROFILES = available("memory")


def _finetune(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gr00t.cli.finetune", *args], capture_output=True, text=True, timeout=timeout
    )


def test_profiles_are_a_config_group_shown_by_cfg_job():
    assert {"default", "24gb"} <= set(PROFILES)
    cfg = yaml.safe_load(_finetune("recipe=demo", "memory=24gb", "--cfg", "job").stdout)["trainer"]
    assert (cfg["memory"], cfg["optimizer"], cfg["gradient_checkpointing"]) == ("24gb", "adamw_8bit", True)
    default = yaml.safe_load(_finetune("recipe=demo", "--cfg", "job").stdout)["trainer"]
    assert (default["memory"], default["optimizer"], default["gradient_checkpointing"]) == (
        "default",
        "adamw",
        False,
    )
    # the profile is a starting point: a key given on the command line still wins
    off = yaml.safe_load(
        _finetune("recipe=demo", "memory=24gb", "trainer.gradient_checkpointing=false", "--cfg", "job").stdout
    )["trainer"]
    assert off["gradient_checkpointing"] is False and off["optimizer"] == "adamw_8bit"
    bad = _finetune("recipe=demo", "memory=24gbb", "--cfg", "job")
    assert bad.returncode == 2 and "24gb" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_trains_the_tiny_model_on_cpu_and_resumes(profile, train_data: Path, tmp_path: Path):
    args = ["recipe=demo", f"memory={profile}", "embodiment=new_embodiment", f"data={train_data}",
            f"run_dir={tmp_path}", "trainer.save_steps=2", "image.size=64"]  # fmt: skip
    proc = _finetune(*args, "trainer.max_steps=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    checkpoint = tmp_path / "checkpoint-2"
    assert (checkpoint / "COMPLETE").is_file()
    settings = yaml.safe_load((checkpoint / "experiment_config.yaml").read_text())["trainer"]
    state = torch.load(checkpoint / "optimizer.pt", weights_only=False)["state"]
    # bitsandbytes nests its block-quantised moments under one key
    flat = [s.get("__bnb_optimizer_quant_state__", s) for s in state.values()]
    moment_dtypes = {v.dtype for s in flat for k, v in s.items() if k in ("state1", "exp_avg")}
    if settings["optimizer"] == "adamw_8bit":  # bitsandbytes' block-quantised moments
        assert torch.uint8 in moment_dtypes
    else:
        assert moment_dtypes == {torch.float32}
    log = (tmp_path / "gr00t-finetune.log").read_text()
    assert ("gradient checkpointing on" in log) == bool(settings["gradient_checkpointing"])
    resumed = _finetune(*args, "trainer.max_steps=4")  # the optimiser state loads back
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout and (tmp_path / "checkpoint-4" / "COMPLETE").is_file()


def test_lora_on_the_dit_and_the_llm_keeps_the_precision_policy():
    from gr00t.model.gr00t_n16 import Gr00tN16Model
    from gr00t.model.presets import load_preset
    from gr00t.train.lora import apply_lora
    from gr00t.train.settings import TrainingSettings

    torch.manual_seed(0)
    model = Gr00tN16Model(load_preset("n16_tiny", model_dtype="bfloat16"))
    n = apply_lora(model, TrainingSettings(per_device_batch_size=1, lora_rank=4, lora_dit=True))
    lora = {name: p for name, p in model.named_parameters() if "lora_" in name}
    dit = [name for name in lora if name.startswith("action_head.model.")]
    assert n == len(lora) // 2 and dit and len(dit) < len(lora)
    assert {p.dtype for p in lora.values()} == {torch.float32} and all(p.requires_grad for p in lora.values())
    for name, p in model.named_parameters():
        if ".base_layer." in name:
            assert not p.requires_grad and p.dtype == torch.bfloat16, name
    assert any(n.endswith("ff.net.2.lora_A.default.weight") for n in dit)
    assert any(".attn1.to_q.lora_B." in n for n in dit)
