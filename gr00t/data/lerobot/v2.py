"""LeRobot v2.0 / v2.1: one parquet file and one mp4 per camera for every episode.

meta/episodes.jsonl  {"episode_index", "tasks": [str], "length"}
meta/tasks.jsonl     {"task_index", "task"}
info.json templates  data_path  (episode_chunk, episode_index)
                     video_path (episode_chunk, video_key, episode_index)
with episode_chunk = episode_index // chunks_size.
"""

from __future__ import annotations

from pathlib import Path

from gr00t.data.lerobot.base import EpisodeRecord, LeRobotFormatError, LeRobotReader, read_jsonl, task_strings

EPISODES_PATH = "meta/episodes.jsonl"
TASKS_PATH = "meta/tasks.jsonl"
DEFAULT_CHUNKS_SIZE = 1000


class LeRobotV2Reader(LeRobotReader):
    """Reader for `codebase_version` "v2.0" and "v2.1"."""

    def _episodes_source(self) -> str:
        return str(self.root / EPISODES_PATH)

    def _load_tasks(self) -> dict[int, str]:
        path = self.root / TASKS_PATH
        tasks = {}
        for row in read_jsonl(path):
            if "task_index" not in row or "task" not in row:
                raise LeRobotFormatError(f"{path}: every line needs 'task_index' and 'task', got {row}")
            tasks[int(row["task_index"])] = str(row["task"])
        return tasks

    def _load_episodes(self) -> list[EpisodeRecord]:
        path = self.root / EPISODES_PATH
        records = []
        for row in read_jsonl(path):
            if "episode_index" not in row or "length" not in row:
                raise LeRobotFormatError(f"{path}: every line needs 'episode_index' and 'length', got {row}")
            tasks = row.get("tasks", [])
            records.append(
                EpisodeRecord(
                    int(row["episode_index"]),
                    int(row["length"]),
                    task_strings(tasks),
                    fields={k: v for k, v in row.items() if k not in ("episode_index", "length", "tasks")},
                )
            )
        return records

    @property
    def chunks_size(self) -> int:
        return int(self.info.get("chunks_size", DEFAULT_CHUNKS_SIZE))

    def data_path(self, episode: int) -> Path:
        ep = self.episode(episode).episode_index
        return self._format("data_path", episode_chunk=ep // self.chunks_size, episode_index=ep)

    def _episode_rows(self, episode: int) -> tuple[int, int]:
        rec = self.episode(episode)
        if "rows" not in rec.extra:
            path = self.data_path(episode)
            cols = self._file_columns(path)
            if "episode_index" in cols:
                marks = self._read_columns(path, ["episode_index"], episode)["episode_index"]
                if len(marks) and (marks.min() != rec.episode_index or marks.max() != rec.episode_index):
                    raise LeRobotFormatError(
                        f"{path}: holds rows of episode(s) {sorted(set(marks.tolist()))[:5]}, expected only "
                        f"episode {rec.episode_index}"
                    )
                rows = len(marks)
            else:
                import pyarrow.parquet as pq

                rows = pq.read_metadata(path).num_rows
            if rows != rec.length:
                raise LeRobotFormatError(
                    f"{path}: episode {rec.episode_index} has {rows} rows, but {self._episodes_source()} "
                    f"says length {rec.length}"
                )
            rec.extra["rows"] = (0, rows)
        return rec.extra["rows"]

    def video_location(self, episode: int, video_key: str) -> tuple[Path, float]:
        ep = self.episode(episode).episode_index
        self._check_video_key(video_key)
        path = self._format(
            "video_path", episode_chunk=ep // self.chunks_size, video_key=video_key, episode_index=ep
        )
        return path, 0.0
