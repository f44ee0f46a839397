"""Optimiser and learning-rate schedule of the training recipe (SPEC-N16 §3).

* AdamW (lr 1e-4, weight decay 1e-5, betas 0.9/0.999 by default): torch's (``optimizer=adamw``),
  bitsandbytes' 8-bit AdamW (``adamw_8bit``: both moments block-quantised to 8 bits, 2 bytes per
  parameter instead of 8; tensors under 4096 elements keep 32-bit moments) or DeepSpeed's CPU Adam
  in AdamW mode (``cpu_adam``: what ZeRO-Offload of the optimiser state requires).
* No weight decay on biases, normalisation weights, or any other parameter with fewer than two
  dimensions. Everything else (linear/embedding matrices, per-embodiment ``W [E, in, out]``,
  the learned mask token) is decayed.
* Optionally a separate learning rate for the backbone (parameters under ``backbone.``).
* Cosine schedule with linear warmup; the warmup length is ``ceil(warmup_ratio * max_steps)`` and
  the cosine always ends exactly at ``max_steps`` — the schedule follows ``max_steps``, never an
  epoch count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

_NORM_NAME_PARTS = ("norm", "ln_", ".ln", "layernorm", "rmsnorm")


@dataclass(frozen=True)
class OptimizerSettings:
    """Hyper-parameters of AdamW and its schedule."""

    optimizer: str = "adamw"  # adamw | adamw_8bit | cpu_adam
    learning_rate: float = 1e-4
    backbone_learning_rate: float | None = None  # None: same as learning_rate
    weight_decay: float = 1e-5
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    warmup_ratio: float = 0.05
    lr_scheduler: str = "cosine"  # "cosine" | "constant"
    backbone_prefix: str = "backbone."


def is_no_decay(name: str, param: torch.Tensor, norm_param_ids: set[int] | None = None) -> bool:
    """True for parameters that must not be weight-decayed: biases, norms and all <2-D tensors."""
    if param.ndim < 2:
        return True
    if norm_param_ids is not None and id(param) in norm_param_ids:
        return True
    lowered = name.lower()
    leaf = lowered.rsplit(".", 1)[-1]
    if leaf == "bias" or leaf.endswith("_bias") or leaf == "b":
        return True
    return any(part in lowered for part in _NORM_NAME_PARTS)


def _norm_param_ids(model: nn.Module) -> set[int]:
    norm_types: tuple[type, ...] = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d, nn.BatchNorm2d)
    if hasattr(nn, "RMSNorm"):
        norm_types = norm_types + (nn.RMSNorm,)
    ids: set[int] = set()
    for module in model.modules():
        if isinstance(module, norm_types) or "norm" in type(module).__name__.lower():
            ids.update(id(p) for p in module.parameters(recurse=False))
    return ids


def param_groups(model: nn.Module, settings: OptimizerSettings) -> list[dict]:
    """AdamW parameter groups: (backbone | rest) × (decay | no decay), trainable parameters only.

    Every group carries a ``name`` key (``head/decay``, ``head/no_decay``, ``backbone/decay``,
    ``backbone/no_decay``) so logs and tests can tell them apart. Empty groups are dropped.
    """
    norm_ids = _norm_param_ids(model)
    buckets: dict[tuple[str, bool], list[torch.nn.Parameter]] = {}
    seen: set[int] = set()
    for name, param in model.named_parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        part = "backbone" if _is_backbone(name, settings.backbone_prefix) else "head"
        buckets.setdefault((part, is_no_decay(name, param, norm_ids)), []).append(param)
    if not buckets:
        raise ValueError("the model has no trainable parameters (every parameter has requires_grad=False)")
    groups = []
    for part in ("head", "backbone"):
        lr = settings.learning_rate
        if part == "backbone" and settings.backbone_learning_rate is not None:
            lr = settings.backbone_learning_rate
        for no_decay in (False, True):
            params = buckets.get((part, no_decay))
            if params:
                groups.append(
                    {
                        "name": f"{part}/{'no_decay' if no_decay else 'decay'}",
                        "params": params,
                        "lr": lr,
                        "weight_decay": 0.0 if no_decay else settings.weight_decay,
                    }
                )
    return groups


def _is_backbone(name: str, prefix: str) -> bool:
    # Wrappers (peft, DeepSpeed) may prepend their own prefixes such as "base_model.model." or "module.".
    return name.startswith(prefix) or f".{prefix}" in name


def build_optimizer(model: nn.Module, settings: OptimizerSettings) -> torch.optim.Optimizer:
    """AdamW over :func:`param_groups`: torch's (so DeepSpeed needs no compiled op), bitsandbytes'
    8-bit one, or DeepSpeed's CPU Adam (``settings.optimizer``)."""
    if settings.learning_rate <= 0:
        raise ValueError(f"learning_rate={settings.learning_rate}: expected > 0")
    if settings.weight_decay < 0:
        raise ValueError(f"weight_decay={settings.weight_decay}: expected >= 0")
    groups = param_groups(model, settings)
    common = dict(
        lr=settings.learning_rate,
        betas=(settings.adam_beta1, settings.adam_beta2),
        eps=settings.adam_epsilon,
        weight_decay=settings.weight_decay,
    )
    if settings.optimizer == "adamw":
        return torch.optim.AdamW(groups, **common)
    if settings.optimizer == "adamw_8bit":
        return _bitsandbytes().optim.AdamW8bit(groups, **common)
    if settings.optimizer == "cpu_adam":
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return DeepSpeedCPUAdam(groups, adamw_mode=True, **common)
    raise ValueError(f"optimizer={settings.optimizer!r}: expected adamw, adamw_8bit or cpu_adam")


def _bitsandbytes():
    """bitsandbytes, imported quietly (it logs a warning about optional 4-bit CPU kernels we never use)."""
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        import bitsandbytes
    except ImportError as exc:
        raise ImportError(
            "trainer.optimizer=adamw_8bit needs bitsandbytes (pip install bitsandbytes)"
        ) from exc
    finally:
        root.setLevel(level)
    return bitsandbytes


def warmup_steps(max_steps: int, warmup_ratio: float) -> int:
    """Number of linear-warmup steps: ``ceil(warmup_ratio * max_steps)``."""
    if not 0.0 <= warmup_ratio < 1.0:
        raise ValueError(f"warmup_ratio={warmup_ratio}: expected a fraction in [0, 1)")
    return math.ceil(warmup_ratio * max_steps)


def lr_factor(step: int, max_steps: int, warmup: int, kind: str = "cosine") -> float:
    """Multiplier of the base learning rate before optimiser step ``step`` (0-based)."""
    if step < warmup:
        return step / warmup  # same convention as transformers: 0 before the first step
    if kind == "constant":
        return 1.0
    progress = (step - warmup) / max(1, max_steps - warmup)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


def build_scheduler(
    optimizer: torch.optim.Optimizer, max_steps: int, settings: OptimizerSettings
) -> torch.optim.lr_scheduler.LambdaLR:
    """Warmup + cosine (or constant) schedule whose length is exactly ``max_steps``."""
    if max_steps < 1:
        raise ValueError(f"max_steps={max_steps}: expected >= 1")
    if settings.lr_scheduler not in ("cosine", "constant"):
        raise ValueError(f"lr_scheduler={settings.lr_scheduler!r}: expected 'cosine' or 'constant'")
    warmup = warmup_steps(max_steps, settings.warmup_ratio)
    kind = settings.lr_scheduler
    return torch.optim.lr_scheduler.LambdaLR(optimizer, _Schedule(max_steps, warmup, kind))


class _Schedule:
    """Picklable lr lambda (LambdaLR state_dict stores callable objects' __dict__)."""

    def __init__(self, max_steps: int, warmup: int, kind: str) -> None:
        self.max_steps = max_steps
        self.warmup = warmup
        self.kind = kind

    def __call__(self, step: int) -> float:
        return lr_factor(step, self.max_steps, self.warmup, self.kind)
