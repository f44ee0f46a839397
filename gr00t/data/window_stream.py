"""The decode-aware training stream: a `WindowSampler`'s plan → windows decoded in one pass → samples.

`WindowStream` is the ``IterableDataset`` the training DataLoader reads when sampling is
decode-aware (the default). In every DataLoader worker (or in the main process without workers) it
works out its stream of the plan (rank × worker, `WindowSampler` docstring), skips what that
worker delivered before the resume point without decoding it, and then, block after block, decodes
each lane's window with `Gr00tDataset.window` and yields the block's samples in the plan's order,
processed by the `MixtureDataset`'s transform with ``rng=sample_rng(draw)``.

Each lane reads its windows with its own decoder slot per video file, so the decoder continues
from the lane's previous window instead of seeking back to a keyframe; two lanes on one file (two
chunks of an episode, or LeRobot v3 files holding several episodes) get different slots.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch.utils.data import IterableDataset, get_worker_info

from gr00t.data.dataset import MixtureDataset
from gr00t.data.sampler import sample_rng
from gr00t.data.video import DEFAULT_CACHE_SIZE, set_decoder_cache_size
from gr00t.data.window_sampler import Block, WindowSampler


class WindowStream(IterableDataset):
    """Processed samples of one rank in the decode-aware order (endless; train with ``max_steps``).

    ``sampler.configure_loader(batch_size, num_workers)`` must describe the DataLoader that reads
    this stream (`gr00t.train.loader` does it), so that a resumed stream knows which batches its
    worker had delivered.
    """

    def __init__(self, dataset: MixtureDataset, sampler: WindowSampler) -> None:
        if list(dataset.sizes) != list(sampler.sizes):
            raise ValueError(
                f"the sampler's chunks cover {sampler.sizes} samples per dataset, the datasets have {dataset.sizes}"
            )
        self.dataset = dataset
        self.sampler = sampler

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        plan = self.sampler
        cameras = max((len(d.embodiment.video.keys) for d in self.dataset.datasets), default=1)
        set_decoder_cache_size(max(DEFAULT_CACHE_SIZE, (plan.lanes + 2) * max(cameras, 1)))
        skip = plan.stream_skip(worker, workers)
        stream = plan.rank + plan.world_size * worker
        slots = _Slots(plan.lanes)
        for block in plan.blocks(stream, plan.world_size * workers, skip):
            raw = self._read(block, slots)
            for slot in block.order:
                sample, draw = raw.pop(int(slot))  # its frames go as soon as its samples are out
                if self.dataset.transform is None:
                    yield sample
                else:
                    yield self.dataset.transform(sample, rng=sample_rng(draw))
            raw = None  # not two blocks alive while the next one is read

    def _read(self, block: Block, slots: _Slots) -> dict[int, tuple[dict[str, Any], Any]]:
        """Raw samples (and their draws) of the slots still to emit, keyed by slot."""
        wanted = {int(s) for s in block.order}
        out = {}
        for lane, pieces in enumerate(block.windows):
            base = lane * self.sampler.window
            for piece in pieces:
                span = range(base, base + piece.count)
                base += piece.count
                if wanted.isdisjoint(span):
                    continue
                ds = self.dataset.datasets[piece.dataset]
                slot = slots.slot(lane, (piece.dataset, ds.video_file(piece.episode)))
                samples = ds.window(piece.episode, piece.first_step, piece.count, slot=slot)
                for k, (sample, number) in enumerate(zip(samples, span)):
                    if number in wanted:
                        out[number] = (sample, piece.draw(k, self.sampler.seed))
        return out


class _Slots:
    """Decoder slot per lane: a lane keeps its slot while it stays on one file; a lane moving to a file
    takes the lowest slot no other lane holds on that file."""

    def __init__(self, lanes: int) -> None:
        self.held: list[tuple[Any, int] | None] = [None] * lanes

    def slot(self, lane: int, file: Any) -> int:
        current = self.held[lane]
        if current is not None and current[0] == file:
            return current[1]
        taken = {h[1] for i, h in enumerate(self.held) if h is not None and i != lane and h[0] == file}
        slot = next(s for s in range(len(self.held) + 1) if s not in taken)
        self.held[lane] = (file, slot)
        return slot
