"""Write a planned output dataset (LeRobot v2.1 or v3.0) into an empty folder.

The version-specific file layouts live in `layout_v21.py` and `layout_v30.py`; this module holds
what both share: options, the report, the renumbered rows of each output episode, and the
metadata files common to both versions (stats.json, modality.json, info.json basics).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from gr00t import atomic
from gr00t.data.dataset_ops.plan import OutEpisode, Plan, conform, renumber_table
from gr00t.data.dataset_ops.source import MODALITY_FILE, STATS_FILE
from gr00t.data.dataset_ops.stats_rewrite import OutputStats, quantile_keys, to_json

DEFAULT_CHUNKS_SIZE = 1000
DEFAULT_DATA_FILE_MB = 100
DEFAULT_VIDEO_FILE_MB = 200
# info.json keys the writer sets itself; any other key of the first input is carried over.
INFO_KEYS = {
    "codebase_version",
    "robot_type",
    "total_episodes",
    "total_frames",
    "total_tasks",
    "total_videos",
    "total_chunks",
    "chunks_size",
    "data_files_size_in_mb",
    "video_files_size_in_mb",
    "fps",
    "splits",
    "data_path",
    "video_path",
    "features",
}


@dataclass
class WriteOptions:
    link: bool = False  # hard-link unchanged files (append: they belong to the dataset being replaced)
    verify: bool = True  # decode the ends of every copied video piece and compare with the source
    reencode: bool = False  # re-encode videos instead of copying their streams


@dataclass
class WriteReport:
    version: str = ""
    episodes: int = 0
    frames: int = 0
    tasks: int = 0
    files_reused: int = 0  # data/video files carried over byte for byte
    data_files_written: int = 0
    videos_stream_copied: int = 0
    videos_reencoded: list[str] = field(default_factory=list)  # "<file>: <reason>"
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [
            f"{self.version}: {self.episodes} episodes, {self.frames} frames, {self.tasks} tasks",
            f"files reused byte for byte: {self.files_reused}; data files rewritten: {self.data_files_written}; "
            f"videos stream-copied (no re-encoding): {self.videos_stream_copied}; re-encoded: {len(self.videos_reencoded)}",
        ]
        out += [f"re-encoded {r}" for r in self.videos_reencoded]
        out += [f"note: {n}" for n in self.notes]
        return out


class EpisodeRows:
    """Renumbered rows of each output episode, with their statistics collected on the way."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.schema = plan.sources[0].data_schema()
        self.stats = OutputStats(
            plan.features,
            quantile_keys(
                [s.stats for s in plan.sources]
                + [e for s in plan.sources for e in list(s.episode_stats.values())[:1]]
            ),
        )
        self.episode_stats: dict[int, dict] = {}

    def table(self, episode: OutEpisode) -> pa.Table:
        src = self.plan.sources[episode.source]
        where = f"{src.data_file(episode.source_episode)}: episode {episode.source_episode}"
        table = renumber_table(src.episode_table(episode.source_episode), self.plan, episode, where)
        table = conform(table, self.schema, where)
        if episode.index not in self.episode_stats:
            carried = src.episode_stats.get(episode.source_episode)
            self.episode_stats[episode.index] = self.stats.add_episode(table, carried, where)
        return table

    def tables(self, episodes: list[OutEpisode]) -> Iterator[pa.Table]:
        for episode in episodes:
            yield self.table(episode)


def same_table(table: pa.Table, path: Path, rows: EpisodeRows, source: int) -> bool:
    """Whether the source parquet file at `path` holds exactly `table` (then it is reused as is)."""
    return rows.plan.sources[source].holds_file(path, table)


def write_json(path: Path, data) -> None:
    atomic.write_json(path, data, indent=4, newline=True)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    atomic.write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def base_info(plan: Plan) -> dict:
    """info.json fields both versions share, plus unknown keys carried from the first input."""
    first = plan.sources[0].info
    info = {
        "codebase_version": plan.version,
        "robot_type": plan.robot_type,
        "total_episodes": len(plan.episodes),
        "total_frames": plan.total_frames,
        "total_tasks": len(plan.tasks),
        "chunks_size": int(first.get("chunks_size", DEFAULT_CHUNKS_SIZE)),
        "fps": first["fps"],
        "splits": {"train": f"0:{len(plan.episodes)}"},
    }
    extra = {k: v for k, v in first.items() if k not in INFO_KEYS}
    return {**info, **extra}


def write_common_meta(root: Path, plan: Plan, rows: EpisodeRows, report: WriteReport) -> None:
    """stats.json (recomputed, see stats_rewrite.py) and modality.json."""
    stats = rows.stats.finish()
    write_json(root / STATS_FILE, to_json(stats))
    for name in rows.stats.dropped:
        report.notes.append(
            f"{name}: some input episodes carry no per-episode statistics for it, so the output has none "
            "(LeRobot computes them from sampled frames when recording)"
        )
    if plan.modality is not None:
        write_json(root / MODALITY_FILE, plan.modality)
        if any(s.modality is None for s in plan.sources):
            missing = [str(s.root) for s in plan.sources if s.modality is None]
            report.notes.append(f"meta/modality.json taken from the other inputs for {missing}")
    report.version = plan.version
    report.episodes = len(plan.episodes)
    report.frames = plan.total_frames
    report.tasks = len(plan.tasks)


def write_dataset(root: Path, plan: Plan, options: WriteOptions) -> WriteReport:
    """Write `plan` into the empty folder `root`."""
    from gr00t.data.dataset_ops import layout_v21, layout_v30

    report = WriteReport()
    rows = EpisodeRows(plan)
    layout = layout_v30 if plan.version == "v3.0" else layout_v21
    layout.write(root, plan, rows, options, report)
    return report
