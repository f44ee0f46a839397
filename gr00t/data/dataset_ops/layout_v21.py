"""LeRobot v2.1 output: one parquet file and one mp4 per camera for every episode.

Videos are per-episode files, so they are always carried over byte for byte (never re-encoded).
A data file whose renumbered rows equal the source file is carried over too.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from gr00t.data.dataset_ops.plan import Plan
from gr00t.data.dataset_ops.publish import place_file
from gr00t.data.dataset_ops.source import EPISODES_STATS_FILE
from gr00t.data.dataset_ops.stats_rewrite import to_json
from gr00t.data.dataset_ops.writer import (
    EpisodeRows,
    WriteOptions,
    WriteReport,
    base_info,
    same_table,
    write_common_meta,
    write_json,
    write_jsonl,
)

DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"


def write(root: Path, plan: Plan, rows: EpisodeRows, options: WriteOptions, report: WriteReport) -> None:
    info = base_info(plan)
    chunks = info["chunks_size"]
    for episode in plan.episodes:
        src = plan.sources[episode.source]
        chunk = episode.index // chunks
        table = rows.table(episode)
        path = root / DATA_PATH.format(episode_chunk=chunk, episode_index=episode.index)
        src_path = src.data_file(episode.source_episode)
        if same_table(table, src_path, rows, episode.source):
            place_file(src_path, path, options.link)
            report.files_reused += 1
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path)
            report.data_files_written += 1
        for key in plan.video_keys:
            ref = src.video(episode.source_episode, key)
            dst = root / VIDEO_PATH.format(episode_chunk=chunk, video_key=key, episode_index=episode.index)
            place_file(ref.path, dst, options.link)
            report.files_reused += 1
    write_common_meta(root, plan, rows, report)
    write_jsonl(
        root / "meta/episodes.jsonl",
        [
            {
                "episode_index": e.index,
                "tasks": list(e.tasks),
                "length": e.length,
                **plan.sources[e.source].episode_extra.get(e.source_episode, {}),
            }
            for e in plan.episodes
        ],
    )
    write_jsonl(root / "meta/tasks.jsonl", [{"task_index": i, "task": t} for i, t in enumerate(plan.tasks)])
    write_jsonl(
        root / EPISODES_STATS_FILE,
        [{"episode_index": e.index, "stats": to_json(rows.episode_stats[e.index])} for e in plan.episodes],
    )
    n = len(plan.episodes)
    info.update(
        total_videos=n * len(plan.video_keys),
        total_chunks=(n - 1) // chunks + 1,
        data_path=DATA_PATH,
        video_path=VIDEO_PATH if plan.video_keys else None,
        features=plan.features,
    )
    write_json(root / "meta/info.json", info)
