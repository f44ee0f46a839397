"""Statistics of an output dataset, so that they equal statistics recomputed on the result.

- Numeric features (everything but video, image and string): recomputed from the output's parquet
  rows while they are written, per episode (exact numpy mean/std/min/max/count and quantiles) and
  for the whole dataset with `gr00t.data.stats.StatsAccumulator` fed episode by episode in output
  order, i.e. exactly what `gr00t-stats`/`compute_stats` computes on the result. Quantiles are
  q01/q99 plus any other `qNN` an input carried (LeRobot 0.4 writes q10/q50/q90); they are exact,
  not LeRobot's histogram estimates.
- Camera features (video/image): their per-episode statistics come from sampled frames that the
  merge does not change, so they are carried over per episode and aggregated for the dataset the
  way LeRobot aggregates them (count-weighted mean, pooled variance, min of mins, max of maxes,
  count-weighted quantiles). If any output episode lacks them, that feature gets no statistics.
- `meta/relative_stats.json` (gr00t, per embodiment) is recomputed by the caller when the inputs
  agree on the embodiment, else dropped (training recomputes it on first use).
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa

from gr00t.data.lerobot.base import column_to_numpy
from gr00t.data.stats import StatsAccumulator

CAMERA_DTYPES = ("video", "image")
NON_NUMERIC = (*CAMERA_DTYPES, "string")
BASE_QUANTILES = ("q01", "q99")
QUANTILE = re.compile(r"^q(\d{2})$")

EpisodeStats = dict[str, dict[str, np.ndarray]]


def numeric_features(features: dict) -> list[str]:
    return [k for k, f in features.items() if f.get("dtype") not in NON_NUMERIC]


def camera_features(features: dict) -> list[str]:
    return [k for k, f in features.items() if f.get("dtype") in CAMERA_DTYPES]


def quantile_keys(stat_dicts) -> list[str]:
    """q01, q99 and every other `qNN` statistic found in `stat_dicts` ({feature: {stat: ...}})."""
    keys = set(BASE_QUANTILES)
    for stats in stat_dicts:
        for entry in (stats or {}).values():
            keys |= {k for k in entry if QUANTILE.match(k)}
    return sorted(keys)


def _fraction(key: str) -> float:
    return int(QUANTILE.match(key).group(1)) / 100.0


def column_rows(table: pa.Table, name: str, where: str) -> np.ndarray:
    """A numeric column as float64 [N, D] (scalars become [N, 1])."""
    values = column_to_numpy(table.column(name), f"{where}: column {name!r}").astype(np.float64)
    return values.reshape(len(values), -1)


def rows_stats(rows: np.ndarray, quantiles: list[str], shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Exact statistics of rows [N, D], each reshaped to the feature's `shape`."""
    out = {
        "mean": rows.mean(0),
        "std": rows.std(0),
        "min": rows.min(0),
        "max": rows.max(0),
    }
    if quantiles:
        values = np.quantile(rows, [_fraction(q) for q in quantiles], axis=0)
        out.update(zip(quantiles, values))
    out = {k: v.reshape(shape) for k, v in out.items()}
    out["count"] = np.array([rows.shape[0]])
    return out


class _Accumulator(StatsAccumulator):
    def extra_quantiles(self, keys: list[str]) -> dict[str, np.ndarray]:
        self._shrink()
        values = np.quantile(self._rows[0], [_fraction(k) for k in keys], axis=0)
        return dict(zip(keys, values))


def aggregate_camera(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Dataset statistics of one camera feature from its per-episode statistics (LeRobot's rule)."""
    means = np.stack([np.asarray(p["mean"], np.float64) for p in parts])
    variances = np.stack([np.asarray(p["std"], np.float64) ** 2 for p in parts])
    counts = np.stack([np.asarray(p["count"], np.float64).reshape(1) for p in parts])
    total = counts.sum(0)
    weights = counts.reshape((-1,) + (1,) * (means.ndim - 1))
    mean = (means * weights).sum(0) / total
    variance = ((variances + (means - mean) ** 2) * weights).sum(0) / total
    out = {
        "min": np.min(np.stack([p["min"] for p in parts]), 0),
        "max": np.max(np.stack([p["max"] for p in parts]), 0),
        "mean": mean,
        "std": np.sqrt(variance),
        "count": total.astype(np.int64),
    }
    for key in parts[0]:
        if QUANTILE.match(key) and all(key in p for p in parts):
            out[key] = (np.stack([np.asarray(p[key], np.float64) for p in parts]) * weights).sum(0) / total
    return out


class OutputStats:
    """Collects per-episode and dataset statistics while the output's episodes are written."""

    def __init__(self, features: dict, quantiles: list[str]):
        self.features = features
        self.numeric = numeric_features(features)
        self.cameras = camera_features(features)
        self.quantiles = quantiles
        self._acc: dict[str, _Accumulator] = {}
        self.episodes: list[EpisodeStats] = []
        self.dropped: list[str] = []

    def _shape(self, name: str, width: int) -> tuple[int, ...]:
        shape = tuple(int(s) for s in self.features[name].get("shape") or ())
        return shape if shape and int(np.prod(shape)) == width else (width,)

    def add_episode(self, table: pa.Table, carried: EpisodeStats | None, where: str) -> EpisodeStats:
        """Statistics of one output episode (its final rows); camera stats come from `carried`."""
        stats: EpisodeStats = {}
        for name in self.numeric:
            if name not in table.column_names:
                continue
            rows = column_rows(table, name, where)
            stats[name] = rows_stats(rows, self.quantiles, self._shape(name, rows.shape[1]))
            self._acc.setdefault(name, _Accumulator()).add(rows)
        for name in self.cameras:
            entry = (carried or {}).get(name)
            if entry and all(k in entry for k in ("mean", "std", "min", "max", "count")):
                stats[name] = {k: np.asarray(v) for k, v in entry.items()}
        self.episodes.append(stats)
        return stats

    def finish(self) -> dict[str, dict[str, np.ndarray]]:
        """Dataset statistics; camera features that some episode lacks are removed everywhere."""
        out: dict[str, dict[str, np.ndarray]] = {}
        for name, acc in self._acc.items():
            result = acc.result()
            shape = self._shape(name, result["mean"].size)
            entry = {k: np.asarray(result[k]).reshape(shape) for k in ("mean", "std", "min", "max")}
            extra = [q for q in self.quantiles if q not in BASE_QUANTILES]
            entry.update({q: np.asarray(result[q]).reshape(shape) for q in BASE_QUANTILES})
            entry.update(
                {q: v.reshape(shape) for q, v in acc.extra_quantiles(extra).items()} if extra else {}
            )
            entry["count"] = np.array([int(result["count"])])
            out[name] = entry
        for name in self.cameras:
            parts = [ep.get(name) for ep in self.episodes]
            if all(p is not None for p in parts):
                out[name] = aggregate_camera(parts)
            else:
                if any(p is not None for p in parts):
                    self.dropped.append(name)
                for ep in self.episodes:
                    ep.pop(name, None)
        return out


def to_json(stats: dict[str, dict[str, np.ndarray]]) -> dict:
    """Nested lists, `count` as `[int]` (LeRobot's and gr00t's stats.json layout)."""
    return {
        feature: {
            k: ([int(np.asarray(v).sum())] if k == "count" else np.asarray(v).tolist())
            for k, v in entry.items()
        }
        for feature, entry in stats.items()
    }
