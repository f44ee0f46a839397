"""The training DataLoader: a resumable, rank-sharded sampler chained over epochs.

The data position is the sampler's state (global draws consumed), not a count of batches to skip:
the sampler is already sharded per rank (accelerate must not re-shard it) and starts each
``__iter__`` where it stopped. The DataLoader has its own seeded generator, so creating iterators
never touches the global RNG. Sample transforms running in dataloader workers must be seeded per
sample for augmentations to be resume-exact.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from gr00t.model.batch import Gr00tBatch
from gr00t.train.preemption import configure_worker_signals, signals_blocked
from gr00t.train.settings import TrainingSettings


class EndlessSampler(Sampler[int]):
    """Chains the epochs of a resumable sampler into one stream (HF then sees one long 'epoch').

    The wrapped sampler starts each ``__iter__`` at its current position and moves to the next epoch
    when exhausted (``gr00t.data.sampler.MixtureSampler`` does both). No ``__len__``: the training
    length is ``max_steps``, so batches may span data-epoch boundaries.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __iter__(self) -> Iterator[int]:
        while True:
            produced = False
            for index in self.inner:
                produced = True
                yield index
            if not produced:
                raise RuntimeError(
                    f"sampler {type(self.inner).__name__} produced no index; the dataset is empty"
                )


def batch_size_of(batch: Any) -> int:
    """Number of samples in a collated batch (a `Gr00tBatch`, a dict of tensors or a tuple of tensors)."""
    if isinstance(batch, Gr00tBatch):
        return len(batch)
    if isinstance(batch, dict):
        for key in ("embodiment_id", "state", "action"):
            value = batch.get(key)
            if isinstance(value, torch.Tensor):
                return int(value.shape[0])
        for value in batch.values():
            if isinstance(value, torch.Tensor) and value.ndim > 0:
                return int(value.shape[0])
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        return int(batch[0].shape[0])
    raise TypeError(
        f"cannot tell the batch size of a {type(batch).__name__} batch (expected a dict of tensors)"
    )


def resolve_sampler(sampler: Any, dataset: Dataset, seed: int, rank: int, world_size: int) -> Any:
    """This rank's resumable sampler.

    ``sampler`` is a sampler, a factory ``(rank, world_size) -> sampler``, or None for a
    ``MixtureSampler`` over ``len(dataset)``. Raises TypeError unless the result can save and
    restore its position.
    """
    if sampler is None:
        from gr00t.data.sampler import MixtureSampler

        sampler = MixtureSampler([len(dataset)], seed=seed, rank=rank, world_size=world_size)  # type: ignore[arg-type]
    elif callable(sampler) and not hasattr(sampler, "state_dict"):
        sampler = sampler(rank, world_size)
    for needed in ("state_dict", "load_state_dict", "__iter__"):
        if not hasattr(sampler, needed):
            raise TypeError(
                f"sampler {type(sampler).__name__} lacks {needed}(); expected a resumable MixtureSampler"
            )
    return sampler


def worker_init(worker_id: int, signals: tuple[str, ...] = ()) -> None:
    """Set-up of each DataLoader worker process."""
    configure_worker_signals(signals)  # a signal to the whole job must not kill workers mid-step


class WorkerSafeDataLoader(DataLoader):
    """A DataLoader whose worker processes are forked with the preemption signals blocked."""

    def __init__(self, *args: Any, signals: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.signals = signals

    def __iter__(self) -> Any:
        if self.num_workers == 0:
            return super().__iter__()
        with signals_blocked(self.signals):
            return super().__iter__()


def build_train_dataloader(
    dataset: Dataset,
    sampler: Any,
    collate_fn: Callable[[list[Any]], Any],
    settings: TrainingSettings,
    process_index: int,
) -> DataLoader:
    """A plain DataLoader over ``EndlessSampler(sampler)`` with a per-rank seeded generator."""
    workers = settings.dataloader_num_workers
    generator = torch.Generator().manual_seed(settings.seed + 1_000_003 * process_index)
    signals = tuple(settings.preemption_signals)
    return WorkerSafeDataLoader(
        dataset,
        signals=signals,
        batch_size=settings.per_device_batch_size,
        sampler=EndlessSampler(sampler),
        collate_fn=collate_fn,
        num_workers=workers,
        pin_memory=settings.dataloader_pin_memory and torch.cuda.is_available(),
        prefetch_factor=(settings.dataloader_prefetch_factor or 2) if workers > 0 else None,
        persistent_workers=False,
        generator=generator,
        worker_init_fn=functools.partial(worker_init, signals=signals),
    )
