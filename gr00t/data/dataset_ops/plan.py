"""What an output dataset will hold: checked inputs, the task table, and the renumbered episodes.

Rules (shared by merge, append and split):
- every input has the same fps and the same features (dtype, shape and names; a video's codec
  details may differ), the same robot_type when both name one, and the same `meta/modality.json`
  when both have one (an input without one adopts the other's);
- output version: v3.0 when any input is v3.0, else v2.1 (v2.0 inputs are written as v2.1);
- tasks: the union of the input task tables in input order (so the first input keeps its task
  indices); `task_index` and every language column (`annotation.*`, or a column named by
  modality.json's `annotation` section) are remapped into it;
- episodes: numbered 0..N-1 in input order (each input's episodes ascending), the global `index`
  counts frames from 0 across the output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from gr00t.data.dataset_ops.source import DatasetOpsError, SourceDataset
from gr00t.data.modality import parse_modality

VIDEO_DETAIL_KEY = "info"  # per-feature video details (codec, pix_fmt, ...) that may differ


@dataclass(frozen=True)
class OutEpisode:
    """One output episode and where it comes from."""

    index: int
    source: int  # position in the plan's `sources`
    source_episode: int
    length: int
    first_frame: int  # global `index` of its first frame
    tasks: tuple[str, ...]


@dataclass
class Plan:
    """A fully checked description of one output dataset."""

    sources: list[SourceDataset]
    version: str
    fps: float
    features: dict
    robot_type: str | None
    modality: dict | None
    tasks: list[str]
    task_maps: list[dict[int, int]]  # per source: old task_index -> new
    task_columns: list[str]
    episodes: list[OutEpisode]

    @property
    def total_frames(self) -> int:
        return sum(e.length for e in self.episodes)

    @property
    def video_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f.get("dtype") == "video"]


def _strip_video_details(features: dict) -> dict:
    return {k: {n: v for n, v in f.items() if n != VIDEO_DETAIL_KEY} for k, f in features.items()}


def check_compatible(sources: list[SourceDataset]) -> tuple[float, dict, str | None, dict | None]:
    """(fps, features, robot_type, modality) shared by all inputs, or a DatasetOpsError naming the file."""
    first = sources[0]
    info0 = first.root / "meta/info.json"
    features0 = _strip_video_details(first.features)
    robot_type = first.info.get("robot_type")
    modality = None
    modality_from = None
    for src in sources:
        info = src.root / "meta/info.json"
        if src.fps != first.fps:
            raise DatasetOpsError(
                f"{info}: fps {src.info['fps']} differs from {info0}: fps {first.info['fps']}"
            )
        features = _strip_video_details(src.features)
        if features != features0:
            diff = sorted(k for k in set(features) | set(features0) if features.get(k) != features0.get(k))
            key = diff[0]
            raise DatasetOpsError(
                f"{info}: feature {key!r} is {features.get(key)} but {info0} has {features0.get(key)} "
                f"(all inputs need the same features; differing: {diff})"
            )
        other = src.info.get("robot_type")
        if robot_type and other and other != robot_type:
            raise DatasetOpsError(f"{info}: robot_type {other!r} differs from {info0}: {robot_type!r}")
        robot_type = robot_type or other
        if src.modality is not None:
            if modality is None:
                modality, modality_from = src.modality, src.root / "meta/modality.json"
            elif src.modality != modality:
                path = src.root / "meta/modality.json"
                diff = sorted(
                    k for k in set(modality) | set(src.modality) if modality.get(k) != src.modality.get(k)
                )
                raise DatasetOpsError(
                    f"{path} differs from {modality_from} in section(s) {diff}; "
                    "the inputs must describe their columns the same way"
                )
    return first.fps, first.features, robot_type, modality


def task_columns(features: dict, modality: dict | None) -> list[str]:
    """Integer columns holding task-table indices: task_index and the language annotation columns."""
    names = {"task_index"} | {k for k in features if k.startswith("annotation.")}
    if modality is not None:
        names |= {a.original_key for a in parse_modality(modality).annotation.values()}
    integer = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
    return sorted(n for n in names if features.get(n, {}).get("dtype") in integer)


def union_tasks(sources: list[SourceDataset]) -> tuple[list[str], list[dict[int, int]]]:
    """Union of the task tables (input order, then task_index order) and each input's index map."""
    tasks: list[str] = []
    position: dict[str, int] = {}
    maps = []
    for src in sources:
        mapping = {}
        for old, text in sorted(src.reader.tasks.items()):
            if text not in position:
                position[text] = len(tasks)
                tasks.append(text)
            mapping[old] = position[text]
        maps.append(mapping)
    return tasks, maps


def make_plan(
    sources: list[SourceDataset], selections: list[list[int]] | None = None, version: str | None = None
) -> Plan:
    """Plan an output holding `selections[i]` (default: all) episodes of `sources[i]`, in that order."""
    if not sources:
        raise DatasetOpsError("no input datasets given")
    fps, features, robot_type, modality = check_compatible(sources)
    if version is None:
        version = "v3.0" if any(s.version == "v3.0" for s in sources) else "v2.1"
    tasks, maps = union_tasks(sources)
    episodes: list[OutEpisode] = []
    frame = 0
    for i, src in enumerate(sources):
        chosen = src.reader.episode_indices if selections is None else selections[i]
        for ep in chosen:
            length = src.reader.episode_length(ep)
            episodes.append(
                OutEpisode(len(episodes), i, ep, length, frame, tuple(src.reader.episode_tasks(ep)))
            )
            frame += length
    if not episodes:
        raise DatasetOpsError("the output would hold no episodes")
    return Plan(
        sources=sources,
        version=version,
        fps=fps,
        features=features,
        robot_type=robot_type,
        modality=modality,
        tasks=tasks,
        task_maps=maps,
        task_columns=task_columns(features, modality),
        episodes=episodes,
    )


def _remap(column: pa.ChunkedArray, mapping: dict[int, int], where: str) -> pa.Array:
    values = np.asarray(column.to_numpy(), dtype=np.int64)
    uniq, inverse = np.unique(values, return_inverse=True)
    unknown = [int(u) for u in uniq if int(u) not in mapping]
    if unknown:
        raise DatasetOpsError(f"{where}: value {unknown[0]} is not a task_index of the dataset's task table")
    return pa.array(np.asarray([mapping[int(u)] for u in uniq], np.int64)[inverse])


def renumber_table(table: pa.Table, plan: Plan, episode: OutEpisode, where: str) -> pa.Table:
    """The episode's rows with episode_index, index and the task columns rewritten for the output."""
    n = table.num_rows
    names = table.column_names
    updates = {}
    if "episode_index" in names:
        updates["episode_index"] = pa.array(np.full(n, episode.index, np.int64))
    if "index" in names:
        updates["index"] = pa.array(np.arange(episode.first_frame, episode.first_frame + n, dtype=np.int64))
    mapping = plan.task_maps[episode.source]
    for col in plan.task_columns:
        if col in names:
            updates[col] = _remap(table.column(col), mapping, f"{where}: column {col!r}")
    for col, values in updates.items():
        i = names.index(col)
        table = table.set_column(i, table.schema.field(i), values.cast(table.schema.field(i).type))
    return table


def conform(table: pa.Table, schema: pa.Schema, where: str) -> pa.Table:
    """Reorder and cast `table` to `schema` (e.g. list<float> to fixed_size_list<float>[7])."""
    missing = [n for n in schema.names if n not in table.column_names]
    extra = [n for n in table.column_names if n not in schema.names]
    if missing or extra:
        raise DatasetOpsError(
            f"{where}: columns differ from the first input's data files (missing {missing}, extra {extra})"
        )
    table = table.select(schema.names)
    if table.schema.equals(schema, check_metadata=False):
        return table.replace_schema_metadata(schema.metadata)
    try:
        return table.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise DatasetOpsError(f"{where}: cannot convert columns to the first input's types: {err}") from err
