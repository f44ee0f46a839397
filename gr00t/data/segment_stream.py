"""`SegmentStream`: segment-mode sampling over `Gr00tDataset`s (sequential decoding).

It trades random access for sequential decoding: it cuts episodes into contiguous segments, decodes
each segment with one seek, uses every decoded frame, and mixes ``segments_per_group`` segments
(from many episodes) by a keyed permutation so that batches stay diverse. See the class docstring
for its ordering and resume rules. The training loader samples with `MixtureSampler` instead; the
data benchmark (bench/data.py) measures this mode beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from gr00t.data.dataset import Gr00tDataset
from gr00t.data.sampler import MixtureSampler, hash64, permute

__all__ = ["SegmentStream"]


class SegmentStream(IterableDataset):
    """Segment-mode sampling: sequential decoding, every decoded frame used, batches mixed.

    Order (a pure function of seed, position and the DataLoader layout):

    * Each dataset's valid steps are cut into segments of ``segment_length`` consecutive steps
      (the last one of an episode may be shorter). A `MixtureSampler` over segments (weights =
      per-dataset draw shares of segments, epoch = every segment once without weights) gives a
      global, endless segment sequence (epoch after epoch).
    * Position ``p`` of that sequence goes to rank ``p mod W`` (``W`` = world size); inside a rank
      to stream ``(p div W) mod K`` (``K`` = ``num_workers``, at least 1).
    * A stream takes its segments ``segments_per_group`` at a time, decodes them, and emits all
      their samples in a keyed random order. A batch of ``b`` samples thus draws from up to
      ``segments_per_group`` different episodes; memory is ``segments_per_group`` decoded segments.
    * The DataLoader builds each batch inside one worker and takes batches from workers in turn.

    Resume: ``state_dict(consumed_batches)`` / ``load_state_dict`` — the number of batches this rank
    consumed; with the same ``batch_size`` and ``num_workers`` the resumed stream continues exactly
    (each worker re-derives its role and skips the already-delivered samples without decoding).
    The stream is endless: train with ``max_steps``.
    """

    def __init__(
        self,
        datasets: Sequence[Gr00tDataset],
        weights: Sequence[float] | None = None,
        segment_length: int = 32,
        segments_per_group: int = 8,
        batch_size: int = 1,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        transform: Callable[..., Any] | None = None,
    ) -> None:
        if segment_length < 1 or segments_per_group < 1 or batch_size < 1:
            raise ValueError(
                f"segment_length={segment_length}, segments_per_group={segments_per_group}, batch_size={batch_size}: "
                "all must be >= 1"
            )
        self.datasets = list(datasets)
        self.segment_length = segment_length
        self.segments_per_group = segments_per_group
        self.batch_size = batch_size
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        self.transform = transform
        self.segments: list[list[tuple[int, int, int]]] = []  # per dataset: (episode, first step, steps)
        for ds in self.datasets:
            segs = []
            for ep, length in zip(ds.episode_indices, ds.episode_lengths):
                first, n = ds.first_valid_step(), ds.num_valid_steps(length)
                for s in range(first, first + n, segment_length):
                    segs.append((ep, s, min(segment_length, first + n - s)))
            self.segments.append(segs)
        self.sampler = MixtureSampler([len(s) for s in self.segments], weights, seed=seed)
        self.consumed_batches = 0
        self._num_workers_hint = 1

    # ---- pure plan ------------------------------------------------------------------------------
    def _segment(self, global_position: int) -> tuple[int, tuple[int, int, int]]:
        epoch, pos = divmod(global_position, self.sampler.epoch_length)
        g = int(self.sampler.global_index(epoch, np.array([pos]))[0])
        d = int(self.sampler.dataset_of(np.array([g]))[0])
        return d, self.segments[d][g - int(self.sampler.offsets[d])]

    def _stream_groups(
        self, role: int, num_streams: int
    ) -> Iterator[tuple[int, list[tuple[int, tuple[int, int, int]]]]]:
        """(group number, segments) of one stream, endlessly."""
        stride = self.world_size * num_streams
        base = self.rank + self.world_size * role
        group = 0
        while True:
            first = base + stride * group * self.segments_per_group
            yield group, [self._segment(first + stride * k) for k in range(self.segments_per_group)]
            group += 1

    def _order(self, role: int, group: int, size: int) -> np.ndarray:
        return permute(np.arange(size), size, hash64(self.seed, "segment-group", self.rank, role, group))

    # ---- resume --------------------------------------------------------------------------------
    def state_dict(self, consumed_batches: int | None = None) -> dict[str, Any]:
        if consumed_batches is not None:
            self.consumed_batches = int(consumed_batches)
        return {"consumed_batches": self.consumed_batches, "seed": self.seed, "batch_size": self.batch_size}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for key in ("seed", "batch_size"):
            if state.get(key) != getattr(self, key):
                raise ValueError(
                    f"segment stream state mismatch for {key!r}: {state.get(key)!r} vs {getattr(self, key)!r}"
                )
        self.consumed_batches = int(state["consumed_batches"])

    # ---- iteration -----------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        num_streams, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        n = self.consumed_batches
        role = (n + worker) % num_streams
        delivered = (n - role + num_streams - 1) // num_streams if n > role else 0
        skip = delivered * self.batch_size
        for group, segs in self._stream_groups(role, num_streams):
            size = sum(s[2] for _, s in segs)
            if skip >= size:
                skip -= size
                continue
            samples = []
            for d, (ep, first, steps) in segs:
                samples.extend(self.datasets[d].segment(ep, first, steps))
            for i in self._order(role, group, size)[skip:]:
                s = samples[int(i)]
                if self.transform is None:
                    yield s
                else:  # augmentation draw keyed by the sample's place in the stream: resume-exact
                    rng = np.random.default_rng(hash64(self.seed, "augment", self.rank, role, group, int(i)))
                    yield self.transform(s, rng=rng)
            skip = 0
