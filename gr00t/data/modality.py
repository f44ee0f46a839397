"""meta/modality.json: GR00T's named view of a LeRobot dataset's columns.

    {"state":  {"arm": {"start": 0, "end": 6}, "gripper": {"start": 6, "end": 7}},
     "action": {"arm": {"start": 0, "end": 6, "absolute": false}, ...},
     "video":  {"front": {"original_key": "observation.images.front"}},
     "annotation": {"human.task_description": {}}}

State/action entries slice a vector column (`original_key`, default "observation.state" /
"action") and may carry `rotation_type`, `absolute`, `dtype`. Video entries rename a video
feature. Annotation entries name a parquet column of task-table indices (`original_key`,
default "annotation.<name>"; "task_index" is common too).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gr00t import atomic

MODALITY_PATH = "meta/modality.json"
DEFAULT_ORIGINAL_KEYS = {"state": "observation.state", "action": "action"}
SLICE_FIELDS = {"start", "end", "original_key", "absolute", "rotation_type", "dtype", "range"}

MODALITY_EXAMPLE = """{
  "state":  {"arm": {"start": 0, "end": 6}, "gripper": {"start": 6, "end": 7}},
  "action": {"arm": {"start": 0, "end": 6}, "gripper": {"start": 6, "end": 7, "absolute": true}},
  "video":  {"front": {"original_key": "observation.images.front"}},
  "annotation": {"human.task_description": {"original_key": "task_index"}}
}"""


class ModalityError(ValueError):
    """meta/modality.json is malformed or disagrees with the dataset."""


@dataclass(frozen=True)
class ArraySlice:
    """Columns [start, end) of the vector column `original_key`."""

    name: str
    original_key: str
    start: int
    end: int
    absolute: bool | None = None
    rotation_type: str | None = None
    dtype: str | None = None

    @property
    def width(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class VideoEntry:
    name: str
    original_key: str


@dataclass(frozen=True)
class AnnotationEntry:
    name: str
    original_key: str


@dataclass(frozen=True)
class Modality:
    """Parsed meta/modality.json."""

    state: dict[str, ArraySlice] = field(default_factory=dict)
    action: dict[str, ArraySlice] = field(default_factory=dict)
    video: dict[str, VideoEntry] = field(default_factory=dict)
    annotation: dict[str, AnnotationEntry] = field(default_factory=dict)
    source: str = ""

    def group(self, modality: str) -> dict:
        if modality not in ("state", "action", "video", "annotation"):
            raise KeyError(f"unknown modality {modality!r}: expected state, action, video or annotation")
        return getattr(self, modality)

    def columns(self, modalities=("state", "action", "annotation")) -> list[str]:
        """The parquet columns the given modalities read (no duplicates, in order)."""
        cols: list[str] = []
        for modality in modalities:
            for entry in self.group(modality).values():
                if entry.original_key not in cols:
                    cols.append(entry.original_key)
        return cols

    def split(self, modality: str, data: dict[str, np.ndarray], keys=None) -> dict[str, np.ndarray]:
        """Slice `state`/`action` groups out of episode columns: `{name: array [N, width]}`."""
        entries = self.group(modality)
        out = {}
        for name in keys if keys is not None else entries:
            if name not in entries:
                raise KeyError(f"{self.source}: no {modality} key {name!r}; known: {sorted(entries)}")
            entry = entries[name]
            column = data[entry.original_key]
            column = column.reshape(len(column), -1)
            if entry.end > column.shape[1]:
                raise ModalityError(
                    f"{self.source}: {modality}.{name} slice [{entry.start}, {entry.end}) is outside "
                    f"{entry.original_key!r}, which has width {column.shape[1]}"
                )
            out[name] = column[:, entry.start : entry.end]
        return out

    def annotation_text(
        self, name: str, indices, tasks: dict[int, str], episode: int | None = None
    ) -> list[str]:
        """Resolve task-table indices of annotation channel `name` to strings."""
        if name not in self.annotation:
            raise KeyError(f"{self.source}: no annotation {name!r}; known: {sorted(self.annotation)}")
        column = self.annotation[name].original_key
        out = []
        for value in np.asarray(indices).reshape(-1).tolist():
            if int(value) not in tasks:
                where = f"episode {episode}, " if episode is not None else ""
                raise ModalityError(
                    f"{where}column {column!r} holds task index {value}, which is not in the task table "
                    f"(indices {sorted(tasks)[:10]})"
                )
            out.append(tasks[int(value)])
        return out

    def validate(self, features: dict, where: str = "") -> None:
        """Check every entry against info.json `features` (keys exist, slices fit the column width)."""
        where = where or self.source
        for modality in ("state", "action"):
            for name, entry in self.group(modality).items():
                if entry.original_key not in features:
                    raise ModalityError(
                        f"{where}: {modality}.{name} reads column {entry.original_key!r}, which is not a "
                        f"feature of the dataset (features: {sorted(features)})"
                    )
                shape = features[entry.original_key].get("shape") or [1]
                width = int(np.prod(shape))
                if entry.end > width:
                    raise ModalityError(
                        f"{where}: {modality}.{name} slice [{entry.start}, {entry.end}) is outside column "
                        f"{entry.original_key!r}, which has width {width}"
                    )
        for name, entry in self.video.items():
            feature = features.get(entry.original_key)
            if feature is None or feature.get("dtype") not in ("video", "image"):
                videos = sorted(k for k, f in features.items() if f.get("dtype") in ("video", "image"))
                raise ModalityError(
                    f"{where}: video.{name} maps to {entry.original_key!r}, which is not a video feature "
                    f"(video features: {videos})"
                )
        for name, entry in self.annotation.items():
            if entry.original_key not in features:
                raise ModalityError(
                    f"{where}: annotation.{name} reads column {entry.original_key!r}, which is not a "
                    f"feature of the dataset (features: {sorted(features)})"
                )


def _parse_slice(modality: str, name: str, spec, source: str) -> ArraySlice:
    if not isinstance(spec, dict):
        raise ModalityError(f"{source}: {modality}.{name} must be an object with start/end, got {spec!r}")
    unknown = set(spec) - SLICE_FIELDS
    if unknown:
        raise ModalityError(
            f"{source}: {modality}.{name} has unknown field(s) {sorted(unknown)}; "
            f"allowed: {sorted(SLICE_FIELDS)}"
        )
    for key in ("start", "end"):
        if not isinstance(spec.get(key), int) or isinstance(spec.get(key), bool):
            raise ModalityError(
                f"{source}: {modality}.{name}.{key} must be an integer, got {spec.get(key)!r}"
            )
    if not 0 <= spec["start"] < spec["end"]:
        raise ModalityError(
            f"{source}: {modality}.{name} needs 0 <= start < end, got start={spec['start']} end={spec['end']}"
        )
    absolute = spec.get("absolute")
    if absolute is not None and not isinstance(absolute, bool):
        raise ModalityError(f"{source}: {modality}.{name}.absolute must be true/false, got {absolute!r}")
    return ArraySlice(
        name=name,
        original_key=str(spec.get("original_key", DEFAULT_ORIGINAL_KEYS[modality])),
        start=spec["start"],
        end=spec["end"],
        absolute=absolute,
        rotation_type=spec.get("rotation_type"),
        dtype=spec.get("dtype"),
    )


def _original_key(modality: str, name: str, spec, default_prefix: str, source: str) -> str:
    """The `original_key` of a video/annotation entry (default `<default_prefix><name>`)."""
    spec = spec or {}
    if not isinstance(spec, dict):
        raise ModalityError(f"{source}: {modality}.{name} must be an object, got {spec!r}")
    return str(spec.get("original_key", f"{default_prefix}{name}"))


def parse_modality(data: dict, source: str = "modality.json") -> Modality:
    """Build a `Modality` from the parsed JSON object."""
    if not isinstance(data, dict):
        raise ModalityError(f"{source}: top level must be an object, got {type(data).__name__}")
    unknown = set(data) - {"state", "action", "video", "annotation"}
    if unknown:
        raise ModalityError(
            f"{source}: unknown section(s) {sorted(unknown)}; expected state, action, video, annotation"
        )
    sections = {}
    for modality in ("state", "action", "video", "annotation"):
        section = data.get(modality, {}) or {}
        if not isinstance(section, dict):
            raise ModalityError(f"{source}: {modality!r} must be an object, got {type(section).__name__}")
        sections[modality] = section
    return Modality(
        state={n: _parse_slice("state", n, s, source) for n, s in sections["state"].items()},
        action={n: _parse_slice("action", n, s, source) for n, s in sections["action"].items()},
        video={
            n: VideoEntry(n, _original_key("video", n, s, "observation.images.", source))
            for n, s in sections["video"].items()
        },
        annotation={
            n: AnnotationEntry(n, _original_key("annotation", n, s, "annotation.", source))
            for n, s in sections["annotation"].items()
        },
        source=source,
    )


def load_modality(root: str | Path, features: dict | None = None) -> Modality:
    """Read and validate `<root>/meta/modality.json` (against info.json's features unless given)."""
    root = Path(root)
    path = root / MODALITY_PATH
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing. GR00T needs it to name the state/action slices, cameras and language "
            f"columns of the dataset. Write one by hand, e.g.\n{MODALITY_EXAMPLE}\n"
            f"or generate a default from meta/info.json with "
            f"`from gr00t.data.modality import write_default_modality; write_default_modality({str(root)!r})` "
            f"(one group per named state/action sub-vector, else the whole vector as one group) and edit it."
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ModalityError(f"{path} is not valid JSON: {err}") from err
    modality = parse_modality(data, str(path))
    if features is None:
        info_path = root / "meta/info.json"
        if info_path.is_file():
            features = json.loads(info_path.read_text()).get("features", {})
    if features is not None:
        modality.validate(features, str(path))
    return modality


def _groups_for(feature_key: str, feature: dict, fallback: str) -> dict:
    width = int(np.prod(feature.get("shape") or [1]))
    names = feature.get("names")
    base = {} if feature_key == DEFAULT_ORIGINAL_KEYS.get(fallback) else {"original_key": feature_key}
    if isinstance(names, dict) and len(names) > 0 and all(isinstance(v, list) for v in names.values()):
        if sum(len(v) for v in names.values()) == width:
            groups, start = {}, 0
            for group, members in names.items():
                groups[group] = {**base, "start": start, "end": start + len(members)}
                start += len(members)
            return groups
    return {fallback: {**base, "start": 0, "end": width}}


def default_modality(info: dict) -> dict:
    """A modality.json object derived from info.json `features`.

    State/action: one group per named sub-list when `names` is a dict of lists, else the whole
    vector as one group; extra vector features `observation.state.<x>` / `action.<x>` become
    groups `<x>`. Cameras (video and image features) keep their names without the `observation.images.` prefix. Language:
    `annotation.*` columns, else `task_index`.
    """
    features = info.get("features", {})
    out: dict = {"state": {}, "action": {}, "video": {}, "annotation": {}}
    for modality, prefix in (("state", "observation.state"), ("action", "action")):
        for key, feature in features.items():
            if feature.get("dtype") in ("video", "image", "string"):
                continue
            if key == prefix:
                groups = _groups_for(key, feature, modality)
            elif key.startswith(prefix + "."):
                groups = _groups_for(key, feature, key[len(prefix) + 1 :])
                groups = {g: {**s, "original_key": key} for g, s in groups.items()}
            else:
                continue
            for group, spec in groups.items():
                if group in out[modality]:
                    group = f"{key}.{group}"
                out[modality][group] = spec
    for key, feature in features.items():
        if feature.get("dtype") in ("video", "image"):
            name = key[len("observation.images.") :] if key.startswith("observation.images.") else key
            out["video"][name] = {"original_key": key}
    for key in features:
        if key.startswith("annotation."):
            out["annotation"][key[len("annotation.") :]] = {"original_key": key}
    if not out["annotation"] and "task_index" in features:
        out["annotation"]["human.task_description"] = {"original_key": "task_index"}
    return out


def write_default_modality(root: str | Path, overwrite: bool = False) -> Path:
    """Write `default_modality(info.json)` to `<root>/meta/modality.json` (atomically) and return its path."""
    root = Path(root)
    info_path = root / "meta/info.json"
    if not info_path.is_file():
        raise FileNotFoundError(f"{info_path} is missing: cannot derive a default modality.json")
    path = root / MODALITY_PATH
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists (pass overwrite=True to replace it)")
    data = default_modality(json.loads(info_path.read_text()))
    if not data["state"] and not data["action"]:
        raise ModalityError(f"{info_path}: no 'observation.state*' or 'action*' vector features to describe")
    atomic.write_json(path, data, indent=4, newline=True)
    return path
