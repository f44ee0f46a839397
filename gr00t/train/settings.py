"""What a training run is configured with (`TrainerConfig`, `TrainingSettings`) and what it returns.

``TrainerConfig`` is the Hydra structured config of the recipes' ``trainer`` node: every key a
user may set, its type, its choices and its default (the SPEC §3 finetune recipe) are declared
here and nowhere else; the YAML files of the ``trainer`` group only hold differences from it.
``TrainingSettings`` is what the trainer runs with: the same fields plus the run-level values the
recipe sets outside ``trainer`` (``seed``, ``resume``, the launcher's preemption signals).

This module imports neither torch nor transformers, so the command line validates quickly.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# LLM projections LoRA adapts by default (`gr00t.train.lora` uses the same tuple).
LORA_DEFAULT_TARGETS: tuple[str, ...] = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)
# Signals that make the trainer checkpoint and stop (same as `gr00t.train.preemption.DEFAULT_SIGNALS`).
PREEMPTION_SIGNALS: tuple[str, ...] = ("SIGTERM", "SIGUSR1")


class LrScheduler(str, enum.Enum):
    """Learning-rate schedule after the warmup."""

    cosine = "cosine"
    constant = "constant"


class Precision(str, enum.Enum):
    """auto: bf16 (+TF32) on a CUDA device with bf16 support, fp32 otherwise."""

    auto = "auto"
    bf16 = "bf16"
    fp32 = "fp32"


class DataSampling(str, enum.Enum):
    """Training order: windows = decode-aware (`gr00t.data.window_sampler`), random = one seek per sample."""

    windows = "windows"
    random = "random"


class OptimizerName(str, enum.Enum):
    """adamw: torch AdamW; adamw_8bit: bitsandbytes 8-bit AdamW (block-quantised moments, CPU and
    CUDA); cpu_adam: DeepSpeed's CPU Adam (AdamW mode), required by ZeRO-Offload of the optimiser."""

    adamw = "adamw"
    adamw_8bit = "adamw_8bit"
    cpu_adam = "cpu_adam"


class WandbMode(str, enum.Enum):
    """wandb's mode; null in the config means $WANDB_MODE, else offline."""

    online = "online"
    offline = "offline"
    disabled = "disabled"


# Integer settings that must be >= 1.
_POSITIVE = (
    "max_steps",
    "gradient_accumulation_steps",
    "save_steps",
    "logging_steps",
    "dataloader_worker_threads",
    "dataloader_lanes",
    "dataloader_window",
)


@dataclass
class TrainerConfig:
    """The ``trainer`` keys of every recipe. Defaults = SPEC-N16 §3 finetune recipe: AdamW 1e-4 /
    wd 1e-5 / betas 0.9, 0.999, cosine with 5 % warmup, grad clip 1.0, bf16 + TF32 on GPU,
    DeepSpeed ZeRO-2 with several processes, global batch 64, 10 000 steps, a checkpoint every
    1 000 steps, 5 kept."""

    max_steps: int = 10_000
    # The batch (`derive_batch`): `global_batch_size` split over processes x accumulation; or, with
    # `per_device_batch_size` set and `gradient_accumulation_steps: null`, the accumulation that
    # reaches the global batch with that micro-batch on this many processes (the pretraining
    # recipe); with both set, they win and the global batch follows from them.
    global_batch_size: int | None = 64
    per_device_batch_size: int | None = None
    gradient_accumulation_steps: int | None = 1
    # optimiser / schedule
    optimizer: OptimizerName = OptimizerName.adamw
    learning_rate: float = 1e-4
    backbone_learning_rate: float | None = None  # None: same as learning_rate
    weight_decay: float = 1e-5
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    warmup_ratio: float = 0.05
    lr_scheduler: LrScheduler = LrScheduler.cosine
    max_grad_norm: float = 1.0  # 0 disables clipping
    # checkpoints
    save_steps: int = 1000
    save_total_limit: int | None = 5
    # distribution / precision / memory
    deepspeed: str | None = (
        "auto"  # auto (ZeRO-2 with >1 process) | none | zero2 | zero3 | path/to/config.json
    )
    precision: Precision = Precision.auto
    tf32: bool = True
    # The memory profile these settings came from (`memory=<profile>`, gr00t/configs/memory/*.yaml).
    memory: str = "default"
    gradient_checkpointing: bool = False
    cpu_threads: int | None = None  # CPU-only machines: torch threads per process (None: torch default)
    lora_rank: int = 0  # 0 = off; >0 = LoRA adapters on the backbone's LLM layers
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_target_modules: list[str] = field(default_factory=lambda: list(LORA_DEFAULT_TARGETS))
    lora_dit: bool = False  # with lora_rank > 0: adapters on the DiT's attention/feed-forward too
    # weight EMA (gr00t.train.ema): null/0 = off; else decay_t = min(ema_decay, (1 + t) / (10 + t))
    ema_decay: float | None = None
    # validation on held-out episodes (recipe key val_episodes): every eval_steps (null: save_steps)
    eval_steps: int | None = None
    eval_samples: int = 64  # validation samples, evenly spread over the held-out episodes
    # data loading
    dataloader_num_workers: int = 4
    dataloader_prefetch_factor: int | None = None
    dataloader_pin_memory: bool = True
    dataloader_worker_threads: int = 1  # torch + FFmpeg threads in each DataLoader worker
    # windows: decode-aware, reads episodes forward and mixes `dataloader_lanes` of them in every batch
    dataloader_sampling: DataSampling = DataSampling.windows
    dataloader_lanes: int = 16  # windows: episode chunks each worker reads at once
    dataloader_window: int = 4  # windows: consecutive steps each lane reads per block (16 x 4 = 64)
    # logging
    logging_steps: int = 10
    wandb_mode: WandbMode | None = None  # None: $WANDB_MODE or offline; disabled turns wandb off
    wandb_project: str = "gr00t"
    run_name: str | None = None  # None: the run directory's name
    progress_bar: bool = True
    # preemption
    exit_on_preemption: bool = True


def derive_batch(
    global_batch: int | None, per_device: int | None, accumulation: int | None, world_size: int
) -> tuple[int, int]:
    """(per-device micro-batch, accumulation steps) of a launch on ``world_size`` processes."""
    if per_device is not None and accumulation is None:
        if global_batch is None:
            raise ValueError("trainer.gradient_accumulation_steps=null needs trainer.global_batch_size")
        denom = per_device * world_size
        if global_batch % denom:
            raise ValueError(
                f"trainer.global_batch_size={global_batch} is not divisible by {per_device} per device x "
                f"{world_size} processes; set trainer.gradient_accumulation_steps explicitly"
            )
        return per_device, global_batch // denom
    accumulation = 1 if accumulation is None else int(accumulation)
    if per_device is None:
        per_device = per_device_batch(global_batch, world_size, max(1, accumulation))
    return per_device, accumulation


def global_batch_note(target: int | None, settings: TrainerConfig, world_size: int) -> str | None:
    """The warning for a launch whose global batch is not the recipe's `global_batch_size` (None: it is)."""
    accumulation = int(settings.gradient_accumulation_steps or 1)
    actual = int(settings.per_device_batch_size or 0) * world_size * accumulation
    if target is None or int(target) == actual:
        return None
    return (
        f"trainer.global_batch_size={target} but this launch trains with global batch {actual} = "
        f"{settings.per_device_batch_size} per device x {world_size} processes x {accumulation} accumulation; "
        "trainer.gradient_accumulation_steps=null derives the accumulation that reaches it"
    )


def per_device_batch(global_batch: int | None, world_size: int, accumulation: int) -> int:
    """``global_batch`` split over ``world_size`` processes x ``accumulation`` steps (exactly)."""
    if global_batch is None:
        raise ValueError("trainer.per_device_batch_size and trainer.global_batch_size are both null")
    denom = world_size * accumulation
    if global_batch % denom:
        raise ValueError(
            f"trainer.global_batch_size={global_batch} is not divisible by {world_size} processes x "
            f"{accumulation} accumulation steps; set trainer.per_device_batch_size explicitly"
        )
    return global_batch // denom


@dataclass
class TrainingSettings(TrainerConfig):
    """Everything the trainer needs besides model and data: `TrainerConfig` plus the run-level values.

    Built from the recipe by :func:`gr00t.train.build.trainer_settings`; from Python, construct it
    directly (`per_device_batch_size=None` splits `global_batch_size` over ``$WORLD_SIZE`` processes).
    """

    seed: int = 42
    resume: bool = True
    preemption_signals: tuple[str, ...] = PREEMPTION_SIGNALS

    def __post_init__(self) -> None:
        for key in ("lora_target_modules", "preemption_signals"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, str):
                setattr(self, key, tuple(value))
        for key in ("lr_scheduler", "precision", "wandb_mode", "optimizer", "dataloader_sampling"):
            value = getattr(self, key)
            if isinstance(value, enum.Enum):
                setattr(self, key, value.value)
        if self.per_device_batch_size is None or self.gradient_accumulation_steps is None:
            world = int(os.environ.get("WORLD_SIZE", "1"))
            self.per_device_batch_size, self.gradient_accumulation_steps = derive_batch(
                self.global_batch_size, self.per_device_batch_size, self.gradient_accumulation_steps, world
            )

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
        settings = cls(**data)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Reject impossible values with a message naming the field."""
        for name in (*_POSITIVE, "per_device_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"trainer.{name}={getattr(self, name)}: expected an integer >= 1")
        choices = {
            "precision": Precision,
            "lr_scheduler": LrScheduler,
            "optimizer": OptimizerName,
            "dataloader_sampling": DataSampling,
        }
        for name, kind in choices.items():
            if getattr(self, name) not in [m.value for m in kind]:
                raise ValueError(
                    f"trainer.{name}={getattr(self, name)!r}: expected one of {[m.value for m in kind]}"
                )
        if self.ema_decay is not None and not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"trainer.ema_decay={self.ema_decay}: expected a decay in [0, 1) or null (off)")
        for name in ("eval_steps", "eval_samples"):
            value = getattr(self, name)
            if value is not None and int(value) < 1:
                raise ValueError(
                    f"trainer.{name}={value}: expected an integer >= 1"
                    + (" or null" if name == "eval_steps" else "")
                )
        if self.lora_rank < 0:
            raise ValueError(f"trainer.lora_rank={self.lora_rank}: expected >= 0 (0 disables LoRA)")
        if self.max_grad_norm < 0:
            raise ValueError(
                f"trainer.max_grad_norm={self.max_grad_norm}: expected >= 0 (0 disables clipping)"
            )
        if self.dataloader_num_workers < 0:
            raise ValueError(f"trainer.dataloader_num_workers={self.dataloader_num_workers}: expected >= 0")
        if self.cpu_threads is not None and self.cpu_threads < 1:
            raise ValueError(f"trainer.cpu_threads={self.cpu_threads}: expected a positive integer or null")
        from gr00t.train.optim import warmup_steps

        self.optimizer_settings()  # validates the optimiser fields too
        warmup_steps(self.max_steps, self.warmup_ratio)

    def optimizer_settings(self) -> Any:
        """The optimiser/schedule subset (`gr00t.train.optim.OptimizerSettings`)."""
        from gr00t.train.optim import OptimizerSettings

        return OptimizerSettings(
            optimizer=self.optimizer,
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
        from gr00t.train.preemption import REQUEUE_EXIT_CODE

        return REQUEUE_EXIT_CODE if self.preempted else 0
