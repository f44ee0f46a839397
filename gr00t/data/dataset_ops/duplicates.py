"""Episodes one dataset already holds of another: the guard against appending a session twice.

Two episodes count as the same recording when they have the same number of rows and the same
values in every numeric data column both datasets have (state, action, ...), leaving out the
columns a merge renumbers or rewrites: index, episode_index, frame_index, timestamp and the columns
holding task-table indices (task_index, the language annotations; `plan.task_columns`).
Videos are not decoded: the numeric columns of a real recording already tell sessions apart.
"""

from __future__ import annotations

import hashlib

from gr00t.data.dataset_ops.plan import task_columns
from gr00t.data.dataset_ops.source import SourceDataset
from gr00t.data.dataset_ops.stats_rewrite import numeric_features
from gr00t.data.lerobot.base import column_to_numpy

RENUMBERED_COLUMNS = frozenset({"index", "episode_index", "frame_index", "timestamp"})


def compared_columns(a: SourceDataset, b: SourceDataset) -> list[str]:
    """The numeric features (`stats_rewrite.numeric_features`) both datasets hold with the same dtype
    and shape, bookkeeping and task indices left out."""
    skip = (
        RENUMBERED_COLUMNS
        | set(task_columns(a.features, a.modality))
        | set(task_columns(b.features, b.modality))
    )
    return sorted(
        name
        for name in numeric_features(a.features)
        if name not in skip and name in b.features and _kind(a.features[name]) == _kind(b.features[name])
    )


def _kind(feature: dict) -> tuple:
    return feature.get("dtype"), feature.get("shape")


def episode_digests(source: SourceDataset, columns: list[str]) -> dict[int, bytes]:
    """Episode index → digest of its row count and its values in ``columns``."""
    out = {}
    for episode in source.reader.episode_indices:
        table = source.episode_table(episode)
        digest = hashlib.sha256(f"rows={table.num_rows}".encode())
        for name in columns:
            values = column_to_numpy(table.column(name), f"{source.root}: column {name!r}")
            digest.update(f"|{name}:{values.dtype}:{values.shape}|".encode())
            digest.update(values.tobytes())
        out[int(episode)] = digest.digest()
    return out


def repeated_episodes(base: SourceDataset, new: SourceDataset) -> tuple[list[tuple[int, int]], list[str]]:
    """``(new episode, base episode)`` pairs holding the same recording, and the columns compared
    (no pairs when the datasets share no numeric data column)."""
    columns = compared_columns(base, new)
    if not columns:
        return [], columns
    known: dict[bytes, int] = {}
    for episode, digest in episode_digests(base, columns).items():
        known.setdefault(digest, episode)
    pairs = [(ep, known[d]) for ep, d in episode_digests(new, columns).items() if d in known]
    return pairs, columns
