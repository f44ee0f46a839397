"""From `TrainingSettings` to HF ``TrainingArguments``: DeepSpeed config and precision resolution.

* ``trainer.deepspeed``: ``auto`` = ZeRO-2 (``gr00t/configs/deepspeed/zero2.json``) when the launcher
  started more than one process, none otherwise; ``none``, ``zero2``, ``zero3`` or a JSON path
  select explicitly. The configs leave optimiser and scheduler to us (torch AdamW as a client
  optimiser, no compiled DeepSpeed op).
* ``trainer.precision``: the compute precision. ``auto`` = bf16 (+ TF32) on a CUDA device with bf16
  support; on CPU bf16 when the model stores its frozen weights in bfloat16, fp32 otherwise.
  bf16 is torch autocast around the forward pass (the trainer enters it, on CUDA and on CPU),
  never a cast of the module: parameters keep the model's precision policy (frozen ones in
  ``model_dtype``, trainable ones float32 master weights). HF's own ``bf16`` switch stays off, so
  DeepSpeed runs its fp32 engine on those float32 trainable parameters instead of casting the
  whole module to bf16 (its bf16 mode would store bf16 copies of the trainable weights).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from transformers import TrainingArguments

from gr00t.paths import available, find_file
from gr00t.train.distributed import launcher_world_size
from gr00t.train.settings import TrainingSettings

DEFAULT_TORCH_EXTENSIONS_DIR = Path.home() / ".cache" / "gr00t_torch_extensions"


def resolve_deepspeed_config(choice: str | None, world_size: int) -> dict[str, Any] | None:
    """DeepSpeed config dict for ``choice`` (auto | none | zero2 | zero3 | path), or None for no DeepSpeed."""
    name = (choice or "none").strip()
    if name.lower() == "auto":
        name = "zero2" if world_size > 1 else "none"
    if name.lower() in ("none", "off", "false", "no", ""):
        return None
    path = Path(name)
    if not path.suffix:
        path = find_file("deepspeed", name, (".json",)) or Path(f"{name}.json")
    if not path.is_file():
        raise FileNotFoundError(
            f"trainer.deepspeed={choice!r}: no DeepSpeed config at {path}; "
            f"expected 'auto', 'none', one of {available('deepspeed', ('.json',))} or a path to a JSON file"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid DeepSpeed JSON ({e})") from e


def offloads_optimizer(ds_config: dict[str, Any] | None) -> bool:
    """Whether a DeepSpeed config offloads the optimiser state (ZeRO-Offload) to the CPU."""
    zero = (ds_config or {}).get("zero_optimization") or {}
    return str((zero.get("offload_optimizer") or {}).get("device", "none")).lower() == "cpu"


def check_deepspeed_optimizer(ds_config: dict[str, Any], optimizer: str, choice: str | None) -> None:
    """ZeRO-Offload steps the optimiser on the CPU: it needs DeepSpeed's CPU Adam, and only it."""
    offload = offloads_optimizer(ds_config)
    if offload and optimizer != "cpu_adam":
        raise ValueError(
            f"trainer.deepspeed={choice}: offloads the optimiser state to the CPU, which needs "
            f"trainer.optimizer=cpu_adam (got {optimizer})"
        )
    if optimizer == "adamw_8bit":
        raise ValueError(
            f"trainer.optimizer=adamw_8bit with trainer.deepspeed={choice}: DeepSpeed flattens the "
            "parameters it hands the optimiser; use trainer.deepspeed=none (one process) or optimizer=adamw"
        )


def single_process_rendezvous() -> None:
    """DeepSpeed without a launcher: the environment of a one-process group (else it looks for MPI)."""
    if "RANK" in os.environ or "WORLD_SIZE" in os.environ:
        return
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(
        RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )


def resolve_precision(precision: str, model_dtype: str = "float32") -> str:
    """'bf16' or 'fp32' for this machine and a model storing frozen weights in ``model_dtype``."""
    cuda = torch.cuda.is_available()
    bf16_ok = not cuda or torch.cuda.is_bf16_supported()
    if precision == "auto":
        if cuda:
            precision = "bf16" if bf16_ok else "fp32"
        else:
            precision = "bf16" if model_dtype == "bfloat16" else "fp32"
    if precision == "bf16" and not bf16_ok:
        raise ValueError("trainer.precision=bf16: this CUDA device does not support bfloat16; use fp32")
    if precision == "fp32" and model_dtype != "float32":
        raise ValueError(
            f"trainer.precision=fp32 with model.model_dtype={model_dtype}: the frozen weights are stored in "
            f"{model_dtype} and need autocast; use trainer.precision=bf16 (or auto), or model.model_dtype=float32 "
            "for fp32 training"
        )
    return precision


def model_storage_dtype(model: torch.nn.Module) -> str:
    """The model's storage dtype of frozen weights (`config.model_dtype`; float32 without one)."""
    return str(getattr(getattr(model, "config", None), "model_dtype", "float32"))


def check_engine(settings: TrainingSettings, model_dtype: str, world_size: int) -> None:
    """Raise ValueError when precision, DeepSpeed config and optimiser cannot work together."""
    resolve_precision(settings.precision, model_dtype)
    ds_config = resolve_deepspeed_config(settings.deepspeed, world_size)
    if ds_config is not None:
        check_deepspeed_optimizer(ds_config, settings.optimizer, settings.deepspeed)
    if settings.optimizer == "cpu_adam" and torch.cuda.is_available() and not offloads_optimizer(ds_config):
        raise ValueError(
            "trainer.optimizer=cpu_adam steps on the CPU: use it with trainer.deepspeed=zero2_offload "
            "(ZeRO-Offload), or optimizer=adamw / adamw_8bit on the GPU"
        )


def training_arguments(
    settings: TrainingSettings, run_dir: Path, report_to: list[str], precision: str = "fp32"
) -> TrainingArguments:
    """HF ``TrainingArguments`` for ``settings`` (initialises torch.distributed when launched);
    ``precision`` is the resolved one (`resolve_precision`): HF's amp stays off, the trainer autocasts."""
    world_size = launcher_world_size()
    ds_config = resolve_deepspeed_config(settings.deepspeed, world_size)
    if ds_config is not None:
        check_deepspeed_optimizer(ds_config, settings.optimizer, settings.deepspeed)
        os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(DEFAULT_TORCH_EXTENSIONS_DIR))
        single_process_rendezvous()
    cuda = torch.cuda.is_available()
    return TrainingArguments(
        output_dir=str(run_dir),
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.per_device_batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        learning_rate=settings.learning_rate,
        weight_decay=settings.weight_decay,
        adam_beta1=settings.adam_beta1,
        adam_beta2=settings.adam_beta2,
        adam_epsilon=settings.adam_epsilon,
        max_grad_norm=settings.max_grad_norm,
        warmup_steps=settings.warmup_ratio,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=settings.save_total_limit,
        logging_strategy="steps",
        logging_steps=settings.logging_steps,
        logging_first_step=True,
        seed=settings.seed,
        bf16=False,  # autocast is entered by the trainer (see the module docstring)
        tf32=bool(settings.tf32 and cuda and precision == "bf16"),
        use_cpu=not cuda,
        deepspeed=ds_config,
        report_to=report_to,
        run_name=settings.run_name,
        disable_tqdm=not settings.progress_bar,
        ignore_data_skip=True,
        remove_unused_columns=False,
        label_names=[],
        dataloader_num_workers=settings.dataloader_num_workers,
        ddp_find_unused_parameters=False,
        save_only_model=False,
        include_num_input_tokens_seen="no",
    )
