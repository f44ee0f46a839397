"""LoRA that serves: a checkpoint trained with `trainer.lora_rank` (LLM and DiT adapters) loads in
`Gr00tPolicy` and gr00t-eval with nothing missing, and acts like the model that was trained."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from gr00t.eval.open_loop import observation_from_sample
from gr00t.policy.observation import parse_observation
from gr00t.policy.policy import Gr00tPolicy
from gr00t.train.trainer import TrainingSettings, run_training

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _pipeline import EMBODIMENT, build_pipeline  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lora_run(train_data: Path, tmp_path_factory) -> tuple[Path, object, object]:
    run_dir = tmp_path_factory.mktemp("lora_run")
    model, dataset, collator, processor, stats = build_pipeline(train_data)
    settings = TrainingSettings(
        max_steps=2,
        per_device_batch_size=2,
        save_steps=2,
        logging_steps=1,
        dataloader_num_workers=0,
        wandb_mode="disabled",
        progress_bar=False,
        learning_rate=1e-2,
        lora_rank=4,
        lora_dit=True,
    )
    run_training(
        model,
        dataset,
        collator,
        settings,
        run_dir,
        processor=processor,
        statistics=stats,
        embodiment_map=processor.embodiment_id_map(),
    )
    return run_dir / "checkpoint-2", model, dataset


def test_policy_matches_the_trained_model(lora_run) -> None:
    checkpoint, model, dataset = lora_run
    saved = load_file(str(checkpoint / "model.safetensors"))
    assert any(".lora_B." in k and k.startswith("action_head.model.") for k in saved)  # DiT adapters too
    assert any(".lora_B." in k and k.startswith("backbone.") for k in saved)
    assert json.loads((checkpoint / "lora_config.json").read_text())["r"] == 4
    policy = Gr00tPolicy.from_checkpoint(checkpoint, EMBODIMENT)  # raises on any missing weight
    assert not any("lora_" in name for name in policy.model.state_dict())
    raw = dataset.datasets[0].sample(dataset.datasets[0].episode_indices[1], 7)
    obs = observation_from_sample(raw, policy.embodiment.language.keys[0])
    served = policy.get_action(obs, {"seed": 5})
    parsed = parse_observation(obs, policy.embodiment, policy.state_action.state_dims)
    batch = policy.prepare(parsed)
    with torch.inference_mode():
        normalized = model.eval().get_action(batch, generator=torch.Generator().manual_seed(5))
    trained = policy.decode(normalized, parsed)
    assert served.keys() == trained.keys()
    for key in served:
        assert np.abs(served[key] - trained[key]).max() <= 1e-5, key
        assert np.abs(served[key]).max() > 0


def test_gr00t_eval_loads_it_and_refuses_a_checkpoint_with_missing_weights(
    lora_run, train_data: Path, tmp_path: Path, capsys
) -> None:
    from gr00t.cli.eval import main

    checkpoint, _, _ = lora_run
    common = [
        f"data={train_data}",
        f"embodiment={EMBODIMENT}",
        "max_episodes=1",
        "max_steps=16",
        "plots=false",
    ]
    assert main([f"checkpoint={checkpoint}", *common, f"output_dir={tmp_path / 'ok'}"]) == 0
    assert json.loads((tmp_path / "ok" / "metrics.json").read_text())["metrics"]["mse"] >= 0
    broken = tmp_path / "broken"
    shutil.copytree(checkpoint, broken)
    weights = load_file(str(broken / "model.safetensors"))
    gone = "action_head.action_decoder.layer2.W"
    assert gone in weights
    del weights[gone]
    save_file(weights, str(broken / "model.safetensors"), metadata={"format": "pt"})
    capsys.readouterr()
    assert main([f"checkpoint={broken}", *common, f"output_dir={tmp_path / 'no'}"]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("gr00t-eval: error:"), err
    assert gone in errors[0] and str(broken) in errors[0]
    assert "Traceback" not in err and "LOAD REPORT" not in err


def test_lora_run_resumes_exactly_after_sigkill(train_data: Path, tmp_path: Path) -> None:
    from conftest import assert_same_weights, describe, logged, run_worker

    common = ["--data", str(train_data), "--max-steps", "4", "--save-steps", "2", "--batch", "3"]
    common += ["--lr", "1e-3", "--workers", "1", "--lora-rank", "4"]
    reference, run = tmp_path / "reference", tmp_path / "run"
    proc, _ = run_worker(["--run-dir", str(reference), *common])
    assert proc.returncode == 0, describe(proc)
    killed, _ = run_worker(["--run-dir", str(run), *common, "--kill-after-save", "2"])
    assert killed.returncode == -9, describe(killed)
    proc, result = run_worker(["--run-dir", str(run), *common])
    assert proc.returncode == 0 and result is not None, describe(proc)
    assert result["resumed_from"] == str(run / "checkpoint-2")
    assert any(".lora_A." in k for k in load_file(str(run / "checkpoint-4" / "model.safetensors")))
    assert_same_weights(reference / "checkpoint-4", run / "checkpoint-4")
    ref = {r["step"]: r["loss"] for r in logged(reference) if "loss" in r}
    assert {r["step"]: r["loss"] for r in logged(run) if "loss" in r and r["step"] > 2} == {
        3: ref[3],
        4: ref[4],
    }
