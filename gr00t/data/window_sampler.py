"""Decode-aware training order: windows of consecutive steps, read in one pass, mixed across episodes.

Random access decodes every sample's frames with a fresh seek, so on a long GOP each sample pays a
keyframe-to-frame decode. This order instead reads episodes forward, window by window, and mixes
the windows of many episodes. Definitions (pure integer arithmetic, like `MixtureSampler`, whose
keyed permutations it reuses):

* **Chunks.** Each dataset cuts its valid steps into chunks: runs of consecutive steps of one episode
  that start on a keyframe where the video allows it (`Gr00tDataset.chunks`). A table row is
  ``(dataset, episode, first step, steps, global index of the first step)``.
* **Tickets.** A `MixtureSampler` over the chunks (one process, shuffled) orders them: ticket ``q``
  is draw ``q`` of it, at (epoch ``q div L``, position ``q mod L``), ``L`` = chunks per epoch. Without
  weights every chunk comes once per epoch; with weights each dataset's chunk draws are scaled by its
  chunks per sample, so that it receives its share of *samples*. With intervention factors
  (``factors``, `gr00t.data.intervention`) the MixtureSampler's groups are the strata of
  `weighted_strata` instead of the datasets: a flagged episode's chunks are drawn ``factor`` times as
  often per sample as its dataset's other chunks, and the dataset keeps its share.
* **Streams.** Rank ``r`` of ``W`` with ``K`` DataLoader workers runs ``T = W·K`` streams; stream
  ``s = r + W·k`` (worker ``k``) takes tickets ``s, s+T, s+2T, …``.
* **Lanes.** A stream has ``M`` lanes (``lanes``); lane ``l`` takes the stream's tickets
  ``l, l+M, l+2M, …`` and reads their chunks one after the other (the lane's step stream).
* **Blocks.** Block ``b`` of a stream takes steps ``[b·S, (b+1)·S)`` (``S`` = ``window``) of every
  lane's step stream: ``M`` windows, each decoded in one sorted pass per camera by a decoder that
  continues where the lane's previous window stopped. A long GOP thus costs one keyframe seek per
  chunk, never one per sample. The block's ``M·S`` samples are emitted in a keyed permutation of
  (seed, stream, ``T``, ``b``): a batch mixes the windows of ``M`` chunks, and memory holds one block.
* **Batches.** The DataLoader builds each batch from one worker's stream and takes batches from the
  workers in turn (batch ``n`` of a rank comes from worker ``n mod K``).
* **Per-sample randomness.** Step ``k`` of ticket ``q``'s chunk is drawn as
  ``SampleIndex(global index, seed, epoch=q div L, position=(q mod L)·CHUNK_STRIDE + k)``, so its
  augmentation (`sample_rng`) depends on the draw only, not on workers, world size or resume.
* **Resume.** The state is the number of global draws the trainer consumed (as `MixtureSampler`),
  with the strata of a weighting (a changed weighting is refused on resume).
  With the same layout (world size, workers, per-device batch, lanes, window, chunks) every stream
  skips exactly the samples its worker had delivered and the run continues bit for bit. Another
  layout continues after the same number of draws in its own order, with a warning.

The order is a pure function of (seed, layout, position); the weighted mixture holds per epoch of
tickets, so over any stretch of training up to the chunks a lane is in the middle of.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gr00t.data.intervention import check_strata, episodes_digest, weighted_strata
from gr00t.data.sampler import MixtureSampler, SampleIndex, hash64, list_or_value, permute

CHUNK_STRIDE = 2**32  # position = ticket position · CHUNK_STRIDE + step offset inside the chunk
DEFAULT_LANES = 16
DEFAULT_WINDOW = 4
_LOOKAHEAD = 8  # tickets a lane looks up at once while reading (seeking looks further)


@dataclass(frozen=True)
class Piece:
    """Consecutive steps of one chunk, read by a lane in one window."""

    dataset: int
    episode: int
    first_step: int
    count: int
    first_index: int  # global sample index of first_step
    epoch: int
    position: int  # SampleIndex position of first_step

    def draw(self, k: int, seed: int) -> SampleIndex:
        """The `SampleIndex` of step ``first_step + k``."""
        return SampleIndex(self.first_index + k, seed, self.epoch, self.position + k)


@dataclass(frozen=True)
class Block:
    """One block of a stream: a window (list of pieces) per lane and the emission order of its slots.

    Slot ``l·window + j`` is step ``j`` of lane ``l``'s window; ``order`` lists the slots still to
    emit (a resumed stream's first block starts in the middle).
    """

    number: int
    windows: list[list[Piece]]
    order: np.ndarray

    def locate(self, slot: int) -> tuple[int, Piece, int]:
        """(lane, piece, step offset inside the piece) of a slot."""
        size = sum(p.count for p in self.windows[0])
        lane, j = divmod(int(slot), size)
        for piece in self.windows[lane]:
            if j < piece.count:
                return lane, piece, j
            j -= piece.count
        raise IndexError(f"slot {slot} outside the block")


class WindowSampler:
    """The decode-aware order for one rank; see the module docstring.

    Args:
        chunks: per dataset, an int array ``[n, 4]`` of ``(episode, first step, steps, local index
            of the first step)`` covering every sample of the dataset (`Gr00tDataset.chunks`).
        weights: relative share of samples per dataset; ``None`` = proportional to the sizes.
        seed: data-order seed.
        rank, world_size: this process's shard.
        lanes, window: ``M`` and ``S`` above.
        factors: per dataset, episode → sampling factor (intervention up-weighting, see
            `gr00t.data.intervention`; None or a missing episode: 1).
    """

    sampling = "windows"

    def __init__(
        self,
        chunks: Sequence[np.ndarray],
        weights: Sequence[float] | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        lanes: int = DEFAULT_LANES,
        window: int = DEFAULT_WINDOW,
        factors: Sequence[Mapping[int, float] | None] | None = None,
    ) -> None:
        if lanes < 1 or window < 1:
            raise ValueError(f"lanes={lanes}, window={window}: both must be >= 1")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} world_size={world_size}: expected 0 <= rank < world_size")
        tables = [np.asarray(c, dtype=np.int64).reshape(-1, 4) for c in chunks]
        if not tables or any(len(t) == 0 for t in tables):
            raise ValueError(f"every dataset needs at least one chunk, got {[len(t) for t in tables]}")
        if any((t[:, 2] <= 0).any() for t in tables):
            raise ValueError("every chunk needs at least one step")
        if weights is not None and len(weights) != len(tables):
            raise ValueError(f"{len(weights)} weights given for {len(tables)} datasets")
        if factors is not None and len(factors) != len(tables):
            raise ValueError(f"{len(factors)} episode factors given for {len(tables)} datasets")
        self.sizes = [int(t[:, 2].sum()) for t in tables]
        self.weights = list(weights) if weights is not None else None
        self._table, self.tickets, self.strata = _chunk_tickets(tables, weights, factors, seed)
        self.seed = int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.lanes, self.window = int(lanes), int(window)
        self.batch_size = 1
        self.num_workers = 0
        self.consumed = 0  # global draws consumed by the trainer since the start of training
        self._resumed_layout: dict[str, Any] | None = None
        digest = hashlib.blake2b(self._table.tobytes(), digest_size=8).digest()
        self._chunks_digest = int.from_bytes(digest, "little")  # identifies the chunking in the state

    # ---- tickets ----------------------------------------------------------------------------------
    def ticket_pieces(self, tickets: np.ndarray) -> np.ndarray:
        """Table rows ``(dataset, episode, first step, steps, first global index)`` of ``tickets``."""
        tickets = np.asarray(tickets, dtype=np.int64)
        length = self.tickets.epoch_length
        epochs, positions = np.divmod(tickets, length)
        rows = np.empty(len(tickets), dtype=np.int64)
        for epoch in np.unique(epochs):
            sel = epochs == epoch
            rows[sel] = self.tickets.global_index(int(epoch), positions[sel])
        return self._table[rows]

    @property
    def counts(self) -> list[int]:
        """Chunk draws per dataset (per stratum with factors) and epoch of tickets."""
        return list(self.tickets.counts)

    @property
    def block_size(self) -> int:
        return self.lanes * self.window

    def blocks(self, stream: int, num_streams: int, skip: int = 0) -> Iterator[Block]:
        """Blocks of stream ``stream`` of ``num_streams``, endlessly, after its first ``skip`` samples."""
        if not 0 <= stream < num_streams:
            raise ValueError(f"stream {stream} outside [0, {num_streams})")
        size = self.block_size
        number, first = divmod(int(skip), size)
        lanes = [
            _Lane(self, stream + num_streams * lane, num_streams * self.lanes) for lane in range(self.lanes)
        ]
        for lane in lanes:
            lane.seek(number * self.window)
        while True:
            key = hash64(self.seed, "window-block", stream, num_streams, number)
            order = permute(np.arange(size), size, key)[first:]
            yield Block(number, [lane.take(self.window) for lane in lanes], order)
            number, first = number + 1, 0

    def draws(
        self, stream: int = 0, num_streams: int = 1, skip: int = 0
    ) -> Iterator[tuple[int, SampleIndex]]:
        """``(lane, SampleIndex)`` in emission order: the pure plan, without reading anything."""
        for block in self.blocks(stream, num_streams, skip):
            for slot in block.order:
                lane, piece, k = block.locate(slot)
                yield lane, piece.draw(k, self.seed)

    def __iter__(self) -> Iterator[SampleIndex]:
        """This rank's draws from its current position, as one stream (a loader without workers)."""
        skip = self.consumed // self.world_size
        for _, draw in self.draws(self.rank, self.world_size, skip):
            yield draw

    # ---- layout and resume ------------------------------------------------------------------------
    def configure_loader(self, batch_size: int, num_workers: int) -> None:
        """The DataLoader layout the streams follow; warns when a resumed state was saved under another."""
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        if self._resumed_layout is not None and self._resumed_layout != self.layout():
            warnings.warn(
                f"resuming the decode-aware data order under another layout ({self._resumed_layout} -> "
                f"{self.layout()}): the run continues after the same number of samples, but in another order "
                "than an uninterrupted run",
                stacklevel=2,
            )
        self._resumed_layout = None

    def layout(self) -> dict[str, Any]:
        return {
            "world_size": self.world_size,
            "num_workers": self.num_workers,
            "batch_size": self.batch_size,
            "lanes": self.lanes,
            "window": self.window,
            "chunks": self._chunks_digest,
        }

    def stream_skip(self, worker: int, num_workers: int) -> int:
        """Samples that worker ``worker``'s stream delivered before the consumed position."""
        per_rank_batches = self.consumed // (self.world_size * self.batch_size)
        delivered = -(-(per_rank_batches - worker) // num_workers) if per_rank_batches > worker else 0
        return delivered * self.batch_size

    def set_epoch(self, epoch: int) -> None:
        """No-op: the stream is endless and its position is `consumed`."""

    def advance(self, global_draws: int) -> None:
        self.consumed += int(global_draws)

    def state_dict(self, consumed: int | None = None) -> dict[str, Any]:
        if consumed is not None:
            self.consumed = int(consumed)
        return {
            "sampling": self.sampling,
            "consumed": self.consumed,
            "seed": self.seed,
            "sizes": list(self.sizes),
            "counts": self.counts,
            "layout": self.layout(),
            **({"strata": self.strata} if self.strata is not None else {}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue right after the last consumed draw of ``state``."""
        if state.get("sampling") != self.sampling:
            raise ValueError(
                f"the checkpoint's data position was saved with {state.get('sampling', 'random')!r} sampling; "
                f"this run uses {self.sampling!r}: set trainer.dataloader_sampling={state.get('sampling', 'random')} "
                "to resume it"
            )
        check_strata(state.get("strata"), self.strata)
        for key in ("sizes", "seed", "counts"):
            if list_or_value(state.get(key)) != list_or_value(getattr(self, key)):
                raise ValueError(
                    f"sampler state mismatch for {key!r}: checkpoint has {state.get(key)!r}; the data mixture or "
                    "seed changed, so the data position cannot be restored"
                )
        self.consumed = int(state["consumed"])
        self._resumed_layout = dict(state.get("layout") or {})


def _chunk_tickets(
    tables: list[np.ndarray],
    weights: Sequence[float] | None,
    factors: Sequence[Mapping[int, float] | None] | None,
    seed: int,
) -> tuple[np.ndarray, MixtureSampler, list[list[Any]] | None]:
    """The chunk table ``(dataset, episode, first step, steps, first global index)`` in ticket order,
    the `MixtureSampler` drawing its rows, and the strata ``[dataset, episodes, factor, digest of the
    episodes]`` (None without episode factors).

    Its datasets are the mixture's; with episode factors, the strata of `weighted_strata` (one per
    dataset and factor, chunks as units). A dataset's (or stratum's) chunk draws are scaled by its
    chunks per sample, so that it receives its share of *samples*; inside one, every chunk is drawn
    once per cycle, so each of its samples equally often."""
    sizes = [int(t[:, 2].sum()) for t in tables]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    table = np.concatenate(
        [np.column_stack([np.full(len(t), d), t[:, :3], t[:, 3] + offsets[d]]) for d, t in enumerate(tables)]
    )
    if factors is None or not any(factors):
        groups = [np.arange(len(t)) for t in tables]
        chunk_weights = None
        if weights is not None:
            chunk_weights = [float(w) * len(t) / n for w, t, n in zip(weights, tables, sizes)]
        strata = None
    else:
        found = weighted_strata(
            [t[:, 0] for t in tables], [t[:, 2] for t in tables], weights or sizes, factors
        )
        groups = [st.rows for st in found]
        samples = [int(tables[st.dataset][st.rows, 2].sum()) for st in found]
        chunk_weights = [st.share * len(st.rows) / n for st, n in zip(found, samples)]
        strata = []
        for st in found:
            episodes = tables[st.dataset][st.rows, 0]
            strata.append([st.dataset, len(np.unique(episodes)), st.factor, episodes_digest(episodes)])
        datasets = [st.dataset for st in found]
        starts = np.concatenate([[0], np.cumsum([len(t) for t in tables])])
        table = table[np.concatenate([starts[d] + g for d, g in zip(datasets, groups)])]
    # With weights, a longer epoch of tickets keeps the rounding of per-group draws small.
    total = sum(len(g) for g in groups)
    length = total if chunk_weights is None else max(total, 256 * len(groups))
    tickets = MixtureSampler([len(g) for g in groups], chunk_weights, epoch_length=length, seed=seed)
    return table, tickets, strata


class _Lane:
    """The step stream of one lane: the chunks of tickets ``base + stride·i``, i = 0, 1, …"""

    def __init__(self, sampler: WindowSampler, base: int, stride: int) -> None:
        self.sampler, self.base, self.stride = sampler, base, stride
        self.i = 0  # lane ticket being read
        self.offset = 0  # steps of its chunk already read
        self._start = 0  # lane ticket number of _rows[0]
        self._rows = np.zeros((0, 5), dtype=np.int64)

    def _row(self, i: int, ahead: int = _LOOKAHEAD) -> np.ndarray:
        if not self._start <= i < self._start + len(self._rows):
            self._start = i
            self._rows = self.sampler.ticket_pieces(self.base + self.stride * np.arange(i, i + ahead))
        return self._rows[i - self._start]

    def seek(self, steps: int) -> None:
        """Move to step ``steps`` of the lane's step stream (from its start)."""
        self.i, self.offset = 0, 0
        ahead = _LOOKAHEAD
        while steps > 0:
            ahead = min(2 * ahead, 4096)
            self._start, self._rows = 0, self._rows[:0]
            self._row(self.i, ahead)
            lengths = self._rows[self.i - self._start :, 3]
            total = np.cumsum(lengths)
            k = int(np.searchsorted(total, steps, side="right"))
            if k < len(lengths):
                self.i += k
                self.offset = int(steps - (total[k - 1] if k else 0))
                return
            self.i += len(lengths)
            steps -= int(total[-1])

    def take(self, n: int) -> list[Piece]:
        """The next ``n`` steps, as pieces of consecutive chunks."""
        pieces = []
        while n > 0:
            dataset, episode, first_step, steps, first_index = (int(v) for v in self._row(self.i))
            count = min(n, steps - self.offset)
            q = self.base + self.stride * self.i
            epoch, position = divmod(q, self.sampler.tickets.epoch_length)
            pieces.append(
                Piece(
                    dataset,
                    episode,
                    first_step + self.offset,
                    count,
                    first_index + self.offset,
                    epoch,
                    position * CHUNK_STRIDE + self.offset,
                )
            )
            n -= count
            self.offset += count
            if self.offset == steps:
                self.i, self.offset = self.i + 1, 0
        return pieces
