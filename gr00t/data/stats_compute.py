"""Statistics computation (SPEC §2.3): streaming accumulation, merging, and one dataset's statistics
from its parquet columns (never its videos). The files they are stored in: `gr00t.data.stats`.

Exact mean/std/min/max are accumulated in float64 for any dataset size; q01/q99 come from all rows
up to `max_quantile_rows` rows, beyond that from a uniform random subset of that many rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gr00t.data.embodiment import EmbodimentConfig, load_embodiment
from gr00t.data.state_action import to_relative

STAT_KEYS = ("mean", "std", "min", "max", "q01", "q99")
MAX_QUANTILE_ROWS = 200_000

Stats = dict[str, np.ndarray]  # stat name -> array ([D] or [H, D]); "count" is a scalar array


class StatsError(ValueError):
    """Statistics are missing, malformed or incompatible with the embodiment."""


# ----------------------------------------------------------------------------------------------
# Accumulation
# ----------------------------------------------------------------------------------------------


class StatsAccumulator:
    """Streaming statistics over rows of shape `row_shape` ([D] or [H, D])."""

    def __init__(self, max_quantile_rows: int = MAX_QUANTILE_ROWS, seed: int = 0):
        self.count = 0
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None
        self.min: np.ndarray | None = None
        self.max: np.ndarray | None = None
        self._cap = max_quantile_rows
        self._rng = np.random.default_rng(seed)
        self._rows: list[np.ndarray] = []
        self._keys: list[np.ndarray] = []
        self._kept = 0

    def add(self, rows: np.ndarray) -> None:
        """Add rows [N, *row_shape]."""
        x = np.asarray(rows, dtype=np.float64)
        n = x.shape[0]
        if n == 0:
            return
        if not np.all(np.isfinite(x)):
            raise StatsError("statistics input contains NaN or infinity")
        mean = x.mean(0)
        m2 = ((x - mean) ** 2).sum(0)
        if self.mean is None:
            self.count, self.mean, self.m2, self.min, self.max = n, mean, m2, x.min(0), x.max(0)
        else:
            if x.shape[1:] != self.mean.shape:
                raise StatsError(f"row shape changed from {self.mean.shape} to {x.shape[1:]}")
            total = self.count + n
            delta = mean - self.mean
            self.mean = self.mean + delta * (n / total)
            self.m2 = self.m2 + m2 + delta**2 * (self.count * n / total)
            self.count = total
            self.min = np.minimum(self.min, x.min(0))
            self.max = np.maximum(self.max, x.max(0))
        # bottom-k by random key = a uniform sample without replacement, mergeable batch by batch
        self._rows.append(x)
        self._keys.append(self._rng.random(n))
        self._kept += n
        if self._kept > 2 * self._cap:
            self._shrink()

    def _shrink(self) -> None:
        rows, keys = np.concatenate(self._rows), np.concatenate(self._keys)
        if len(keys) > self._cap:
            keep = np.argpartition(keys, self._cap)[: self._cap]
            rows, keys = rows[keep], keys[keep]
        self._rows, self._keys, self._kept = [rows], [keys], len(keys)

    def result(self) -> Stats:
        if self.mean is None:
            raise StatsError("no data to compute statistics from")
        self._shrink()
        sample = self._rows[0]
        q01, q99 = np.quantile(sample, [0.01, 0.99], axis=0)
        return {
            "mean": self.mean,
            "std": np.sqrt(np.maximum(self.m2 / self.count, 0.0)),
            "min": self.min,
            "max": self.max,
            "q01": q01,
            "q99": q99,
            "count": np.array(self.count),
        }


def array_stats(rows: np.ndarray) -> Stats:
    """Statistics of rows [N, ...] in one go."""
    acc = StatsAccumulator()
    acc.add(rows)
    return acc.result()


def merge_stats(parts: Sequence[Mapping[str, Any]], weights: Sequence[float] | None = None) -> Stats:
    """Merge statistics of several datasets (SPEC §2.3): weighted mean, pooled variance
    `Σw(σ²+μ²) − (Σwμ)²`, min of mins, max of maxes, q01 = min of q01s, q99 = max of q99s.
    Weights default to each part's `count` and are normalised to sum to 1."""
    if not parts:
        raise StatsError("nothing to merge")
    if weights is None:
        if any("count" not in p for p in parts):
            raise StatsError("merge_stats needs weights or a 'count' in every part")
        weights = [float(np.asarray(p["count"]).sum()) for p in parts]
    w = np.asarray(weights, dtype=np.float64)
    if len(w) != len(parts) or np.any(w < 0) or w.sum() <= 0:
        raise StatsError(f"bad merge weights {list(weights)}")
    w = w / w.sum()
    arr = {k: [np.asarray(p[k], dtype=np.float64) for p in parts] for k in STAT_KEYS}
    shapes = {a.shape for a in arr["mean"]}
    if len(shapes) != 1:
        raise StatsError(f"cannot merge statistics of different shapes {sorted(shapes)}")
    shape_w = w.reshape((-1,) + (1,) * arr["mean"][0].ndim)
    means, stds = np.stack(arr["mean"]), np.stack(arr["std"])
    mean = (shape_w * means).sum(0)
    var = (shape_w * (stds**2 + means**2)).sum(0) - mean**2
    out: Stats = {
        "mean": mean,
        "std": np.sqrt(np.maximum(var, 0.0)),
        "min": np.min(np.stack(arr["min"]), 0),
        "max": np.max(np.stack(arr["max"]), 0),
        "q01": np.min(np.stack(arr["q01"]), 0),
        "q99": np.max(np.stack(arr["q99"]), 0),
    }
    if all("count" in p for p in parts):
        out["count"] = np.array(sum(int(np.asarray(p["count"]).sum()) for p in parts))
    return out


# ----------------------------------------------------------------------------------------------
# Reading a dataset's numeric columns (never its videos)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupSlice:
    """Where one state/action group lives: parquet column and [start, end) of its vector."""

    column: str
    start: int
    end: int


def group_slices(root: Path, embodiment: EmbodimentConfig) -> dict[str, dict[str, GroupSlice]]:
    """modality.json slices of the embodiment's state and action groups."""
    modality = _load_modality(root)
    out: dict[str, dict[str, GroupSlice]] = {"state": {}, "action": {}}
    for section, keys in (("state", embodiment.state.keys), ("action", embodiment.action.keys)):
        available = modality_groups(modality, section)
        for key in keys:
            if key not in available:
                raise StatsError(
                    f"{root}/meta/modality.json: {section} group {key!r} required by embodiment "
                    f"{embodiment.tag!r} ({embodiment.source}) is missing; it has {sorted(available)}"
                )
            out[section][key] = available[key]
    return out


def modality_groups(modality: Any, section: str) -> dict[str, GroupSlice]:
    """Group slices of one section ("state" / "action") of a parsed modality description."""
    default_column = "observation.state" if section == "state" else "action"
    groups = getattr(modality, section, None)
    if groups is None and isinstance(modality, Mapping):
        groups = modality.get(section, {})
    out = {}
    for key, spec in (groups or {}).items():
        get = (
            spec.get
            if isinstance(spec, Mapping)
            else (lambda name, default=None, s=spec: getattr(s, name, default))
        )
        column = get("original_key") or get("column") or default_column
        out[key] = GroupSlice(str(column), int(get("start")), int(get("end")))
    return out


def _load_modality(root: Path) -> Any:
    from gr00t.data.modality import load_modality

    return load_modality(root)


def iter_episode_columns(root: Path, columns: Sequence[str]) -> Iterator[dict[str, np.ndarray]]:
    """Yield, per episode, {column: float64 [len, D]} from the parquet files (videos are neither
    opened nor required to exist)."""
    from gr00t.data.lerobot import open_lerobot_dataset

    reader = open_lerobot_dataset(root, check_files=False)
    for episode in reader.episode_indices:
        data = reader.episode_data(episode, list(columns))
        yield {c: _column_array(data[c], root, c) for c in columns}


def _column_array(values: Any, root: Path, column: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype == object:  # list-valued parquet cells
        arr = np.stack([np.asarray(v, dtype=np.float64) for v in arr])
    arr = arr.astype(np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise StatsError(f"{root}: column {column!r} has shape {arr.shape}, expected [frames, dims]")
    return arr


# ----------------------------------------------------------------------------------------------
# Computing
# ----------------------------------------------------------------------------------------------


def valid_starts(length: int, embodiment: EmbodimentConfig) -> np.ndarray:
    """Sample steps t whose state and action windows lie inside an episode of `length` frames."""
    deltas = embodiment.state.delta_indices + embodiment.action.delta_indices
    lo, hi = -min(min(deltas), 0), length - max(max(deltas), 0)
    return np.arange(lo, hi) if hi > lo else np.arange(0)


def compute_stats(
    root: str | Path,
    embodiment: EmbodimentConfig | str,
    episodes: Iterable[Mapping[str, np.ndarray]] | None = None,
    max_quantile_rows: int = MAX_QUANTILE_ROWS,
) -> tuple[dict[str, Stats], dict[str, Stats]]:
    """(column stats, relative stats) of one dataset, reading only parquet columns.

    `episodes` overrides the reader (an iterable of {column: [len, D]}), e.g. for tests.
    """
    root = Path(root)
    emb = load_embodiment(embodiment)
    slices = group_slices(root, emb)
    columns = sorted({s.column for sec in slices.values() for s in sec.values()})
    col_acc = {c: StatsAccumulator(max_quantile_rows) for c in columns}
    rel_groups = [g for g in emb.action.groups if g.is_relative]
    rel_acc = {g.key: StatsAccumulator(max_quantile_rows, seed=1) for g in rel_groups}
    action_deltas = np.asarray(emb.action.delta_indices)
    state_last = emb.state.delta_indices[-1]
    n_episodes = 0
    for cols in episodes if episodes is not None else iter_episode_columns(root, columns):
        n_episodes += 1
        for c in columns:
            col_acc[c].add(cols[c])
        length = len(cols[columns[0]])
        starts = valid_starts(length, emb)
        if not len(starts):
            continue
        for g in rel_groups:
            a_sl, s_sl = slices["action"][g.key], slices["state"][g.reference_key]
            actions = cols[a_sl.column][:, a_sl.start : a_sl.end]
            states = cols[s_sl.column][:, s_sl.start : s_sl.end]
            chunks = actions[starts[:, None] + action_deltas[None, :]]  # [N, H, D]
            rel_acc[g.key].add(to_relative(chunks, states[starts + state_last], g))
    if n_episodes == 0:
        raise StatsError(f"{root}: the dataset has 0 episodes; nothing to compute statistics from")
    column_stats = {c: acc.result() for c, acc in col_acc.items()}
    relative: dict[str, Stats] = {}
    for g in rel_groups:
        if rel_acc[g.key].count == 0:
            raise StatsError(
                f"{root}: no episode is long enough for a {emb.action_horizon}-step chunk of relative action "
                f"group {g.key!r}; cannot compute relative statistics"
            )
        relative[g.key] = rel_acc[g.key].result()
    return column_stats, relative


def relative_signature(embodiment: EmbodimentConfig) -> dict[str, Any]:
    """What relative statistics depend on; stored with them and compared on load."""
    return {
        "action_horizon": embodiment.action_horizon,
        "delta_indices": list(embodiment.action.delta_indices),
        "state_delta_indices": list(embodiment.state.delta_indices),
        "groups": {
            g.key: {
                "state_key": g.reference_key,
                "type": g.type,
                "format": g.format,
                "state_format": g.reference_format,
            }
            for g in embodiment.action.groups
            if g.is_relative
        },
    }
