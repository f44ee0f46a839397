"""From `TrainingSettings` to HF ``TrainingArguments``: DeepSpeed config and precision resolution.

* ``trainer.deepspeed``: ``auto`` = ZeRO-2 (``gr00t/configs/deepspeed/zero2.json``) when the launcher
  started more than one process, none otherwise; ``none``, ``zero2``, ``zero3`` or a JSON path
  select explicitly. The configs leave optimiser and scheduler to us (torch AdamW as a client
  optimiser, no compiled DeepSpeed op).
* ``trainer.precision``: ``auto`` = bf16 (+ TF32) on a CUDA device with bf16 support, fp32 otherwise.
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


def resolve_precision(precision: str) -> str:
    """'bf16' or 'fp32' for this machine (auto: bf16 on CUDA with bf16 support, else fp32)."""
    cuda = torch.cuda.is_available()
    if precision == "auto":
        return "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
    if precision == "bf16" and not cuda:
        raise ValueError("trainer.precision='bf16' needs a CUDA device; use 'fp32' or 'auto' on CPU")
    return precision


def training_arguments(settings: TrainingSettings, run_dir: Path, report_to: list[str]) -> TrainingArguments:
    """HF ``TrainingArguments`` for ``settings`` (initialises torch.distributed when launched)."""
    world_size = launcher_world_size()
    ds_config = resolve_deepspeed_config(settings.deepspeed, world_size)
    if ds_config is not None:
        os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(DEFAULT_TORCH_EXTENSIONS_DIR))
    precision = resolve_precision(settings.precision)
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
        bf16=precision == "bf16",
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
