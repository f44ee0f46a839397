"""What a training run is configured with (`TrainingSettings`) and what it returns (`TrainingResult`).

``TrainingSettings`` holds everything besides model and data; its defaults are the SPEC §3 finetune
recipe. Hydra's ``trainer`` node becomes one through :meth:`TrainingSettings.from_dict`, which
rejects unknown keys (with suggestions) and impossible values naming the field.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gr00t.train.lora import LORA_DEFAULT_TARGETS
from gr00t.train.optim import OptimizerSettings, warmup_steps
from gr00t.train.preemption import DEFAULT_SIGNALS, REQUEUE_EXIT_CODE


@dataclass
class TrainingSettings:
    """Everything the trainer needs besides model and data. Defaults = SPEC §3 finetune recipe."""

    max_steps: int = 10_000
    per_device_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    # optimiser / schedule
    learning_rate: float = 1e-4
    backbone_learning_rate: float | None = None
    weight_decay: float = 1e-5
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    warmup_ratio: float = 0.05
    lr_scheduler: str = "cosine"
    max_grad_norm: float = 1.0
    # checkpoints
    save_steps: int = 1000
    save_total_limit: int | None = 5
    resume: bool = True
    # distribution / precision / memory
    deepspeed: str | None = "auto"  # auto | none | zero2 | zero3 | path/to/config.json
    precision: str = "auto"  # auto | bf16 | fp32
    tf32: bool = True
    gradient_checkpointing: bool = False
    lora_rank: int = 0  # 0 = off; >0 = LoRA adapters on the backbone's LLM layers
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_target_modules: tuple[str, ...] = LORA_DEFAULT_TARGETS
    # data loading
    seed: int = 42
    dataloader_num_workers: int = 2
    dataloader_prefetch_factor: int | None = None
    dataloader_pin_memory: bool = True
    dataloader_worker_threads: int = 1  # torch and FFmpeg threads in each DataLoader worker
    # windows: decode-aware order (gr00t.data.window_sampler) | random: one seek per sample (MixtureSampler)
    dataloader_sampling: str = "windows"
    dataloader_lanes: int = 16  # windows: episode chunks each worker reads at once (mixed in every batch)
    dataloader_window: int = 8  # windows: consecutive steps a lane reads per block
    # logging
    logging_steps: int = 10
    wandb_mode: str | None = None  # None: $WANDB_MODE or "offline"; "disabled" turns wandb off
    wandb_project: str = "gr00t"
    run_name: str | None = None
    progress_bar: bool = True
    # preemption
    preemption_signals: tuple[str, ...] = DEFAULT_SIGNALS
    exit_on_preemption: bool = True

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingSettings:
        """Build from a dict (e.g. a Hydra ``trainer`` node), rejecting unknown keys with suggestions."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in data if k not in names]
        if unknown:
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(key, names, n=2)
                hints.append(
                    f"{key!r}" + (f" (did you mean {' or '.join(map(repr, close))}?)" if close else "")
                )
            raise ValueError(f"unknown trainer setting(s): {', '.join(hints)}")
        values = dict(data)
        for key in ("lora_target_modules", "preemption_signals"):
            if key in values and values[key] is not None and not isinstance(values[key], str):
                values[key] = tuple(values[key])
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Reject impossible values with a message naming the field."""
        positive = (
            "max_steps",
            "per_device_batch_size",
            "gradient_accumulation_steps",
            "save_steps",
            "logging_steps",
            "dataloader_worker_threads",
            "dataloader_lanes",
            "dataloader_window",
        )
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"trainer.{name}={getattr(self, name)}: expected an integer >= 1")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"trainer.precision={self.precision!r}: expected 'auto', 'bf16' or 'fp32'")
        if self.lora_rank < 0:
            raise ValueError(f"trainer.lora_rank={self.lora_rank}: expected >= 0 (0 disables LoRA)")
        if self.max_grad_norm < 0:
            raise ValueError(
                f"trainer.max_grad_norm={self.max_grad_norm}: expected >= 0 (0 disables clipping)"
            )
        if self.dataloader_sampling not in ("windows", "random"):
            raise ValueError(
                f"trainer.dataloader_sampling={self.dataloader_sampling!r}: expected 'windows' or 'random'"
            )
        if self.dataloader_num_workers < 0:
            raise ValueError(f"trainer.dataloader_num_workers={self.dataloader_num_workers}: expected >= 0")
        self.optimizer_settings()  # validates the optimiser fields too
        warmup_steps(self.max_steps, self.warmup_ratio)

    def optimizer_settings(self) -> OptimizerSettings:
        """The optimiser/schedule subset."""
        return OptimizerSettings(
            learning_rate=self.learning_rate,
            backbone_learning_rate=self.backbone_learning_rate,
            weight_decay=self.weight_decay,
            adam_beta1=self.adam_beta1,
            adam_beta2=self.adam_beta2,
            adam_epsilon=self.adam_epsilon,
            warmup_ratio=self.warmup_ratio,
            lr_scheduler=self.lr_scheduler,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out


@dataclass
class TrainingResult:
    """What :func:`gr00t.train.trainer.run_training` returns (on every rank)."""

    global_step: int
    train_loss: float
    last_checkpoint: Path | None
    resumed_from: Path | None
    preempted: bool = False
    global_batch_size: int = 0
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """0, or :data:`~gr00t.train.preemption.REQUEUE_EXIT_CODE` after a preemption."""
        return REQUEUE_EXIT_CODE if self.preempted else 0
