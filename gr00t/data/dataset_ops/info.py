"""`gr00t-dataset info`: what a LeRobot dataset holds, read from its metadata (videos are not decoded)."""

from __future__ import annotations

from pathlib import Path

from gr00t.data.dataset_ops.source import (
    EPISODES_STATS_FILE,
    MODALITY_FILE,
    RELATIVE_STATS_FILE,
    STATS_FILE,
    open_source,
)
from gr00t.data.dataset_ops.video_remux import keyframe_interval, stream_signature


def dataset_summary(root: str | Path) -> dict:
    """A JSON-ready summary: version, counts, fps, features, tasks, statistics present, video codecs."""
    src = open_source(root, allow_empty=True)
    reader = src.reader
    videos = {}
    for key in reader.video_keys if reader.num_episodes else []:
        first = reader.episode_indices[0]
        path = src.video(first, key).path
        codec, width, height, pix_fmt, _ = stream_signature(path)
        files = {str(src.video(ep, key).path) for ep in reader.episode_indices}
        videos[key] = {
            "codec": codec,
            "width": width,
            "height": height,
            "pix_fmt": pix_fmt,
            "gop": keyframe_interval(path),
            "files": len(files),
        }
    lengths = list(reader.episode_lengths.values()) or [0]
    with_stats = len(src.episode_stats)
    return {
        "root": str(src.root),
        "version": reader.version,
        "robot_type": src.info.get("robot_type"),
        "fps": reader.fps,
        "episodes": reader.num_episodes,
        "frames": reader.total_frames,
        "episode_length": {"min": min(lengths), "max": max(lengths)},
        "tasks": [reader.tasks[i] for i in sorted(reader.tasks)],
        "features": {
            k: {"dtype": f.get("dtype"), "shape": list(f.get("shape") or [])}
            for k, f in reader.features.items()
        },
        "videos": videos,
        "stats": {
            STATS_FILE: src.stats is not None,
            "episode stats": f"{with_stats}/{reader.num_episodes} episodes"
            + (f" ({EPISODES_STATS_FILE})" if src.version == "v2.1" else " (meta/episodes stats/ columns)"),
            RELATIVE_STATS_FILE: (src.relative_stats or {}).get("embodiment")
            if src.relative_stats
            else False,
        },
        "modality": (src.root / MODALITY_FILE).is_file(),
    }


def format_summary(summary: dict) -> str:
    """Human-readable lines of `dataset_summary`."""
    lines = [
        f"{summary['root']}: LeRobot {summary['version']}, robot_type {summary['robot_type']}",
        f"  episodes {summary['episodes']}, frames {summary['frames']} "
        f"(episode length {summary['episode_length']['min']}..{summary['episode_length']['max']}), "
        f"fps {summary['fps']:g}",
        f"  tasks ({len(summary['tasks'])}):",
    ]
    lines += [f"    {i}: {t}" for i, t in enumerate(summary["tasks"])]
    lines.append(f"  features ({len(summary['features'])}):")
    for key, feature in summary["features"].items():
        lines.append(f"    {key}: {feature['dtype']} {feature['shape']}")
        video = summary["videos"].get(key)
        if video:
            gop = video["gop"] if video["gop"] is not None else "?"
            lines.append(
                f"      video {video['codec']} {video['width']}x{video['height']} {video['pix_fmt']}, "
                f"keyframe every {gop} frame(s), {video['files']} file(s)"
            )
    stats = summary["stats"]
    lines.append("  statistics:")
    for name, value in stats.items():
        shown = "present" if value is True else ("absent" if value is False else value)
        if name == RELATIVE_STATS_FILE and isinstance(value, str):
            shown = f"present (embodiment {value})"
        lines.append(f"    {name}: {shown}")
    lines.append(f"  meta/modality.json: {'present' if summary['modality'] else 'absent'}")
    return "\n".join(lines)
