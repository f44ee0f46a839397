"""The training DataLoader over a resumable, rank-sharded sampler.

Two orders (``trainer.dataloader_sampling``):

* ``windows`` (default): the decode-aware `WindowSampler` drives a `WindowStream` (an
  ``IterableDataset``): each worker reads episode chunks forward, window by window, and mixes the
  windows of ``dataloader_lanes`` chunks in every batch, so long-GOP video never pays a keyframe
  seek per sample;
* ``random``: a `MixtureSampler` chained over epochs (`EndlessSampler`) hands out single samples,
  each decoded with its own seek.

The data position is the sampler's state (global draws consumed), not a count of batches to skip:
the sampler is already sharded per rank (accelerate must not re-shard it) and starts where it
stopped. The DataLoader has its own seeded generator, so creating iterators never touches the
global RNG. Per-sample augmentation is keyed by the sampler's draw, so it is resume-exact. Every
worker starts with `worker_init`: torch and FFmpeg use ``dataloader_worker_threads`` threads each.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from gr00t.model.backbones.base import normalize_uint8_pixels
from gr00t.model.batch import Gr00tBatch

if TYPE_CHECKING:  # a spawned worker imports this module for worker_init: keep it light
    from gr00t.train.settings import TrainingSettings


def finish_pixel_values(batch: Any, dtype: torch.dtype | None = None) -> Any:
    """Finish a `Gr00tBatch` whose ``pixel_values`` came as uint8 (``vlm.pixel_transport=uint8``, the
    training default) on whatever device it now is: float32 ``(u8 − 127.5) / 127.5`` (the processor's own
    normalisation), Eagle padding kept at 0, so the model sees the float transport's values bit for bit;
    then ``dtype`` if given (what float inputs get, e.g. DeepSpeed's). Anything else is returned as is.
    (The backbones normalise uint8 pixels they are given the same way; the trainer does it here first so
    that DeepSpeed's dtype applies as to every other float input.)"""
    backbone = batch.backbone if isinstance(batch, Gr00tBatch) else None
    values = getattr(backbone, "pixel_values", None)
    if not isinstance(values, torch.Tensor) or values.dtype != torch.uint8:
        return batch
    out = normalize_uint8_pixels(values, getattr(backbone, "pixel_attention_mask", None))
    if dtype is not None:
        out = out.to(dtype)
    return dataclasses.replace(batch, backbone=dataclasses.replace(backbone, pixel_values=out))


def worker_init(worker_id: int, threads: int = 1, signals: tuple[str, ...] = ()) -> None:
    """First thing every DataLoader worker runs: the preemption ``signals`` are ignored (a signal to the
    whole job must not kill a worker mid-step) and torch and FFmpeg get ``threads`` threads each, so N
    workers use N cores."""
    from gr00t.data.video import set_ffmpeg_threads
    from gr00t.train.preemption import configure_worker_signals

    configure_worker_signals(signals)
    torch.set_num_threads(threads)
    set_ffmpeg_threads(threads)


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


def make_sampler(
    dataset: Dataset,
    settings: TrainingSettings,
    rank: int,
    world_size: int,
    weights: Sequence[float] | None = None,
    factors: Sequence[Mapping[int, float] | None] | None = None,
) -> Any:
    """The sampler ``settings.dataloader_sampling`` asks for over ``dataset``.

    ``windows`` needs a `MixtureDataset` (its datasets cut themselves into chunks); other datasets
    fall back to ``random``: a `MixtureSampler` whose epochs are rounded to whole global batches.
    ``factors`` (per dataset, episode → intervention factor) weight the ``windows`` order's chunks;
    ``random`` with factors is `gr00t.data.intervention.weighted_sampler_factory`'s sampler.
    """
    from gr00t.data.dataset import MixtureDataset
    from gr00t.data.sampler import MixtureSampler

    if settings.dataloader_sampling == "windows" and isinstance(dataset, MixtureDataset):
        from gr00t.data.window_sampler import WindowSampler

        return WindowSampler(
            [d.chunks() for d in dataset.datasets],
            weights=weights,
            seed=settings.seed,
            rank=rank,
            world_size=world_size,
            lanes=settings.dataloader_lanes,
            window=settings.dataloader_window,
            factors=factors,
        )
    if factors is not None and any(factors):
        raise ValueError("episode factors need dataloader_sampling=windows over a MixtureDataset")
    sizes = list(getattr(dataset, "sizes", [len(dataset)]))  # type: ignore[arg-type]
    global_batch = settings.per_device_batch_size * world_size
    return MixtureSampler(
        sizes,
        weights=weights,
        seed=settings.seed,
        rank=rank,
        world_size=world_size,
        round_to=global_batch if sum(sizes) >= global_batch else None,
    )


def resolve_sampler(
    sampler: Any, dataset: Dataset, settings: TrainingSettings, rank: int, world_size: int
) -> Any:
    """This rank's resumable sampler.

    ``sampler`` is a sampler, a factory ``(rank, world_size) -> sampler``, or None for `make_sampler`'s
    default over ``dataset``. Raises TypeError unless the result can save and restore its position.
    """
    if sampler is None:
        sampler = make_sampler(dataset, settings, rank, world_size)
    elif callable(sampler) and not hasattr(sampler, "state_dict"):
        sampler = sampler(rank, world_size)
    for needed in ("state_dict", "load_state_dict", "__iter__"):
        if not hasattr(sampler, needed):
            raise TypeError(
                f"sampler {type(sampler).__name__} lacks {needed}(); expected a resumable MixtureSampler or WindowSampler"
            )
    return sampler


class WorkerSafeDataLoader(DataLoader):
    """A DataLoader whose worker processes are forked with the preemption signals blocked."""

    def __init__(self, *args: Any, signals: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.signals = signals

    def __iter__(self) -> Any:
        if self.num_workers == 0:
            return super().__iter__()
        from gr00t.train.preemption import signals_blocked

        with signals_blocked(self.signals):
            return super().__iter__()


def build_train_dataloader(
    dataset: Dataset,
    sampler: Any,
    collate_fn: Callable[[list[Any]], Any],
    settings: TrainingSettings,
    process_index: int,
) -> DataLoader:
    """The training DataLoader: a `WindowStream` for a `WindowSampler`, else ``dataset`` read through
    ``EndlessSampler(sampler)``; per-rank seeded generator, workers forked with the preemption signals
    blocked (`WorkerSafeDataLoader`), `worker_init` in every worker."""
    workers = settings.dataloader_num_workers
    generator = torch.Generator().manual_seed(settings.seed + 1_000_003 * process_index)
    signals = tuple(settings.preemption_signals)
    common: dict[str, Any] = dict(
        signals=signals,
        batch_size=settings.per_device_batch_size,
        collate_fn=collate_fn,
        num_workers=workers,
        pin_memory=settings.dataloader_pin_memory and torch.cuda.is_available(),
        prefetch_factor=(settings.dataloader_prefetch_factor or 2) if workers > 0 else None,
        persistent_workers=False,
        generator=generator,
        worker_init_fn=functools.partial(
            worker_init, threads=settings.dataloader_worker_threads, signals=signals
        ),
    )
    if getattr(sampler, "sampling", None) == "windows":
        from gr00t.data.window_stream import WindowStream

        sampler.configure_loader(settings.per_device_batch_size, workers)
        return WorkerSafeDataLoader(WindowStream(dataset, sampler), **common)  # type: ignore[arg-type]
    return WorkerSafeDataLoader(dataset, sampler=EndlessSampler(sampler), **common)
