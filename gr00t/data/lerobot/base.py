"""The reader interface shared by every LeRobot format version.

A reader answers metadata questions (fps, episodes, lengths, tasks, features) from `meta/`,
reads parquet columns of one episode lazily (only the requested columns, cached per file),
and says where each episode's frames live in which mp4 file. Subclasses (`v2.py`, `v3.py`)
only supply the version-specific file layout.
"""

from __future__ import annotations

import threading
import warnings
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gr00t.data import video as video_lib
from gr00t.data.lerobot.files import (  # noqa: F401  (re-exported: the readers' public helpers)
    LeRobotFormatError,
    NonFiniteValueError,
    column_to_numpy,
    read_json,
    read_jsonl,
    task_strings,
)
from gr00t.data.lerobot.images import decode_image_cell

INFO_PATH = "meta/info.json"
# How many (file, column) arrays each reader keeps in memory.
DEFAULT_COLUMN_CACHE = 64


@dataclass
class EpisodeRecord:
    """What `meta/` says about one episode."""

    episode_index: int
    length: int
    tasks: list[str] = field(default_factory=list)
    # Format-specific locations (data file, video files, time offsets).
    extra: dict = field(default_factory=dict)
    # The episode's own metadata fields beyond the layout (e.g. a recorder's `is_intervention`).
    fields: dict = field(default_factory=dict)


class LeRobotReader(ABC):
    """Read-only access to one LeRobot dataset on disk."""

    version: str = ""

    def __init__(self, root: str | Path, info: dict | None = None, check_files: bool = True):
        self.root = Path(root)
        self.info = info if info is not None else read_json(self.root / INFO_PATH)
        self.version = str(self.info.get("codebase_version", ""))
        for key in ("fps", "features", "data_path"):
            if key not in self.info:
                raise LeRobotFormatError(f"{self.root / INFO_PATH}: required key {key!r} is missing")
        self.fps = float(self.info["fps"])
        if not self.fps > 0:
            raise LeRobotFormatError(f"{self.root / INFO_PATH}: fps must be > 0, got {self.info['fps']!r}")
        self.features: dict = self.info["features"]
        self.video_keys: list[str] = [k for k, f in self.features.items() if f.get("dtype") == "video"]
        # LeRobot "image" features: one PNG per row inside the parquet data (struct<bytes, path>).
        self.image_keys: list[str] = [k for k, f in self.features.items() if f.get("dtype") == "image"]
        if self.video_keys and not self.info.get("video_path"):
            raise LeRobotFormatError(
                f"{self.root / INFO_PATH}: features {self.video_keys} are videos but 'video_path' is not set"
            )
        self.tasks: dict[int, str] = self._load_tasks()
        records = self._load_episodes()
        records.sort(key=lambda r: r.episode_index)
        self._episodes: dict[int, EpisodeRecord] = {}
        for rec in records:
            if rec.episode_index in self._episodes:
                raise LeRobotFormatError(
                    f"{self._episodes_source()}: episode {rec.episode_index} listed twice"
                )
            if rec.length < 0:
                raise LeRobotFormatError(
                    f"{self._episodes_source()}: episode {rec.episode_index} has negative length {rec.length}"
                )
            self._episodes[rec.episode_index] = rec
        total = self.info.get("total_episodes")
        if total is not None and int(total) != len(records):
            raise LeRobotFormatError(
                f"{self.root / INFO_PATH} says total_episodes={total}, but {self._episodes_source()} "
                f"lists {len(records)} episodes"
            )
        frames = self.info.get("total_frames")
        if frames is not None and int(frames) != self.total_frames:
            warnings.warn(
                f"{self.root / INFO_PATH} says total_frames={frames}, but the episode lengths in "
                f"{self._episodes_source()} add up to {self.total_frames}; using the episode lengths",
                stacklevel=2,
            )
        self._cache: OrderedDict = OrderedDict()
        self._cache_lock = threading.Lock()
        self.column_cache_size = DEFAULT_COLUMN_CACHE
        if check_files:
            self.check_files()

    # ------------------------------------------------------------------ format-specific parts
    @abstractmethod
    def _load_tasks(self) -> dict[int, str]: ...

    @abstractmethod
    def _load_episodes(self) -> list[EpisodeRecord]: ...

    @abstractmethod
    def _episodes_source(self) -> str:
        """Where the episode metadata comes from, for error messages."""

    @abstractmethod
    def data_path(self, episode: int) -> Path:
        """The parquet file holding this episode's rows."""

    @abstractmethod
    def _episode_rows(self, episode: int) -> tuple[int, int]:
        """Row range [start, stop) of the episode inside `data_path(episode)`."""

    @abstractmethod
    def video_location(self, episode: int, video_key: str) -> tuple[Path, float]:
        """`(mp4 path, from_timestamp)`: frame i of the episode is shown at from_timestamp + timestamp[i]."""

    def _format(self, template_key: str, **fields) -> Path:
        """Fill the `info.json` path template `template_key` with `fields`, relative to the root."""
        template = self.info[template_key]
        try:
            return self.root / template.format(**fields)
        except (KeyError, IndexError, ValueError) as err:
            raise LeRobotFormatError(
                f"{self.root / INFO_PATH}: {template_key} template {template!r} cannot be filled with "
                f"{sorted(fields)}: {err}"
            ) from err

    # ------------------------------------------------------------------ metadata
    @property
    def episode_indices(self) -> list[int]:
        """Episode indices in ascending order (not necessarily 0..N-1)."""
        return list(self._episodes)

    @property
    def num_episodes(self) -> int:
        return len(self._episodes)

    @property
    def episode_lengths(self) -> dict[int, int]:
        """`{episode_index: number of frames}`."""
        return {i: r.length for i, r in self._episodes.items()}

    @property
    def total_frames(self) -> int:
        return sum(r.length for r in self._episodes.values())

    def episode(self, episode: int) -> EpisodeRecord:
        """The metadata record of one episode; unknown indices raise KeyError naming the dataset."""
        try:
            return self._episodes[int(episode)]
        except KeyError:
            raise KeyError(
                f"{self.root}: no episode {episode} (the dataset has {self.num_episodes} episodes, "
                f"indices {self.episode_indices[:5]}{'...' if self.num_episodes > 5 else ''})"
            ) from None

    def episode_length(self, episode: int) -> int:
        return self.episode(episode).length

    def episode_tasks(self, episode: int) -> list[str]:
        """The task strings `meta/` lists for the episode."""
        return list(self.episode(episode).tasks)

    def feature_shape(self, key: str) -> tuple[int, ...]:
        if key not in self.features:
            raise KeyError(f"{self.root / INFO_PATH}: no feature {key!r}; features: {sorted(self.features)}")
        return tuple(int(s) for s in self.features[key].get("shape", ()))

    def check_files(self) -> None:
        """Raise FileNotFoundError naming the first missing data or video file."""
        seen: set[Path] = set()
        for ep in self._episodes:
            paths = [("data", self.data_path(ep))]
            paths += [(key, self.video_location(ep, key)[0]) for key in self.video_keys]
            for what, path in paths:
                if path in seen:
                    continue
                seen.add(path)
                if not path.is_file():
                    raise FileNotFoundError(f"{self.root}: episode {ep}: {what} file {path} is missing")

    # ------------------------------------------------------------------ parquet data
    def episode_data(self, episode: int, columns: list[str] | None = None) -> dict[str, np.ndarray]:
        """Columns of one episode as numpy arrays (vectors → [N, D], scalars → [N]).

        `columns=None` reads every feature present in the file except videos and images. Only the requested
        columns are read, and each (file, column) is cached. Float columns containing NaN/inf
        raise `NonFiniteValueError` naming the file, episode, column and frame.
        """
        ep = self.episode(episode).episode_index
        path = self.data_path(ep)
        if columns is None:
            columns = [
                c
                for c in self._file_columns(path)
                if c in self.features and self.features[c].get("dtype") not in ("video", "image")
            ]
        start, stop = self._episode_rows(ep)
        out = {}
        arrays = self._read_columns(path, list(columns), episode=ep)
        for name in columns:
            values = arrays[name][start:stop]
            if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
                bad = np.argwhere(~np.isfinite(values))[0]
                raise NonFiniteValueError(
                    f"{path}: episode {ep}, column {name!r} holds {values[tuple(bad)]} at frame {int(bad[0])}"
                    + (f", dimension {int(bad[1])}" if len(bad) > 1 else "")
                )
            out[name] = values
        return out

    def _file_columns(self, path: Path) -> list[str]:
        try:
            return list(pq.read_schema(path).names)
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.root}: data file {path} is missing") from None
        except (pa.ArrowInvalid, OSError) as err:
            raise LeRobotFormatError(f"{path}: unreadable parquet file: {err}") from err

    def _read_columns(self, path: Path, columns: list[str], episode: int) -> dict[str, np.ndarray]:
        out, missing = {}, []
        with self._cache_lock:
            for name in columns:
                key = (str(path), name)
                if key in self._cache:
                    self._cache.move_to_end(key)
                    out[name] = self._cache[key]
                else:
                    missing.append(name)
        if not missing:
            return out
        available = self._file_columns(path)
        absent = [c for c in missing if c not in available]
        if absent:
            raise KeyError(
                f"{path}: episode {episode}: column(s) {absent} not in the file; it has {available}"
            )
        try:
            table = pq.read_table(path, columns=missing)
        except (pa.ArrowInvalid, OSError) as err:
            raise LeRobotFormatError(f"{path}: unreadable parquet file (episode {episode}): {err}") from err
        with self._cache_lock:
            for name in missing:
                arr = column_to_numpy(table.column(name), f"{path}: column {name!r}")
                out[name] = arr
                self._cache[(str(path), name)] = arr
            while len(self._cache) > self.column_cache_size:
                self._cache.popitem(last=False)
        return out

    # ------------------------------------------------------------------ time and video
    def _frame_indices(self, ep: EpisodeRecord, indices) -> np.ndarray:
        """`indices` as int64 `[T]`, each checked to be a frame of episode `ep`."""
        idx = np.atleast_1d(np.asarray(indices, dtype=np.int64))
        if idx.size and (idx.min() < 0 or idx.max() >= ep.length):
            raise IndexError(
                f"{self.root}: episode {ep.episode_index} has {ep.length} frames; frame indices "
                f"{idx[(idx < 0) | (idx >= ep.length)].tolist()[:5]} are out of range"
            )
        return idx

    def frame_timestamps(self, episode: int, indices, video_key: str | None = None) -> np.ndarray:
        """Video timestamps (seconds, float64) of frames `indices` of the episode.

        Uses the parquet `timestamp` column (LeRobot's source of truth) when present, else
        `index / fps`, plus the episode's `from_timestamp` inside the (possibly shared) mp4.
        """
        ep = self.episode(episode)
        idx = self._frame_indices(ep, indices)
        key = video_key if video_key is not None else (self.video_keys[0] if self.video_keys else None)
        offset = (
            self.video_location(ep.episode_index, key)[1]
            if key is not None and key not in self.image_keys
            else 0.0
        )
        if "timestamp" in self.features:
            ts = self.episode_data(ep.episode_index, ["timestamp"])["timestamp"].astype(np.float64)
            ts = ts.reshape(len(ts), -1)[:, 0]
            return offset + ts[idx]
        return offset + idx / self.fps

    @property
    def camera_keys(self) -> list[str]:
        """Every camera feature: mp4 videos first, then images stored in the parquet data."""
        return self.video_keys + self.image_keys

    def _check_video_key(self, video_key: str) -> None:
        if video_key in self.image_keys:
            raise KeyError(
                f"{self.root}: {video_key!r} is an image feature (PNG frames inside the parquet data, not an "
                f"mp4): it has no video file; read it with decode_frames/decode_segment"
            )
        if video_key not in self.video_keys:
            raise KeyError(
                f"{self.root}: no video feature {video_key!r}; video features: {self.video_keys}"
                + (f", image features: {self.image_keys}" if self.image_keys else "")
            )

    def decode_images(self, episode: int, image_key: str, indices) -> np.ndarray:
        """Frames `indices` of an image feature (PNG/JPEG bytes in the parquet rows) → uint8 [T, H, W, 3]."""
        if image_key not in self.image_keys:
            raise KeyError(f"{self.root}: no image feature {image_key!r}; image features: {self.image_keys}")
        ep = self.episode(episode)
        idx = self._frame_indices(ep, indices)
        path = self.data_path(ep.episode_index)
        start, _ = self._episode_rows(ep.episode_index)
        cells = self._read_columns(path, [image_key], ep.episode_index)[image_key]
        where = f"{path}: episode {ep.episode_index}, {image_key!r}"
        return np.stack(
            [decode_image_cell(cells[start + i], self.root, f"{where}, frame {i}") for i in idx.tolist()]
        )

    def decode_frames(
        self,
        episode: int,
        video_key: str,
        indices,
        backend: str = "auto",
        tolerance_s: float = video_lib.DEFAULT_TOLERANCE_S,
        slot: int = 0,
    ) -> np.ndarray:
        """Frames `indices` of one episode's camera → uint8 [T, H, W, 3] (mp4 videos or image features).

        ``slot`` picks which of this process's decoders of the file reads them (`video.decode_frames`)."""
        if video_key in self.image_keys:
            return self.decode_images(episode, video_key, indices)
        self._check_video_key(video_key)
        path, _ = self.video_location(episode, video_key)
        ts = self.frame_timestamps(episode, indices, video_key)
        return video_lib.decode_frames(
            path,
            ts,
            backend=backend,
            tolerance_s=tolerance_s,
            context=f"episode {episode}, {video_key}",
            slot=slot,
        )

    def keyframe_layout(self, episode: int, video_key: str, backend: str = "auto") -> tuple[int, int]:
        """`(spacing, first)`: the camera's keyframe spacing and the first episode frame on that keyframe
        grid (`video.keyframe_grid`, read from the container index); image features give ``(1, 0)``."""
        if video_key in self.image_keys:
            return 1, 0
        self._check_video_key(video_key)
        path, from_ts = self.video_location(episode, video_key)
        return video_lib.keyframe_grid(path, round(float(from_ts) * self.fps), backend=backend)

    def decode_segment(
        self,
        episode: int,
        video_key: str,
        start: int,
        stop: int,
        backend: str = "auto",
        tolerance_s: float = video_lib.DEFAULT_TOLERANCE_S,
    ) -> np.ndarray:
        """Consecutive frames [start, stop) of one episode's camera, decoded sequentially."""
        if not 0 <= start < stop <= self.episode_length(episode):
            raise IndexError(
                f"{self.root}: episode {episode}: segment [{start}, {stop}) outside [0, {self.episode_length(episode)})"
            )
        if video_key in self.image_keys:
            return self.decode_images(episode, video_key, np.arange(start, stop))
        self._check_video_key(video_key)
        path, _ = self.video_location(episode, video_key)
        t0 = self.frame_timestamps(episode, [start], video_key)[0]
        return video_lib.decode_segment(
            path,
            t0,
            stop - start,
            backend=backend,
            tolerance_s=tolerance_s,
            context=f"episode {episode}, {video_key}",
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, version={self.version!r}, "
            f"episodes={self.num_episodes}, frames={self.total_frames}, videos={self.video_keys}"
            + (f", images={self.image_keys}" if self.image_keys else "")
            + ")"
        )
