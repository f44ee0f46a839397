"""LeRobot v3.0 output: episodes packed into shared parquet and mp4 files, located through meta/episodes.

Files are planned per stream (the data, and each camera on its own):
- a v3.0 source file whose episodes all go to the output, consecutively and in order, becomes one
  output file of its own; its video is carried over byte for byte (timestamps unchanged), its data
  too when the renumbered rows are unchanged;
- every other episode (from v2.1 inputs, or a subset of a v3.0 file) is packed with its neighbours
  up to `data_files_size_in_mb` / `video_files_size_in_mb`; a camera file only packs pieces whose
  codec parameters agree, and its pieces are stream-copied (see video_remux.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from gr00t.data.dataset_ops.plan import OutEpisode, Plan
from gr00t.data.dataset_ops.publish import place_file
from gr00t.data.dataset_ops.stats_rewrite import to_json
from gr00t.data.dataset_ops.video_remux import Piece, concat_pieces, stream_signature
from gr00t.data.dataset_ops.writer import (
    DEFAULT_DATA_FILE_MB,
    DEFAULT_VIDEO_FILE_MB,
    EpisodeRows,
    WriteOptions,
    WriteReport,
    base_info,
    same_table,
    write_common_meta,
    write_json,
)

DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
MB = 1024 * 1024


@dataclass
class FileGroup:
    episodes: list[OutEpisode]
    whole_source: Path | None  # the v3.0 source file these episodes fill exactly, in order


def _stream_file(plan: Plan, episode: OutEpisode, key: str | None) -> Path:
    src = plan.sources[episode.source]
    if key is None:
        return src.data_file(episode.source_episode)
    return src.video(episode.source_episode, key).path


def plan_files(plan: Plan, key: str | None, limit_mb: float) -> list[FileGroup]:
    """Output files of one stream (`key` None = data, else a camera), in output order."""
    members: dict[tuple[int, Path], list[int]] = {}
    sizes: dict[tuple[int, Path], int] = {}
    for i, src in enumerate(plan.sources):
        for ep in src.reader.episode_indices:
            file = _stream_file(plan, OutEpisode(0, i, ep, 0, 0, ()), key)
            members.setdefault((i, file), []).append(ep)
            sizes[(i, file)] = sizes.get((i, file), 0) + src.reader.episode_length(ep)
    groups: list[FileGroup] = []
    current: list[OutEpisode] = []
    current_bytes, current_sig = 0.0, None
    i = 0
    while i < len(plan.episodes):
        e = plan.episodes[i]
        file = _stream_file(plan, e, key)
        whole = members[(e.source, file)]
        run = [x.source_episode for x in plan.episodes[i : i + len(whole)] if x.source == e.source]
        if plan.sources[e.source].version == "v3.0" and run == whole:
            if current:
                groups.append(FileGroup(current, None))
                current, current_bytes, current_sig = [], 0.0, None
            groups.append(FileGroup(plan.episodes[i : i + len(whole)], file))
            i += len(whole)
            continue
        estimate = file.stat().st_size * e.length / max(sizes[(e.source, file)], 1)
        signature = stream_signature(file) if key is not None else None
        if current and (current_bytes + estimate > limit_mb * MB or signature != current_sig):
            groups.append(FileGroup(current, None))
            current, current_bytes = [], 0.0
        current.append(e)
        current_bytes += estimate
        current_sig = signature
        i += 1
    if current:
        groups.append(FileGroup(current, None))
    return groups


def _write_data(
    root: Path,
    plan: Plan,
    rows: EpisodeRows,
    options: WriteOptions,
    report: WriteReport,
    chunks: int,
    limit: float,
) -> dict[int, tuple[int, int]]:
    where: dict[int, tuple[int, int]] = {}
    for n, group in enumerate(plan_files(plan, None, limit)):
        chunk, file_index = divmod(n, chunks)
        path = root / DATA_PATH.format(chunk_index=chunk, file_index=file_index)
        table = pa.concat_tables(list(rows.tables(group.episodes)))
        source = group.episodes[0].source
        if group.whole_source is not None and same_table(table, group.whole_source, rows, source):
            place_file(group.whole_source, path, options.link)
            report.files_reused += 1
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path)
            report.data_files_written += 1
        for e in group.episodes:
            where[e.index] = (chunk, file_index)
    return where


def _write_videos(
    root: Path, plan: Plan, key: str, options: WriteOptions, report: WriteReport, chunks: int, limit: float
) -> dict[int, dict]:
    where: dict[int, dict] = {}
    codecs: dict[str, Path] = {}
    for n, group in enumerate(plan_files(plan, key, limit)):
        chunk, file_index = divmod(n, chunks)
        path = root / VIDEO_PATH.format(video_key=key, chunk_index=chunk, file_index=file_index)
        refs = [plan.sources[e.source].video(e.source_episode, key) for e in group.episodes]
        if group.whole_source is not None and not options.reencode:
            place_file(group.whole_source, path, options.link)
            report.files_reused += 1
            spans = [
                (r.from_ts, r.to_ts if r.to_ts is not None else r.from_ts + e.length / plan.fps)
                for r, e in zip(refs, group.episodes)
            ]
        else:
            pieces = [
                Piece(
                    r.path,
                    r.from_ts,
                    r.to_ts,
                    plan.sources[e.source].reader.frame_timestamps(e.source_episode, range(e.length), key)
                    - r.from_ts,
                )
                for r, e in zip(refs, group.episodes)
            ]
            result = concat_pieces(path, pieces, plan.fps, verify=options.verify, reencode=options.reencode)
            if result.reencoded:
                report.videos_reencoded.append(f"{path.relative_to(root)}: {result.reencoded}")
            else:
                report.videos_stream_copied += 1
            spans = [(p.from_ts, p.to_ts) for p in result.placed]
        codecs.setdefault(stream_signature(path)[0], path.relative_to(root))
        for e, (start, stop) in zip(group.episodes, spans):
            where[e.index] = {
                "chunk_index": chunk,
                "file_index": file_index,
                "from_timestamp": start,
                "to_timestamp": stop,
            }
    if len(codecs) > 1:
        report.notes.append(
            f"{key}: the inputs' videos use different codecs {sorted(codecs)}, kept in separate files "
            "(not re-encoded); info.json describes the first input's"
        )
    return where


def _episode_rows(plan: Plan, rows: EpisodeRows, data: dict, videos: dict) -> list[dict]:
    out = []
    for e in plan.episodes:
        chunk, file_index = data[e.index]
        row = {
            "episode_index": e.index,
            "tasks": list(e.tasks),
            "length": e.length,
            "data/chunk_index": chunk,
            "data/file_index": file_index,
            "dataset_from_index": e.first_frame,
            "dataset_to_index": e.first_frame + e.length,
        }
        for key in plan.video_keys:
            for name, value in videos[key][e.index].items():
                row[f"videos/{key}/{name}"] = value
        for feature, stats in to_json(rows.episode_stats[e.index]).items():
            for name, value in stats.items():
                row[f"stats/{feature}/{name}"] = value
        row.update(plan.sources[e.source].episode_extra.get(e.source_episode, {}))
        out.append(row)
    return out


def _write_episodes(root: Path, rows: list[dict], limit_mb: float, chunks: int) -> None:
    names = list(dict.fromkeys(k for r in rows for k in r))  # union of keys, first-seen order
    table = pa.table({k: [r.get(k) for r in rows] for k in names})
    parts = max(1, -(-table.nbytes // int(limit_mb * MB)))
    per = -(-len(rows) // parts)
    for n, start in enumerate(range(0, len(rows), per)):
        chunk, file_index = divmod(n, chunks)
        part = table.slice(start, per)
        part = part.append_column("meta/episodes/chunk_index", pa.array([chunk] * part.num_rows, pa.int64()))
        part = part.append_column(
            "meta/episodes/file_index", pa.array([file_index] * part.num_rows, pa.int64())
        )
        path = root / EPISODES_PATH.format(chunk_index=chunk, file_index=file_index)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(part, path)


def write(root: Path, plan: Plan, rows: EpisodeRows, options: WriteOptions, report: WriteReport) -> None:
    info = base_info(plan)
    first_v3 = next((s.info for s in plan.sources if s.version == "v3.0"), {})
    data_mb = float(first_v3.get("data_files_size_in_mb", DEFAULT_DATA_FILE_MB))
    video_mb = float(first_v3.get("video_files_size_in_mb", DEFAULT_VIDEO_FILE_MB))
    chunks = info["chunks_size"]
    data = _write_data(root, plan, rows, options, report, chunks, data_mb)
    videos = {
        key: _write_videos(root, plan, key, options, report, chunks, video_mb) for key in plan.video_keys
    }
    write_common_meta(root, plan, rows, report)
    _write_episodes(root, _episode_rows(plan, rows, data, videos), data_mb, chunks)
    tasks = pd.DataFrame({"task_index": range(len(plan.tasks))}, index=pd.Index(plan.tasks))
    tasks.to_parquet(root / "meta/tasks.parquet")
    info.update(
        data_files_size_in_mb=first_v3.get("data_files_size_in_mb", DEFAULT_DATA_FILE_MB),
        video_files_size_in_mb=first_v3.get("video_files_size_in_mb", DEFAULT_VIDEO_FILE_MB),
        data_path=DATA_PATH,
        video_path=VIDEO_PATH if plan.video_keys else None,
        features=plan.features,
    )
    write_json(root / "meta/info.json", info)
