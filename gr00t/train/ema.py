"""Weight EMA (``trainer.ema_decay``): an exponential moving average of the trained weights.

Rule. The average starts from the weights before the first optimiser step and is updated after
every optimiser step; the ``t``-th update (``t = 0, 1, …``, i.e. after step ``t + 1``) uses

    decay_t = min(ema_decay, (1 + t) / (10 + t))
    ema     = decay_t · ema + (1 − decay_t) · w

so the average follows the weights closely at first (decay 0.1, 0.18, 0.25, …) and reaches
``ema_decay`` after ``(10·ema_decay − 1) / (1 − ema_decay)`` updates (about 9 990 for 0.999).

What is averaged: every parameter that requires grad when training starts (with LoRA: the adapters
and the trained head), in float32 on the parameters' device, named as in ``model.safetensors``.
Each checkpoint stores it as ``ema.safetensors`` (metadata: updates, decay); a resume loads it back,
so a killed and resumed run ends with the same average bit for bit. Under DeepSpeed ZeRO-2 every
rank holds the full updated parameters after each step, keeps the same average, and rank 0 writes
it; ZeRO-3 (partitioned parameters) is refused. Loaders use it by default (`gr00t.model.weights`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import TrainerCallback

from gr00t.model.weights import EMA_WEIGHTS_NAME

logger = logging.getLogger(__name__)

EMA_FORMAT = "gr00t-ema-1"


def ema_decay_at(decay: float, t: int) -> float:
    """The decay of the ``t``-th update (0-based)."""
    return min(decay, (1.0 + t) / (10.0 + t))


class WeightEma:
    """The float32 average of a model's trained parameters (see the module docstring)."""

    def __init__(self, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"trainer.ema_decay={decay}: expected a decay in (0, 1)")
        self.decay = float(decay)
        self.updates = 0
        self.shadow: dict[str, torch.Tensor] = {}

    @property
    def started(self) -> bool:
        return bool(self.shadow)

    @staticmethod
    def _trained(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
        return {name: p for name, p in model.named_parameters() if p.requires_grad}

    def start(self, model: torch.nn.Module) -> None:
        """Begin the average at the model's current trained weights."""
        self.shadow = {n: p.detach().to(torch.float32).clone() for n, p in self._trained(model).items()}
        self.updates = 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """One update after an optimiser step."""
        decay = ema_decay_at(self.decay, self.updates)
        params = dict(model.named_parameters())
        for name, avg in self.shadow.items():
            avg.mul_(decay).add_(params[name].detach().to(torch.float32), alpha=1.0 - decay)
        self.updates += 1

    def save(self, directory: str | Path) -> Path:
        """Write ``ema.safetensors`` into a checkpoint folder being assembled (rank 0)."""
        from safetensors.torch import save_file

        path = Path(directory) / EMA_WEIGHTS_NAME
        tensors = {n: t.detach().contiguous().cpu() for n, t in self.shadow.items()}
        metadata = {"format": EMA_FORMAT, "updates": str(self.updates), "decay": repr(self.decay)}
        save_file(tensors, str(path), metadata=metadata)
        return path

    def load(self, path: str | Path, model: torch.nn.Module) -> bool:
        """Continue the average stored at ``path``; False (and a fresh start) when it does not fit."""
        from safetensors import safe_open

        trained = self._trained(model)
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            stored = {key: f.get_tensor(key) for key in f.keys()}
        if metadata.get("format") != EMA_FORMAT or set(stored) != set(trained):
            changed = sorted(set(stored) ^ set(trained))[:3]
            logger.warning(
                "%s does not fit the trained parameters (%s): the EMA restarts here", path, changed
            )
            self.start(model)
            return False
        self.shadow = {n: stored[n].to(device=trained[n].device, dtype=torch.float32) for n in trained}
        self.updates = int(metadata["updates"])
        return True


class EmaCallback(TrainerCallback):
    """Keeps a `WeightEma` of ``model`` in step with training (documented HF callback events).

    ``resume_from``: the ``ema.safetensors`` of the checkpoint the run resumes from (None: start at
    the weights training begins with). Loaded when training begins, after the model is placed.
    """

    def __init__(self, ema: WeightEma, model: torch.nn.Module, resume_from: Path | None = None) -> None:
        self.ema = ema
        self.model = model
        self.resume_from = resume_from

    def on_train_begin(self, args, state, control, **kwargs):
        if self.resume_from is None:
            self.ema.start(self.model)
        elif self.ema.load(self.resume_from, self.model):
            logger.info("EMA continues from %s (%d updates)", self.resume_from, self.ema.updates)

    def on_step_end(self, args, state, control, **kwargs):
        self.ema.update(self.model)


__all__ = ["EMA_FORMAT", "EmaCallback", "WeightEma", "ema_decay_at"]
