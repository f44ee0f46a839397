"""LeRobot v3.0: many episodes per parquet/mp4 file, located through meta/episodes.

meta/episodes/chunk-XXX/file-XXX.parquet, one row per episode:
  episode_index, tasks (list of str), length, data/chunk_index, data/file_index,
  dataset_from_index, dataset_to_index, and per video key
  videos/<key>/chunk_index, videos/<key>/file_index, videos/<key>/from_timestamp, videos/<key>/to_timestamp
meta/tasks.parquet   task strings (the pandas index, or a `task` column) with a task_index column
info.json templates  data_path  (chunk_index, file_index)
                     video_path (video_key, chunk_index, file_index)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gr00t.data.lerobot.base import EpisodeRecord, LeRobotFormatError, LeRobotReader, task_strings

EPISODES_DIR = "meta/episodes"
TASKS_PATH = "meta/tasks.parquet"
REQUIRED_EPISODE_COLUMNS = ("episode_index", "length", "data/chunk_index", "data/file_index")


class LeRobotV3Reader(LeRobotReader):
    """Reader for `codebase_version` "v3.0"."""

    def _episodes_source(self) -> str:
        return str(self.root / EPISODES_DIR)

    def _load_tasks(self) -> dict[int, str]:
        import pandas as pd

        path = self.root / TASKS_PATH
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing")
        try:
            frame = pd.read_parquet(path)
        except (pa.ArrowInvalid, OSError) as err:
            raise LeRobotFormatError(f"{path}: unreadable parquet file: {err}") from err
        if "task_index" not in frame.columns:
            raise LeRobotFormatError(f"{path}: no 'task_index' column (columns: {list(frame.columns)})")
        names = frame["task"] if "task" in frame.columns else frame.index
        return {int(i): str(t) for i, t in zip(frame["task_index"], names)}

    def _load_episodes(self) -> list[EpisodeRecord]:
        folder = self.root / EPISODES_DIR
        files = sorted(folder.glob("*/*.parquet"))
        if not files:
            raise FileNotFoundError(
                f"{folder}: no episode metadata files (expected chunk-XXX/file-XXX.parquet)"
            )
        records = []
        for path in files:
            try:
                names = pq.read_schema(path).names
                wanted = [n for n in names if not n.startswith("stats/")]
                table = pq.read_table(path, columns=wanted)
            except (pa.ArrowInvalid, OSError) as err:
                raise LeRobotFormatError(f"{path}: unreadable parquet file: {err}") from err
            missing = [c for c in REQUIRED_EPISODE_COLUMNS if c not in wanted]
            for key in self.video_keys:
                missing += [
                    f"videos/{key}/{c}"
                    for c in ("chunk_index", "file_index", "from_timestamp")
                    if f"videos/{key}/{c}" not in wanted
                ]
            if missing:
                raise LeRobotFormatError(f"{path}: required column(s) {missing} are missing")
            cols = {n: table.column(n).to_pylist() for n in wanted}
            for row in range(table.num_rows):
                get = {n: cols[n][row] for n in wanted}
                records.append(self._record(get, path))
        return records

    def _record(self, row: dict, source: Path) -> EpisodeRecord:
        videos = {}
        for key in self.video_keys:
            prefix = f"videos/{key}/"
            videos[key] = {
                "chunk_index": int(row[prefix + "chunk_index"]),
                "file_index": int(row[prefix + "file_index"]),
                "from_timestamp": float(row[prefix + "from_timestamp"]),
                "to_timestamp": (
                    float(row[prefix + "to_timestamp"])
                    if row.get(prefix + "to_timestamp") is not None
                    else None
                ),
            }
        tasks = row.get("tasks") or []
        extra = {
            "data_chunk": int(row["data/chunk_index"]),
            "data_file": int(row["data/file_index"]),
            "from_index": None if row.get("dataset_from_index") is None else int(row["dataset_from_index"]),
            "to_index": None if row.get("dataset_to_index") is None else int(row["dataset_to_index"]),
            "videos": videos,
            "source": str(source),
        }
        layout = ("videos/", "data/", "meta/", "stats/", "dataset_from_index", "dataset_to_index")
        rec = EpisodeRecord(
            int(row["episode_index"]),
            int(row["length"]),
            task_strings(tasks),
            extra,
            fields={
                k: v
                for k, v in row.items()
                if k not in ("episode_index", "length", "tasks") and not k.startswith(layout)
            },
        )
        if extra["from_index"] is not None and extra["to_index"] is not None:
            if extra["to_index"] - extra["from_index"] != rec.length:
                raise LeRobotFormatError(
                    f"{source}: episode {rec.episode_index}: dataset_to_index - dataset_from_index = "
                    f"{extra['to_index'] - extra['from_index']} but length = {rec.length}"
                )
        return rec

    def data_path(self, episode: int) -> Path:
        extra = self.episode(episode).extra
        return self._format("data_path", chunk_index=extra["data_chunk"], file_index=extra["data_file"])

    def _episode_rows(self, episode: int) -> tuple[int, int]:
        rec = self.episode(episode)
        if "rows" in rec.extra:
            return rec.extra["rows"]
        path = self.data_path(episode)
        if "episode_index" in self._file_columns(path):
            marks = self._read_columns(path, ["episode_index"], rec.episode_index)["episode_index"]
            hits = np.flatnonzero(marks == rec.episode_index)
            if hits.size == 0:
                raise LeRobotFormatError(
                    f"{path}: no rows of episode {rec.episode_index} "
                    f"(meta/episodes points episode {rec.episode_index} to this file)"
                )
            start, stop = int(hits[0]), int(hits[-1]) + 1
            if stop - start != hits.size:
                raise LeRobotFormatError(f"{path}: rows of episode {rec.episode_index} are not contiguous")
        else:
            # Without an episode_index column, rows follow the global index of the file's first episode.
            base = min(
                r.extra["from_index"]
                for r in self._episodes.values()
                if (r.extra["data_chunk"], r.extra["data_file"])
                == (rec.extra["data_chunk"], rec.extra["data_file"])
            )
            start = rec.extra["from_index"] - base
            stop = start + rec.length
            if stop > pq.read_metadata(path).num_rows:
                raise LeRobotFormatError(f"{path}: too few rows for episode {rec.episode_index}")
        if stop - start != rec.length:
            raise LeRobotFormatError(
                f"{path}: episode {rec.episode_index} has {stop - start} rows, but {self._episodes_source()} "
                f"says length {rec.length}"
            )
        rec.extra["rows"] = (start, stop)
        return start, stop

    def video_location(self, episode: int, video_key: str) -> tuple[Path, float]:
        self._check_video_key(video_key)
        loc = self.episode(episode).extra["videos"][video_key]
        path = self._format(
            "video_path", video_key=video_key, chunk_index=loc["chunk_index"], file_index=loc["file_index"]
        )
        return path, loc["from_timestamp"]


__all__ = ["LeRobotV3Reader"]
