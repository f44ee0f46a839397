"""Up-weighting intervention episodes (the DAgger loop): a per-episode sampling weight from a column.

A recorder marks the episodes (or frames) in which a human took over, e.g. a boolean
``is_intervention``. Naming that column with a factor::

    intervention: {column: is_intervention, weight: 3.0}

in the embodiment YAML (every dataset of that robot) or in a mixture entry (that dataset; it wins
over the embodiment's) makes every sample of a flagged episode ``weight`` times as likely to be
drawn as a sample of an unflagged episode of the same dataset; the dataset's share of the mixture
is unchanged. An episode is flagged by its episode field of that name (a ``meta/episodes.jsonl``
key, a ``meta/episodes/`` parquet column), or else by the frame column of that name (data parquet),
then when any of its frames is true.

The samplers stay pure functions of (seed, position): they split each weighted dataset into strata
of episodes with one factor (flagged, unflagged), each a stream of permutations of its own, drawn in
proportion to ``samples × factor`` within the dataset's share (`weighted_strata`). A resumed run
therefore continues exactly; the sampler state records the strata, so a changed weighting or
column is refused on resume instead of silently drawing another order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class InterventionWeighting:
    """Flagged episodes (boolean `column`) are drawn `weight` times as often per sample."""

    column: str
    weight: float

    def to_dict(self) -> dict[str, Any]:
        return {"column": self.column, "weight": self.weight}


def parse_intervention(
    value: Any, where: str, fail: Callable[[str, str], Exception]
) -> InterventionWeighting | None:
    """Check an ``intervention: {column, weight}`` mapping (None passes); errors name `where`."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise fail(where, f"expected a mapping {{column: <name>, weight: <factor>}}, got {value!r}")
    unknown = sorted(set(value) - {"column", "weight"})
    if unknown:
        raise fail(f"{where}.{unknown[0]}", "unknown field; allowed: ['column', 'weight']")
    column, weight = value.get("column"), value.get("weight")
    if not isinstance(column, str) or not column:
        raise fail(
            f"{where}.column", f"expected the name of a boolean episode or frame column, got {column!r}"
        )
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 < weight < float("inf"):
        raise fail(f"{where}.weight", f"expected a positive factor, got {weight!r}")
    return InterventionWeighting(column, float(weight))


def _as_flags(values: Any, where: str) -> np.ndarray:
    arr = np.asarray(values)
    if (
        arr.dtype == object
        or arr.dtype.kind not in "biu"
        or (arr.dtype.kind in "iu" and not np.isin(arr, (0, 1)).all())
    ):
        raise ValueError(f"{where}: expected booleans (or 0/1), got {arr.reshape(-1)[:5].tolist()!r}")
    return arr.astype(bool)


def episode_flags(dataset: Any, column: str) -> np.ndarray:
    """bool ``[episodes]`` (in ``dataset.episode_indices`` order): the episode field `column`, or
    whether any frame of the frame column `column` is true."""
    reader = dataset.reader
    episodes = list(dataset.episode_indices)
    fields = [reader.episode(ep).fields for ep in episodes]
    if all(column in f for f in fields):
        return np.array(
            [
                bool(_as_flags(f[column], f"{dataset.root}: episode {ep} field {column!r}").any())
                for ep, f in zip(episodes, fields)
            ]
        )
    if column in reader.features:
        return np.array(
            [
                bool(
                    _as_flags(
                        reader.episode_data(ep, [column])[column], f"{dataset.root}: column {column!r}"
                    ).any()
                )
                for ep in episodes
            ]
        )
    known = sorted(set().union(*(f.keys() for f in fields))) if fields else []
    raise ValueError(
        f"{dataset.root}: intervention column {column!r} is neither an episode field (meta/episodes: "
        f"{known}) nor a frame column (meta/info.json features: {sorted(reader.features)})"
    )


@dataclass(frozen=True)
class Stratum:
    """Units (samples or chunks) of one dataset whose episodes share a factor."""

    dataset: int
    rows: np.ndarray  # int64: the units, as row numbers of the caller's per-dataset table
    share: float  # relative share of *samples* over the whole mixture
    factor: float = 1.0  # the episodes' weight factor


def weighted_strata(
    episodes: Sequence[np.ndarray],
    samples: Sequence[np.ndarray],
    shares: Sequence[float],
    factors: Sequence[Mapping[int, float] | None],
) -> list[Stratum]:
    """Split each dataset's units into strata by episode factor.

    Per dataset d: ``episodes[d]`` / ``samples[d]`` give each unit's episode and sample count,
    ``shares[d]`` the dataset's share of samples, ``factors[d]`` episode → factor (None or missing:
    1). A stratum with factor f and n samples gets ``share_d · f·n / Σ_g g·n_g``. Datasets without
    factors stay one stratum with their share. Strata come in dataset order, factor 1 first.
    """
    out = []
    for d, (eps, counts, share, fac) in enumerate(zip(episodes, samples, shares, factors)):
        eps, counts = np.asarray(eps, dtype=np.int64), np.asarray(counts, dtype=np.int64)
        per_unit = np.array([1.0 if fac is None else float(fac.get(int(e), 1.0)) for e in eps])
        levels = sorted(set(per_unit.tolist()), key=lambda f: (f != 1.0, f))
        mass = {f: f * counts[per_unit == f].sum() for f in levels}
        total = sum(mass.values())
        for f in levels:
            rows = np.flatnonzero(per_unit == f)
            out.append(Stratum(d, rows, float(share) * mass[f] / total, float(f)))
    return out


def episodes_digest(episodes: Any) -> str:
    """A short digest of a stratum's episode indices: with its count, the flagged *set*, so that
    flagging other episodes of the same number is noticed on resume."""
    ids = np.unique(np.asarray(episodes, dtype=np.int64))
    return hashlib.sha256(ids.tobytes()).hexdigest()[:16]


def check_strata(saved: Any, current: Sequence[Sequence[Any]] | None) -> None:
    """Raise unless a checkpoint's strata (``[dataset, count, factor, digest]`` each) are this run's.
    Entries of checkpoints written before the digest was recorded compare without it."""
    old = [list(s) for s in saved or []]
    now = [list(s) for s in current or []]
    same = len(old) == len(now) and all(a == b[: len(a)] and len(a) in (3, len(b)) for a, b in zip(old, now))
    if not same:
        raise ValueError(
            f"sampler state mismatch for 'strata': checkpoint has {saved!r}, this run has {now!r} "
            "([dataset, episodes, factor, digest of the episodes]); the intervention weighting changed, so "
            "the data position cannot be restored exactly"
        )


def episode_factors(dataset: Any, weighting: InterventionWeighting | None) -> dict[int, float] | None:
    """Episode index → factor of a dataset's flagged episodes (None without a weighting)."""
    if weighting is None:
        return None
    flags = episode_flags(dataset, weighting.column)
    return {int(ep): weighting.weight for ep, flag in zip(dataset.episode_indices, flags) if flag}


class EpisodeWeightedSampler:
    """Random sampling (`MixtureSampler`) with per-episode weights: a `MixtureSampler` over the
    strata of `weighted_strata`, its draws mapped back to the datasets' global sample indices.

    Args:
        episodes: per dataset, the episode index of each episode in sample order.
        starts: per dataset, int ``[episodes + 1]``: first sample index of each episode (local), then
            the dataset size.
        shares: per dataset, its share of draws (None: proportional to the sizes).
        factors: per dataset, episode → factor (None: all 1).
        **kwargs: `MixtureSampler` arguments (seed, rank, world_size, round_to, ...).
    """

    sampling = "random"

    def __init__(
        self,
        episodes: Sequence[np.ndarray],
        starts: Sequence[np.ndarray],
        shares: Sequence[float] | None,
        factors: Sequence[Mapping[int, float] | None],
        **kwargs: Any,
    ) -> None:
        from gr00t.data.sampler import MixtureSampler

        starts = [np.asarray(s, dtype=np.int64) for s in starts]
        sizes = [int(s[-1]) for s in starts]
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        strata = weighted_strata(episodes, [np.diff(s) for s in starts], shares or sizes, factors)
        self._runs = []  # per stratum: (global start of each run, cumulative run lengths)
        for st in strata:
            first = offsets[st.dataset] + starts[st.dataset][st.rows]
            lengths = np.diff(starts[st.dataset])[st.rows]
            self._runs.append((first, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)))
        self.inner = MixtureSampler([int(c[-1]) for _, c in self._runs], [s.share for s in strata], **kwargs)
        self.strata = [
            (s.dataset, len(s.rows), s.factor, episodes_digest(np.asarray(episodes[s.dataset])[s.rows]))
            for s in strata
        ]

    def to_global(self, index: int) -> int:
        """The dataset-global sample index of the inner sampler's stratum index."""
        s = int(np.searchsorted(self.inner.offsets, index, side="right")) - 1
        local = index - int(self.inner.offsets[s])
        first, cum = self._runs[s]
        r = int(np.searchsorted(cum, local, side="right")) - 1
        return int(first[r] + local - cum[r])

    def __iter__(self) -> Any:
        from gr00t.data.sampler import SampleIndex

        for draw in self.inner:
            yield SampleIndex(self.to_global(int(draw)), draw.seed, draw.epoch, draw.position)

    def __len__(self) -> int:
        return len(self.inner)

    def __getattr__(self, name: str) -> Any:  # seed, consumed, epoch_length, counts, ...
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def set_epoch(self, epoch: int) -> None:
        self.inner.set_epoch(epoch)

    def advance(self, global_draws: int) -> None:
        self.inner.advance(global_draws)

    def state_dict(self, consumed: int | None = None) -> dict[str, Any]:
        return {**self.inner.state_dict(consumed), "strata": [list(s) for s in self.strata]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_strata(state.get("strata"), self.strata)
        self.inner.load_state_dict({k: v for k, v in state.items() if k != "strata"})


def mixture_factors(
    entries: Sequence[Any], embodiments: Mapping[str, Any], datasets: Sequence[Any]
) -> tuple[list[dict[int, float] | None], list[dict[str, Any]]]:
    """Per dataset of a mixture: episode → factor from the entry's weighting, else its embodiment's;
    and a summary per weighted dataset (column, weight, flagged / all episodes) for the run's log."""
    factors: list[dict[int, float] | None] = []
    summary = []
    for entry, dataset in zip(entries, datasets):
        weighting = entry.intervention or getattr(embodiments[entry.embodiment], "intervention", None)
        found = episode_factors(dataset, weighting)
        factors.append(found or None)
        if weighting is not None:
            summary.append(
                {
                    "dataset": entry.name,
                    **weighting.to_dict(),
                    "flagged_episodes": len(found or {}),
                    "episodes": len(dataset.episode_indices),
                }
            )
    return factors, summary


def episode_starts(dataset: Any) -> np.ndarray:
    """int ``[episodes + 1]``: a `Gr00tDataset`'s first sample index of each episode, then its size."""
    counts = [dataset.num_valid_steps(n) for n in dataset.episode_lengths]
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def weighted_sampler_factory(
    datasets: Sequence[Any],
    weights: Sequence[float] | None,
    factors: Sequence[Mapping[int, float] | None],
    seed: int,
    per_device_batch: int,
) -> Callable[[int, int], EpisodeWeightedSampler]:
    """`(rank, world_size) -> EpisodeWeightedSampler` over `datasets` (a mixture's, in order);
    epochs rounded to whole global batches like the plain sampler's."""
    episodes = [np.asarray(d.episode_indices, dtype=np.int64) for d in datasets]
    starts = [episode_starts(d) for d in datasets]

    def factory(rank: int, world_size: int) -> EpisodeWeightedSampler:
        return EpisodeWeightedSampler(
            episodes,
            starts,
            weights,
            factors,
            seed=seed,
            rank=rank,
            world_size=world_size,
            round_to=per_device_batch * world_size,
        )

    return factory
