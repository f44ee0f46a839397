"""Validation flow-matching loss on held-out episodes (recipe key ``val_episodes``).

Logged as ``val_loss`` every ``trainer.eval_steps`` optimiser steps (null: every ``save_steps``)
into ``<run_dir>/metrics.jsonl`` and wandb. Deterministic, so that two values differ only because
the weights did:

* up to ``trainer.eval_samples`` samples, evenly spread over the held-out samples, always the same;
* the processor in eval mode (no augmentation), the model in eval mode (no dropout, no state dropout);
* each sample's noise and flow time ``t`` drawn from the training distributions with a seed of
  its own (``seed``, position), whatever the batch or process it lands in;
* the global RNG is saved and restored around it, so a run with validation trains exactly like
  one without (and resumes bitwise).

The value is the masked mean over all evaluated samples, ``Σ((pred − v)²·mask) / Σmask`` (the
training loss's formula), summed across processes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from gr00t.train.distributed import all_reduce

VAL_LOSS = "val_loss"


def spread_positions(size: int, count: int) -> list[int]:
    """``count`` positions evenly spread over ``range(size)`` (all of them when ``count >= size``)."""
    if size <= 0:
        return []
    if count >= size:
        return list(range(size))
    return sorted({int(round(x)) for x in np.linspace(0, size - 1, count)})


def _flow_draws(
    model: Any, action_shape: Sequence[int], seed: int, position: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(noise [H, A], t [1]) of one sample, from the global RNG re-seeded for it (caller forks the RNG)."""
    torch.manual_seed(seed * 1_000_003 + position)
    noise = torch.randn(tuple(action_shape))
    t = model.action_head.sample_time(1, "cpu")
    return noise, t


class ValidationLoss:
    """Computes the validation loss of a model on a processed held-out dataset (see the module docstring).

    Args:
        dataset: map-style dataset of model-ready samples (eval-mode processor).
        collator: samples → `Gr00tBatch`.
        batch_size: samples per forward pass.
        max_samples: how many samples to evaluate (evenly spread).
        seed: seeds the per-sample noise and t.
    """

    def __init__(
        self, dataset: Any, collator: Callable, batch_size: int, max_samples: int, seed: int
    ) -> None:
        self.dataset = dataset
        self.collator = collator
        self.batch_size = max(1, int(batch_size))
        self.positions = spread_positions(len(dataset), int(max_samples))
        self.seed = int(seed)

    def _batches(self, rank: int, world: int) -> list[list[int]]:
        mine = self.positions[rank::world]
        return [mine[i : i + self.batch_size] for i in range(0, len(mine), self.batch_size)]

    @torch.no_grad()
    def __call__(self, model: Any, to_device: Callable[[Any], Any], rank: int = 0, world: int = 1) -> float:
        """The loss of ``model``; ``to_device`` moves a batch where the model runs. Every rank must call."""
        batches = self._batches(rank, world)
        count = int(all_reduce([len(batches)], "max")[0])  # equal forward passes on every rank (ZeRO-3)
        device = next(model.parameters()).device
        devices = [device] if device.type == "cuda" else []
        total = [0.0, 0.0]
        was_training = model.training
        model.eval()
        try:
            with torch.random.fork_rng(devices=devices):
                for i in range(count):
                    positions = (
                        batches[i] if i < len(batches) else batches[0] if batches else self.positions[:1]
                    )
                    loss, mask = self._batch_loss(model, to_device, positions)
                    if i < len(batches):
                        total = [total[0] + loss * mask, total[1] + mask]
        finally:
            model.train(was_training)
        total = all_reduce(total, "sum")
        return total[0] / total[1] if total[1] > 0 else float("nan")

    def _batch_loss(
        self, model: Any, to_device: Callable[[Any], Any], positions: list[int]
    ) -> tuple[float, float]:
        batch = self.collator([self.dataset[p] for p in positions])
        shape = batch.head.action.shape[1:]
        draws = [_flow_draws(model, shape, self.seed, p) for p in positions]
        noise = torch.stack([n for n, _ in draws])
        t = torch.cat([t for _, t in draws])
        batch = to_device(batch)
        device = batch.head.action.device
        loss = model(batch, noise=noise.to(device), t=t.to(device)).loss
        mask = float(batch.head.action_mask.to(torch.float32).sum()) + 1e-6  # the loss's own denominator
        return float(loss), mask


__all__ = ["VAL_LOSS", "ValidationLoss", "spread_positions"]
