"""One input dataset of a merge/append/split: the reader plus what the writer needs besides it.

The LeRobot reader (`gr00t.data.lerobot`) answers the metadata and row-range questions; this module
adds the parts a writer must carry over that a training reader never needs: whole parquet rows
(every column, image bytes included), per-episode statistics (v2.1 `episodes_stats.jsonl`, v3.0
`stats/*` columns of `meta/episodes`), extra per-episode metadata columns, the raw `modality.json`
and `stats.json`, and where each episode's frames sit in which video file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gr00t.data.lerobot import LeRobotFormatError, LeRobotReader, open_lerobot_dataset
from gr00t.data.lerobot.base import read_jsonl

# Per-episode metadata keys the writer regenerates; anything else is carried over as is.
V21_EPISODE_KEYS = {"episode_index", "tasks", "length"}
V30_EPISODE_PREFIXES = ("data/", "videos/", "meta/episodes/", "stats/")
V30_EPISODE_KEYS = {"episode_index", "tasks", "length", "dataset_from_index", "dataset_to_index"}
STATS_FILE = "meta/stats.json"
RELATIVE_STATS_FILE = "meta/relative_stats.json"
MODALITY_FILE = "meta/modality.json"
EPISODES_STATS_FILE = "meta/episodes_stats.jsonl"


class DatasetOpsError(ValueError):
    """Inputs that cannot be merged, appended or split as asked (one line, names file and key)."""


@dataclass(frozen=True)
class VideoRef:
    """Where one episode's frames of one camera live: frame i is shown at `from_ts + timestamp[i]`."""

    path: Path
    from_ts: float
    to_ts: float | None
    # Source file identity for grouping; `whole_file_episodes` lists every episode stored in it.
    file_key: tuple[str, str]


@dataclass
class SourceDataset:
    """An opened input dataset."""

    root: Path
    reader: LeRobotReader
    modality: dict | None
    stats: dict | None
    relative_stats: dict | None
    episode_stats: dict[int, dict[str, dict[str, np.ndarray]]] = field(default_factory=dict)
    episode_extra: dict[int, dict] = field(default_factory=dict)
    _table_cache: tuple[Path, pa.Table] | None = None

    @property
    def info(self) -> dict:
        return self.reader.info

    @property
    def version(self) -> str:
        """ "v3.0" or "v2.1" (v2.0 datasets are read like v2.1 and written as v2.1)."""
        return "v3.0" if self.reader.version == "v3.0" else "v2.1"

    @property
    def fps(self) -> float:
        return self.reader.fps

    @property
    def features(self) -> dict:
        return self.reader.features

    @property
    def video_keys(self) -> list[str]:
        return self.reader.video_keys

    def data_file(self, episode: int) -> Path:
        return self.reader.data_path(episode)

    def data_rows(self, episode: int) -> tuple[int, int]:
        """Row range [start, stop) of the episode in its data file (the range the reader itself uses)."""
        return self.reader._episode_rows(episode)  # noqa: SLF001 - the reader owns this bookkeeping

    def episode_table(self, episode: int) -> pa.Table:
        """Every column of the episode's parquet rows (the last data file read is kept in memory)."""
        path = self.data_file(episode)
        if self._table_cache is None or self._table_cache[0] != path:
            try:
                self._table_cache = (path, pq.read_table(path))
            except (pa.ArrowInvalid, OSError) as err:
                raise LeRobotFormatError(f"{path}: unreadable parquet file: {err}") from err
        start, stop = self.data_rows(episode)
        return self._table_cache[1].slice(start, stop - start)

    def holds_file(self, path: Path, table: pa.Table) -> bool:
        """Whether the data file at `path` (the one last read) holds exactly the rows of `table`."""
        if self._table_cache is None or self._table_cache[0] != path:
            return False
        cached = self._table_cache[1]
        return cached.num_rows == table.num_rows and cached.equals(table)

    def data_schema(self) -> pa.Schema:
        """Schema of the first data file (the column types an output keeps)."""
        first = self.reader.episode_indices[0]
        return pq.read_schema(self.data_file(first))

    def video(self, episode: int, key: str) -> VideoRef:
        path, from_ts = self.reader.video_location(episode, key)
        rec = self.reader.episode(episode)
        to_ts = None
        if self.reader.version == "v3.0":
            to_ts = rec.extra["videos"][key].get("to_timestamp")
        return VideoRef(
            path, float(from_ts), None if to_ts is None else float(to_ts), (str(self.root), str(path))
        )

    def file_episodes(self) -> dict[tuple[str, str], list[int]]:
        """Every data/video file of the dataset → the episodes stored in it, in file order."""
        out: dict[tuple[str, str], list[int]] = {}
        for ep in self.reader.episode_indices:
            keys = [("data", str(self.data_file(ep)))] + [self.video(ep, k).file_key for k in self.video_keys]
            for key in keys:
                out.setdefault(key, []).append(ep)
        return out


def _read_optional_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise LeRobotFormatError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise LeRobotFormatError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _stats_arrays(stats: dict, where: str) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for feature, entry in stats.items():
        if not isinstance(entry, dict):
            raise LeRobotFormatError(f"{where}: statistics of {feature!r} must be an object")
        out[feature] = {k: np.asarray(v) for k, v in entry.items() if v is not None}
    return out


def _v21_episode_meta(root: Path) -> tuple[dict[int, dict], dict[int, dict]]:
    """(per-episode stats, extra episodes.jsonl keys) of a v2.x dataset."""
    extra = {}
    for row in read_jsonl(root / "meta/episodes.jsonl"):
        extra[int(row["episode_index"])] = {k: v for k, v in row.items() if k not in V21_EPISODE_KEYS}
    stats = {}
    path = root / EPISODES_STATS_FILE
    if path.is_file():
        for number, row in enumerate(read_jsonl(path), start=1):
            if "episode_index" not in row or not isinstance(row.get("stats"), dict):
                raise LeRobotFormatError(f"{path}, line {number}: needs 'episode_index' and a 'stats' object")
            stats[int(row["episode_index"])] = _stats_arrays(row["stats"], f"{path}, line {number}")
    return stats, extra


def _v30_episode_meta(root: Path) -> tuple[dict[int, dict], dict[int, dict]]:
    """(per-episode stats from `stats/<feature>/<stat>` columns, extra columns) of a v3.0 dataset."""
    stats: dict[int, dict] = {}
    extra: dict[int, dict] = {}
    for path in sorted((root / "meta/episodes").glob("*/*.parquet")):
        table = pq.read_table(path)
        rows = table.to_pylist()
        for row in rows:
            ep = int(row["episode_index"])
            per: dict[str, dict[str, np.ndarray]] = {}
            for name, value in row.items():
                if name.startswith("stats/") and value is not None:
                    feature, _, stat = name[len("stats/") :].rpartition("/")
                    per.setdefault(feature, {})[stat] = np.asarray(value)
            if per:
                stats[ep] = per
            extra[ep] = {
                k: v
                for k, v in row.items()
                if k not in V30_EPISODE_KEYS and not k.startswith(V30_EPISODE_PREFIXES)
            }
    return stats, extra


def open_source(root: str | Path, allow_empty: bool = False) -> SourceDataset:
    """Open an input dataset (v2.0, v2.1 or v3.0); every data and video file must exist."""
    root = Path(root)
    reader = open_lerobot_dataset(root)
    if reader.num_episodes == 0 and not allow_empty:
        raise DatasetOpsError(f"{root / 'meta/info.json'}: the dataset has 0 episodes")
    if reader.version == "v3.0":
        ep_stats, extra = _v30_episode_meta(root)
    else:
        ep_stats, extra = _v21_episode_meta(root)
    stats = _read_optional_json(root / STATS_FILE)
    return SourceDataset(
        root=root,
        reader=reader,
        modality=_read_optional_json(root / MODALITY_FILE),
        stats=None if stats is None else _stats_arrays(stats, str(root / STATS_FILE)),
        relative_stats=_read_optional_json(root / RELATIVE_STATS_FILE),
        episode_stats=ep_stats,
        episode_extra=extra,
    )
