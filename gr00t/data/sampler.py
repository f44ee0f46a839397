"""Deterministic, resumable, rank-sharded sampling over a (weighted) mixture of datasets.

Definitions (all of them pure integer arithmetic, no stored permutation):

* The mixture is a concatenation of datasets of sizes ``n_i`` (number of valid samples). A global
  index is ``offset_i + local`` exactly like ``torch.utils.data.ConcatDataset``.
* **Per-dataset stream.** Dataset ``i`` is read through an endless stream made of successive
  random permutations of ``range(n_i)`` ("cycles"): every sample is drawn once before any is drawn
  twice (sampling without replacement inside each dataset), and the stream continues across epochs.
* **Epoch.** An epoch is a fixed number ``L`` of global draws (``epoch_length``; default: the total
  number of samples, rounded down to a multiple of ``round_to``). Dataset ``i`` contributes
  ``c_i`` draws per epoch, ``c_i ∝ weight_i`` (largest-remainder rounding, ``Σ c_i = L``); epoch
  ``e`` takes the slice ``[e·c_i, (e+1)·c_i)`` of stream ``i``. Without weights ``c_i ∝ n_i``, so
  an epoch visits every sample once (nothing is skipped even when rounding trims ``L``: the
  remainder simply opens the next epoch).
* **Order inside an epoch.** The ``L`` draws are shuffled by a keyed permutation of ``range(L)``.
  Position ``p`` of epoch ``e`` maps to one global index through
  ``global_index(e, p)`` — a pure function of ``(seed, epoch, position)``.
* **Sharding.** Rank ``r`` of ``W`` takes positions ``r, r+W, r+2W, …`` (``L`` is a multiple of
  ``W``). Dataloader workers need no extra sharding: this is a map-style ``Sampler`` and the
  ``DataLoader`` hands each worker whole batches of indices produced in the main process.
* **Resume.** The only state is the number of global draws *consumed by the trainer* since the
  start of training (``consumed``; draw ``g`` is position ``g mod L`` of epoch ``g // L``). The
  trainer reports it (``advance`` after each optimiser step, or ``state_dict(consumed=…)``), never
  the workers, whose prefetching runs ahead. After ``load_state_dict`` the next iteration starts
  exactly at the first unconsumed draw, so a resumed run sees the same samples as an uninterrupted
  one — even with another world size, as long as ``consumed`` is a multiple of it.

* **Per-sample randomness.** Each yielded index is a `SampleIndex`: an ``int`` (the global index,
  usable anywhere a plain index is) that also carries ``(seed, epoch, position)``.
  `sample_rng(index)` turns it into a numpy ``Generator`` for the sample's random draws (image
  augmentation), so those draws are a pure function of where the sample sits in the global order:
  the same with any number of DataLoader workers, any world size and after a resume. A plain
  ``int`` gets a generator keyed by ``(fallback seed, index)`` instead.

Permutations are Feistel networks with cycle walking keyed by a 64-bit hash of (seed, purpose,
indices), evaluated vectorised with numpy; memory is O(chunk) whatever the dataset size.

With the Hugging Face ``Trainer``: either give each rank its own sampler (``rank``/``world_size``)
and keep accelerate from re-sharding, or use ``world_size=1`` on every rank and let accelerate's
``BatchSamplerShard`` split the identical global stream by batches; in both cases ``set_epoch`` is
forwarded here and ``ignore_data_skip=True`` must be set, since resume is handled by this sampler.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Sampler

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_DRAW_KEY = 0x5A4D  # separates per-sample generators from other uses of the seed
_INDEX_KEY = 0x1D5E
_ROUNDS = 6
_CHUNK = 8192


def hash64(*parts: Any) -> int:
    """A stable 64-bit hash of a tuple of ints/strings (independent of PYTHONHASHSEED)."""
    data = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def _splitmix(x: np.ndarray) -> np.ndarray:
    x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
    x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
    x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
    return x ^ (x >> np.uint64(31))


def permute(positions: np.ndarray, n: int, key: int) -> np.ndarray:
    """Image of ``positions`` (ints in ``[0, n)``) under a keyed pseudo-random permutation of ``range(n)``."""
    pos = np.asarray(positions, dtype=np.int64)
    if n <= 0:
        raise ValueError(f"permutation domain must be positive, got n={n}")
    if pos.size and (pos.min() < 0 or pos.max() >= n):
        raise ValueError(f"positions must lie in [0, {n}), got range [{pos.min()}, {pos.max()}]")
    if n == 1:
        return np.zeros_like(pos)
    half = max(1, math.ceil(math.log2(n) / 2))
    mask = np.uint64((1 << half) - 1)
    shift = np.uint64(half)
    round_keys = [np.uint64(hash64(key, r)) for r in range(_ROUNDS)]

    def feistel(x: np.ndarray) -> np.ndarray:
        left, right = x >> shift, x & mask
        for k in round_keys:
            left, right = right, left ^ (_splitmix(right ^ k) & mask)
        return (left << shift) | right

    out = feistel(pos.astype(np.uint64))
    todo = out >= np.uint64(n)
    while todo.any():  # cycle walking: re-encrypt until the value falls inside the domain
        out[todo] = feistel(out[todo])
        todo = out >= np.uint64(n)
    return out.astype(np.int64)


class SampleIndex(int):
    """A global sample index (an ``int``) that remembers where the sampler drew it.

    ``epoch`` and ``position`` (inside the epoch, over all ranks) identify the draw; ``seed`` is the
    sampler's. Arithmetic gives plain ints; pickling (DataLoader workers) keeps the attributes.
    """

    seed: int
    epoch: int
    position: int

    def __new__(cls, index: int, seed: int, epoch: int, position: int) -> SampleIndex:
        obj = super().__new__(cls, index)
        obj.seed, obj.epoch, obj.position = int(seed), int(epoch), int(position)
        return obj

    def __reduce__(self) -> tuple[Any, tuple[int, int, int, int]]:
        return (SampleIndex, (int(self), self.seed, self.epoch, self.position))

    def __repr__(self) -> str:
        return f"SampleIndex({int(self)}, seed={self.seed}, epoch={self.epoch}, position={self.position})"


def sample_rng(index: int, seed: int = 0) -> np.random.Generator:
    """The numpy generator for one sample's random draws.

    A `SampleIndex` gives a generator keyed by its ``(seed, epoch, position)``: a pure function of
    the sample's place in the global order (independent of workers, world size and resume), which
    differs when the same sample is drawn again later. A plain ``int`` gives one keyed by
    ``(seed, index)`` (the same draws every time that sample is read).
    """
    if isinstance(index, SampleIndex):
        return np.random.default_rng([index.seed, _DRAW_KEY, index.epoch, index.position])
    if int(index) < 0:
        raise ValueError(f"sample index {index} must be non-negative")
    return np.random.default_rng([int(seed), _INDEX_KEY, int(index)])


def allocate_draws(total: int, weights: Sequence[float]) -> list[int]:
    """Split ``total`` draws into integer counts proportional to ``weights`` (largest remainder)."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or len(w) == 0:
        raise ValueError(f"weights must be a non-empty 1-D sequence, got {weights!r}")
    if (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
        raise ValueError(f"weights must be finite, non-negative and not all zero, got {list(weights)}")
    exact = total * w / w.sum()
    counts = np.floor(exact).astype(np.int64)
    remainder = total - int(counts.sum())
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[:remainder]] += 1
    return [int(c) for c in counts]


class MixtureSampler(Sampler[int]):
    """Yields global indices (`SampleIndex`) into a concatenation of datasets; see the module docstring.

    Args:
        sizes: number of samples of each dataset (all > 0).
        weights: relative share of draws per dataset; ``None`` = proportional to ``sizes``.
        epoch_length: global draws per epoch; default ``sum(sizes)``. Rounded down to a multiple of
            ``round_to`` (``world_size`` when not given; pass ``world_size × per-device batch`` to
            make every batch full so that ``consumed = steps × global batch`` holds exactly).
        seed: data-order seed.
        rank, world_size: this process's shard.
        shuffle: ``False`` gives the natural order (datasets interleaved by allocation, no shuffle).
    """

    sampling = "random"

    def __init__(
        self,
        sizes: Sequence[int],
        weights: Sequence[float] | None = None,
        epoch_length: int | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        round_to: int | None = None,
    ) -> None:
        self.sizes = [int(s) for s in sizes]
        if not self.sizes or any(s <= 0 for s in self.sizes):
            raise ValueError(f"every dataset needs at least one sample, got sizes={self.sizes}")
        if weights is not None and len(weights) != len(self.sizes):
            raise ValueError(f"{len(weights)} weights given for {len(self.sizes)} datasets")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} world_size={world_size}: expected 0 <= rank < world_size")
        self.weights = [float(w) for w in (weights if weights is not None else self.sizes)]
        self.seed = int(seed)
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        step = int(round_to) if round_to is not None else world_size
        if step % world_size:
            raise ValueError(f"round_to={step} must be a multiple of world_size={world_size}")
        raw = int(epoch_length) if epoch_length is not None else sum(self.sizes)
        self.epoch_length = (raw // step) * step
        if self.epoch_length <= 0:
            raise ValueError(f"epoch_length={raw} is smaller than round_to={step}: no full round of draws")
        self.counts = allocate_draws(self.epoch_length, self.weights)
        self._count_starts = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        self.consumed = 0  # global draws consumed by the trainer since the start of training
        self.epoch = 0  # epoch the next __iter__ produces
        self._start = 0  # position inside self.epoch where the next __iter__ starts

    # ---- pure order ---------------------------------------------------------------------------
    def stream(self, dataset: int, draws: np.ndarray) -> np.ndarray:
        """Local sample indices at the given draw numbers of dataset ``dataset``'s endless stream."""
        n = self.sizes[dataset]
        draws = np.asarray(draws, dtype=np.int64)
        if not self.shuffle:
            return draws % n
        out = np.empty_like(draws)
        cycles = draws // n
        for cycle in np.unique(cycles):
            sel = cycles == cycle
            out[sel] = permute(draws[sel] % n, n, hash64(self.seed, "stream", dataset, int(cycle)))
        return out

    def global_index(self, epoch: int, positions: np.ndarray) -> np.ndarray:
        """Global indices drawn at ``positions`` (in ``[0, epoch_length)``) of ``epoch``."""
        positions = np.asarray(positions, dtype=np.int64)
        if self.shuffle:
            slots = permute(positions, self.epoch_length, hash64(self.seed, "epoch", epoch))
        else:
            slots = positions
        which = np.searchsorted(self._count_starts, slots, side="right") - 1
        out = np.empty_like(slots)
        for i in np.unique(which):
            sel = which == i
            draws = epoch * self.counts[i] + (slots[sel] - self._count_starts[i])
            out[sel] = self.offsets[i] + self.stream(int(i), draws)
        return out

    def dataset_of(self, global_indices: np.ndarray) -> np.ndarray:
        """Dataset number of each global index."""
        return np.searchsorted(self.offsets, np.asarray(global_indices), side="right") - 1

    # ---- torch Sampler protocol ---------------------------------------------------------------
    def __len__(self) -> int:
        return self.epoch_length // self.world_size

    def set_epoch(self, epoch: int) -> None:
        """Called by the trainer at each epoch start; keeps a resume offset that belongs to ``epoch``."""
        if epoch != self.epoch:
            self.epoch = int(epoch)
            self._start = 0

    def __iter__(self) -> Iterator[int]:
        epoch, start = self.epoch, self._start
        first = start + self.rank
        for lo in range(first, self.epoch_length, _CHUNK * self.world_size):
            hi = min(lo + _CHUNK * self.world_size, self.epoch_length)
            positions = range(lo, hi, self.world_size)
            indices = self.global_index(epoch, np.asarray(positions)).tolist()
            for index, position in zip(indices, positions):
                yield SampleIndex(index, self.seed, epoch, position)
        # Exhausted: a plain loop that never calls set_epoch still gets a fresh epoch next time.
        if self.epoch == epoch and self._start == start:
            self.epoch, self._start = epoch + 1, 0

    # ---- resume -------------------------------------------------------------------------------
    def advance(self, global_draws: int) -> None:
        """Record that the trainer consumed ``global_draws`` more samples (summed over all ranks)."""
        self.consumed += int(global_draws)

    def state_dict(self, consumed: int | None = None) -> dict[str, Any]:
        """Resumable state. ``consumed`` = global draws consumed since the start (default: tracked)."""
        if consumed is not None:
            self.consumed = int(consumed)
        return {
            "sampling": self.sampling,
            "consumed": self.consumed,
            "seed": self.seed,
            "epoch_length": self.epoch_length,
            "counts": list(self.counts),
            "sizes": list(self.sizes),
            "shuffle": self.shuffle,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue right after the last consumed draw of ``state``."""
        if state.get("sampling", self.sampling) != self.sampling:
            raise ValueError(
                f"the checkpoint's data position was saved with {state['sampling']!r} sampling; this run uses "
                f"{self.sampling!r}: set trainer.dataloader_sampling={state['sampling']} to resume it"
            )
        for key in ("sizes", "seed", "shuffle", "epoch_length", "counts"):
            mine = getattr(self, key)
            theirs = state.get(key)
            if theirs is not None and list_or_value(theirs) != list_or_value(mine):
                raise ValueError(
                    f"sampler state mismatch for {key!r}: checkpoint has {theirs!r}, this run has {mine!r}; "
                    "the data mixture or seed changed, so the data position cannot be restored exactly"
                )
        consumed = int(state["consumed"])
        if consumed % self.world_size:
            raise ValueError(
                f"consumed={consumed} draws is not a multiple of world_size={self.world_size}; "
                "resume with a world size that divides it"
            )
        self.consumed = consumed
        self.epoch, self._start = divmod(consumed, self.epoch_length)


def list_or_value(x: Any) -> Any:
    """Normalise tuples/lists (JSON round trips turn tuples into lists)."""
    return list(x) if isinstance(x, (list, tuple)) else x
