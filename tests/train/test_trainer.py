"""run_training end to end with the real tiny model: checkpoint contents, logging, resume.

Quick tests train in-process for a couple of steps; the slow ones run the worker in subprocesses
to kill it (SIGKILL) at chosen points and compare against an uninterrupted run bit for bit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gr00t.data.processor import Gr00tProcessor
from gr00t.model.batch import Gr00tBatch
from gr00t.model.gr00t_n16 import Gr00tN16Model
from gr00t.train import checkpoint as ckpt
from gr00t.train.trainer import TrainingSettings, resolve_deepspeed_config, run_training

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _pipeline import build_pipeline  # noqa: E402
from conftest import assert_same_weights, describe, logged, run_worker  # noqa: E402

STEP_KEYS = {
    "loss",
    "learning_rate",
    "grad_norm",
    "samples_per_s",
    "data_wait_s",
    "peak_mem_mb",
    "step_time_s",
}


def _settings(**kw) -> TrainingSettings:
    base = dict(
        max_steps=2,
        per_device_batch_size=2,
        save_steps=2,
        logging_steps=1,
        dataloader_num_workers=0,
        wandb_mode="disabled",
        progress_bar=False,
        seed=3,
        learning_rate=1e-3,
        weight_decay=0.01,
    )
    base.update(kw)
    return TrainingSettings(**base)


def _train(data: Path, run_dir: Path, **kw):
    model, dataset, collator, processor, stats = build_pipeline(data)
    result = run_training(
        model,
        dataset,
        collator,
        _settings(**kw),
        run_dir,
        processor=processor,
        statistics=stats,
        embodiment_map=processor.embodiment_id_map(),
        experiment_config="trainer:\n  max_steps: 2\n",
    )
    return model, result


@pytest.mark.slow
def test_run_writes_complete_loadable_checkpoint(train_data: Path, tmp_path: Path) -> None:
    model, result = _train(train_data, tmp_path)
    final = tmp_path / "checkpoint-2"
    assert result.global_step == 2 and result.last_checkpoint == final and result.resumed_from is None
    assert result.global_batch_size == 2 and not result.preempted
    for name in (
        "COMPLETE",
        "config.json",
        "model.safetensors",
        "processor_config.json",
        "tokenizer",
        "statistics.json",
        "embodiment_map.json",
        "experiment_config.yaml",
        "training_settings.json",
        "data_state.json",
        "optimizer.pt",
        "scheduler.pt",
        "rng_state.pth",
        "trainer_state.json",
    ):
        assert (final / name).exists(), f"checkpoint lacks {name}"
    assert not list(tmp_path.glob("*.tmp-*"))
    # The weights on disk are the trained model; they load back into a fresh model exactly.
    loaded = Gr00tN16Model.from_pretrained(str(final))
    saved = load_file(str(final / "model.safetensors"))
    live = model.state_dict()
    assert all(torch.equal(saved[k], live[k]) for k in saved)
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, live[k]), k
    proc = Gr00tProcessor.from_pretrained(str(final))
    assert proc.embodiment_id_map() == {"new_embodiment": 10}
    assert json.loads((final / "embodiment_map.json").read_text()) == {"new_embodiment": 10}
    assert json.loads((final / "statistics.json").read_text())["new_embodiment"]["stats"]["state"]["arm"][
        "mean"
    ]
    assert "max_steps: 2" in (final / "experiment_config.yaml").read_text()
    data_state = json.loads((final / "data_state.json").read_text())
    assert data_state["consumed"] == 4 and data_state["global_step"] == 2  # 2 steps x batch 2
    # Optimiser groups as stored: decayed and non-decayed groups with the configured values.
    opt = torch.load(final / "optimizer.pt", weights_only=True)
    assert sorted(g["weight_decay"] for g in opt["param_groups"])[0] == 0.0
    assert max(g["weight_decay"] for g in opt["param_groups"]) == pytest.approx(0.01)
    # Logging: every step logged with the required metrics, plot written.
    rows = [r for r in logged(tmp_path) if "loss" in r]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(STEP_KEYS <= r.keys() for r in rows), rows
    assert all(r["peak_mem_mb"] > 0 and r["samples_per_s"] > 0 and r["data_wait_s"] >= 0 for r in rows)
    assert (tmp_path / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_run_files_honour_the_umask(train_data: Path, tmp_path: Path) -> None:
    """Checkpoints (safetensors writes 0600 itself), logs, plots and the lock follow the umask."""
    import os
    import stat

    old = os.umask(0o027)
    try:
        _train(train_data, tmp_path / "run", save_steps=1)
    finally:
        os.umask(old)
    paths = [tmp_path / "run", *(tmp_path / "run").rglob("*")]
    names = {p.name for p in paths}
    assert {"model.safetensors", "optimizer.pt", "metrics.jsonl", "loss_curve.png", "RUN_LOCK"} <= names
    wrong = {
        str(p): oct(stat.S_IMODE(p.stat().st_mode))
        for p in paths
        if stat.S_IMODE(p.stat().st_mode) != (0o750 if p.is_dir() else 0o640)
    }
    assert not wrong, wrong


@pytest.mark.slow
def test_rerun_resumes_and_resume_false_starts_over(train_data: Path, tmp_path: Path) -> None:
    _train(train_data, tmp_path, max_steps=2)
    (tmp_path / "checkpoint-9.tmp-123").mkdir()  # debris of a crashed write
    _, result = _train(train_data, tmp_path, max_steps=3, save_steps=10)
    assert result.resumed_from == tmp_path / "checkpoint-2"
    assert result.global_step == 3 and result.last_checkpoint == tmp_path / "checkpoint-3"
    assert not (tmp_path / "checkpoint-9.tmp-123").exists()
    assert json.loads((tmp_path / "checkpoint-3" / "data_state.json").read_text())["consumed"] == 6
    state = json.loads((tmp_path / "checkpoint-3" / "trainer_state.json").read_text())
    assert [r["step"] for r in state["log_history"] if "loss" in r] == [1, 2, 3]  # history carried over
    # Schedule follows the new max_steps after resume: lr at the last step of a 3-step cosine.
    sched = torch.load(tmp_path / "checkpoint-3" / "scheduler.pt", weights_only=True)
    assert sched["lr_lambdas"][0]["max_steps"] == 3

    _, fresh = _train(train_data, tmp_path, max_steps=2, resume=False)
    assert fresh.resumed_from is None and fresh.global_step == 2
    archived = list(tmp_path.glob("superseded-*"))
    assert len(archived) == 1 and (archived[0] / "checkpoint-3" / "COMPLETE").is_file()
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["checkpoint-2"]


def test_settings_validation_and_deepspeed_choice(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'max_step' \(did you mean 'max_steps'"):
        TrainingSettings.from_dict({"max_step": 5})
    with pytest.raises(ValueError, match="trainer.per_device_batch_size=0"):
        TrainingSettings.from_dict({"per_device_batch_size": 0})
    with pytest.raises(ValueError, match="precision"):
        TrainingSettings.from_dict({"precision": "fp8"})
    assert TrainingSettings.from_dict({"lora_target_modules": ["q_proj"]}).lora_target_modules == ("q_proj",)
    assert resolve_deepspeed_config("auto", 1) is None
    assert resolve_deepspeed_config("auto", 2)["zero_optimization"]["stage"] == 2
    z3 = resolve_deepspeed_config("zero3", 1)
    assert z3["zero_optimization"]["stage"] == 3
    assert z3["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    for cfg in (resolve_deepspeed_config("zero2", 2), z3):
        assert "optimizer" not in cfg and "scheduler" not in cfg  # torch AdamW + our schedule
        assert cfg["train_micro_batch_size_per_gpu"] == "auto" and cfg["gradient_clipping"] == "auto"
    with pytest.raises(FileNotFoundError, match="zero9"):
        resolve_deepspeed_config("zero9", 2)
    bad = tmp_path / "ds.json"
    bad.write_text("{oops")
    with pytest.raises(ValueError, match="invalid DeepSpeed JSON"):
        resolve_deepspeed_config(str(bad), 2)


# ------------------------------------------------------------------------------------------------
# slow: subprocess runs killed at chosen points, compared with an uninterrupted run
# ------------------------------------------------------------------------------------------------
COMMON = ["--max-steps", "6", "--save-steps", "2", "--batch", "3", "--lr", "1e-3", "--workers", "1"]


@pytest.fixture(scope="module")
def reference_run(train_data: Path, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("reference")
    proc, result = run_worker(["--run-dir", str(run_dir), "--data", str(train_data), *COMMON])
    assert proc.returncode == 0 and result is not None, describe(proc)
    assert result["global_step"] == 6 and result["resumed_from"] is None
    return run_dir


@pytest.mark.slow
def test_resume_after_sigkill_is_exact(reference_run: Path, train_data: Path, tmp_path: Path) -> None:
    common = ["--data", str(train_data), *COMMON]
    killed, _ = run_worker(["--run-dir", str(tmp_path), *common, "--kill-after-save", "4"])
    assert killed.returncode == -9, describe(killed)
    assert ckpt.latest_checkpoint(tmp_path) == tmp_path / "checkpoint-4"
    proc, result = run_worker(["--run-dir", str(tmp_path), *common, "--save-total-limit", "2"])
    assert proc.returncode == 0 and result is not None, describe(proc)
    assert result["resumed_from"] == str(tmp_path / "checkpoint-4") and result["global_step"] == 6
    # save_total_limit=2 rotated checkpoint-2 (written by the killed run) away.
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("checkpoint")) == [
        "checkpoint-4",
        "checkpoint-6",
    ]
    n = assert_same_weights(reference_run / "checkpoint-6", tmp_path / "checkpoint-6")
    assert n > 50
    # The losses after the resume point are the uninterrupted run's, step for step.
    ref = {r["step"]: r["loss"] for r in logged(reference_run) if "loss" in r}
    res = {r["step"]: r["loss"] for r in logged(tmp_path) if "loss" in r and r["step"] > 4}
    assert res == {5: ref[5], 6: ref[6]}
    # And the run did learn something different from the start (the test is not vacuous).
    first = load_file(str(reference_run / "checkpoint-2" / "model.safetensors"))
    last = load_file(str(reference_run / "checkpoint-6" / "model.safetensors"))
    assert any(not torch.equal(first[k], last[k]) for k in first)


@pytest.mark.slow
def test_kill_during_checkpoint_write_keeps_previous(
    reference_run: Path, train_data: Path, tmp_path: Path
) -> None:
    common = ["--data", str(train_data), *COMMON]
    crashed, _ = run_worker(["--run-dir", str(tmp_path), *common, "--kill-during-save", "4"])
    assert crashed.returncode == -9, describe(crashed)
    partial = list(tmp_path.glob("checkpoint-4.tmp-*"))
    assert len(partial) == 1 and (partial[0] / "model.safetensors").exists()
    assert not (partial[0] / ckpt.COMPLETE_MARKER).exists() and not (tmp_path / "checkpoint-4").exists()
    previous = ckpt.latest_checkpoint(tmp_path)
    assert previous == tmp_path / "checkpoint-2"
    Gr00tN16Model.from_pretrained(str(previous))  # still loadable
    Gr00tProcessor.from_pretrained(str(previous))
    assert_same_weights(reference_run / "checkpoint-2", previous)
    proc, result = run_worker(["--run-dir", str(tmp_path), *common])
    assert proc.returncode == 0 and result is not None, describe(proc)
    assert result["resumed_from"] == str(previous)
    assert not list(tmp_path.glob("*.tmp-*"))
    assert_same_weights(reference_run / "checkpoint-6", tmp_path / "checkpoint-6")


# ------------------------------------------------------------------------------------------------
# memory switches: gradient checkpointing and LoRA
# ------------------------------------------------------------------------------------------------
def _fixed_loss_and_grads(model: Gr00tN16Model, batch: Gr00tBatch) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad()
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(batch.head.action.shape, generator=g)
    t = torch.rand(batch.head.action.shape[0], generator=g) * 0.999
    model.train()
    torch.manual_seed(5)  # DiT dropout draws
    loss = model(batch, noise=noise, t=t).loss
    loss.backward()
    return float(loss.detach()), {
        n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None
    }


@pytest.mark.slow
def test_gradient_checkpointing_recomputes_and_keeps_gradients(train_data: Path) -> None:
    from gr00t.train.trainer import enable_gradient_checkpointing

    model, dataset, collator, _, _ = build_pipeline(train_data)
    batch = collator([dataset[0], dataset[50]])
    ref_loss, ref_grads = _fixed_loss_and_grads(model, batch)
    enabled = enable_gradient_checkpointing(model)
    # The trainable top LLM layer and every DiT block; frozen layers are left alone.
    assert "backbone.model.language_model.model.layers.1" in enabled
    assert "backbone.model.language_model.model.layers.0" not in enabled
    assert sum(n.startswith("action_head.model.transformer_blocks.") for n in enabled) == 4
    calls = {"llm": 0, "dit": 0}
    hooks = [
        model.backbone.model.language_model.model.layers[1].mlp.register_forward_pre_hook(
            lambda *a: calls.__setitem__("llm", calls["llm"] + 1)
        ),
        model.action_head.model.transformer_blocks[0].ff.register_forward_pre_hook(
            lambda *a: calls.__setitem__("dit", calls["dit"] + 1)
        ),
    ]
    loss, grads = _fixed_loss_and_grads(model, batch)
    for h in hooks:
        h.remove()
    assert calls == {"llm": 2, "dit": 2}, "with checkpointing each block runs again during backward"
    assert loss == pytest.approx(ref_loss, abs=1e-6)
    assert grads.keys() == ref_grads.keys() and grads
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.slow
def test_lora_trains_adapters_only_and_resumes(train_data: Path, tmp_path: Path) -> None:
    model, dataset, collator, processor, _ = build_pipeline(train_data)
    head_trainable = {
        n for n, p in model.named_parameters() if p.requires_grad and not n.startswith("backbone.")
    }
    settings = _settings(lora_rank=4, max_steps=2)
    result = run_training(model, dataset, collator, settings, tmp_path, processor=processor)
    assert result.global_step == 2
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    lora = {n for n in trainable if ".lora_" in n}
    assert lora and all(n.startswith("backbone.model.language_model.") for n in lora)
    assert head_trainable <= trainable  # the action head still trains fully
    assert not any(".base_layer." in n for n in trainable)  # adapted LLM matrices are frozen
    saved = load_file(str(tmp_path / "checkpoint-2" / "model.safetensors"))
    assert any(".lora_B." in k for k in saved)
    assert any(not torch.all(saved[k] == 0) for k in saved if ".lora_B." in k), "lora_B never updated"
    # Resume into a fresh LoRA model from the LoRA checkpoint.
    model2, dataset2, collator2, processor2, _ = build_pipeline(train_data)
    result2 = run_training(
        model2, dataset2, collator2, _settings(lora_rank=4, max_steps=3), tmp_path, processor=processor2
    )
    assert result2.resumed_from == tmp_path / "checkpoint-2" and result2.global_step == 3


@pytest.mark.slow
def test_wandb_offline_logs_and_resume_keeps_the_run(train_data: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    for key in ("WANDB_DIR", "WANDB_RUN_ID", "WANDB_RESUME", "WANDB_NAME"):
        monkeypatch.delenv(key, raising=False)
    _train(train_data, tmp_path, wandb_mode=None, max_steps=1, save_steps=1)  # default: offline
    run_id = (tmp_path / "wandb_run_id").read_text().strip()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and runs[0].name.endswith(run_id)
    assert list(runs[0].glob("run-*.wandb")), "no offline history file written"
    _train(train_data, tmp_path, wandb_mode=None, max_steps=2, save_steps=1)
    assert (tmp_path / "wandb_run_id").read_text().strip() == run_id
    assert all(p.name.endswith(run_id) for p in (tmp_path / "wandb").glob("offline-run-*"))


@pytest.mark.slow
def test_resume_refuses_changed_architecture_but_allows_training_switches(
    train_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model, dataset, collator, processor, _ = build_pipeline(train_data, state_dropout_prob=0.5)
    run_training(
        model, dataset, collator, _settings(max_steps=1, save_steps=1), tmp_path, processor=processor
    )
    first = tmp_path / "checkpoint-1"
    assert "action_head.mask_token" in load_file(str(first / "model.safetensors"))
    # No state dropout → no mask_token: refused up front with the field and the checkpoint named.
    model, dataset, collator, processor, _ = build_pipeline(train_data, state_dropout_prob=0.0)
    with pytest.raises(
        ckpt.ResumeMismatchError,
        match=r"(?s)cannot resume from .*checkpoint-1.*"
        r"state_dropout_prob: 0\.5 -> 0\.0.*mask_token.*resume=false",
    ):
        run_training(
            model, dataset, collator, _settings(max_steps=2, save_steps=1), tmp_path, processor=processor
        )
    assert ckpt.latest_checkpoint(tmp_path) == first  # nothing was touched
    # Same parameters, other training-only settings: resumes (another trainable set → fresh AdamW moments).
    model, dataset, collator, processor, _ = build_pipeline(train_data, state_dropout_prob=0.3, tune_llm=True)
    with caplog.at_level("WARNING", logger="gr00t.train.trainer"):
        result = run_training(
            model, dataset, collator, _settings(max_steps=2, save_steps=1), tmp_path, processor=processor
        )
    assert result.resumed_from == first and result.global_step == 2
    assert (
        "fresh optimiser moments: the optimiser's parameters changed: now also trains backbone."
        in caplog.text
    )
