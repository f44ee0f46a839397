"""Episodes one dataset already holds of another: the guard against appending a session twice.

Two episodes count as the same recording when they have the same number of rows and the same
values in every numeric data column both datasets have (state, action, ...), leaving out the
columns a merge renumbers or rewrites: index, episode_index, frame_index, timestamp and the columns
holding task-table indices (task_index, the language annotations; `plan.task_columns`).
Videos are not decoded: the numeric columns of a real recording already tell sessions apart.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa

from gr00t.data.dataset_ops.plan import task_columns
from gr00t.data.dataset_ops.source import SourceDataset

RENUMBERED_COLUMNS = frozenset({"index", "episode_index", "frame_index", "timestamp"})


def _is_numeric(kind: pa.DataType) -> bool:
    while pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        kind = kind.value_type
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)


def compared_columns(a: SourceDataset, b: SourceDataset) -> list[str]:
    """The numeric data columns both datasets hold, bookkeeping and task indices left out."""
    schema_b = b.data_schema()
    skip = (
        RENUMBERED_COLUMNS
        | set(task_columns(a.features, a.modality))
        | set(task_columns(b.features, b.modality))
    )
    return sorted(
        f.name
        for f in a.data_schema()
        if f.name not in skip
        and _is_numeric(f.type)
        and f.name in schema_b.names
        and schema_b.field(f.name).type == f.type
    )


def _values(column: pa.ChunkedArray) -> np.ndarray:
    array = column.combine_chunks()
    while isinstance(array, (pa.ListArray, pa.LargeListArray, pa.FixedSizeListArray)):
        array = array.flatten()
    return np.ascontiguousarray(array.to_numpy(zero_copy_only=False))


def episode_digests(source: SourceDataset, columns: list[str]) -> dict[int, bytes]:
    """Episode index → digest of its row count and its values in ``columns``."""
    out = {}
    for episode in source.reader.episode_indices:
        table = source.episode_table(episode)
        digest = hashlib.sha256(f"rows={table.num_rows}".encode())
        for name in columns:
            values = _values(table[name])
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
