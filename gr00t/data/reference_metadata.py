"""Statistics and modality configs stored in NVIDIA's reference GR00T checkpoints, in this project's form.

Files read (all at the top of the checkpoint folder, as the reference N1.6 processor saves them):

- `statistics.json` — `{tag: {"state": {group: {stat: [D]}}, "action": {group: {stat: [D]}},
  "relative_action": {group: {stat: [H][D]}}}}` with stat ∈ mean, std, min, max, q01, q99;
- `processor_config.json` — `{"processor_class": ..., "processor_kwargs": {"modality_configs":
  {tag: {modality: {"delta_indices", "modality_keys", "sin_cos_embedding_keys",
  "mean_std_embedding_keys", "action_configs": [{"rep", "type", "format", "state_key"}]}}},
  "use_percentiles", "use_relative_action", "apply_sincos_state_encoding", "max_action_horizon", ...}}`
  (enum fields written by name: rep RELATIVE|ABSOLUTE|DELTA, type EEF|NON_EEF,
  format DEFAULT|XYZ_ROT6D|XYZ_ROTVEC);
- `embodiment_id.json` — `{tag: projector index}`.

A GR00T N1.5-style `experiment_cfg/metadata.json` (`{tag: {"statistics": {"state": ..., "action": ...},
"modalities": ...}}`) is read for its statistics when `statistics.json` is absent.

What this module produces is what `gr00t.data.stats.load_stats` returns and the
`StateActionProcessor` takes: `({"state": {key: Stats}, "action": {key: Stats}}, {key: Stats [H, D]})`,
arrays float64. Reference entries must carry mean, std, min and max; q01/q99 are kept when present.
Use `reference_stats_for(folder, embodiment)` to get the release's statistics for a finetune
embodiment: None when the release has no entry for the tag, an error listing every difference when
it has one that does not fit (missing groups, different relative/absolute semantics, relative
statistics of another horizon).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gr00t.data.embodiment import EmbodimentConfig, load_embodiment
from gr00t.data.stats import Stats, StatsError

STATISTICS_FILE = "statistics.json"
PROCESSOR_FILE = "processor_config.json"
EMBODIMENT_ID_FILE = "embodiment_id.json"
LEGACY_METADATA_FILE = "experiment_cfg/metadata.json"
REQUIRED_STATS = ("mean", "std", "min", "max")
OPTIONAL_STATS = ("q01", "q99")

_REPS = {"RELATIVE": "relative", "ABSOLUTE": "absolute", "DELTA": "delta"}
_TYPES = {"NON_EEF": "joint", "EEF": "eef"}
_FORMATS = {"DEFAULT": None, "XYZ_ROT6D": "xyz_rot6d", "XYZ_ROTVEC": "xyz_rotvec"}


class ReferenceMetadataError(StatsError):
    """Reference checkpoint metadata is malformed or does not fit the requested embodiment."""


@dataclass(frozen=True)
class ReferenceActionConfig:
    """One action group's semantics as the reference declares it, in this project's words."""

    rep: str  # relative | absolute | delta
    type: str  # joint | eef
    format: str | None  # None | xyz_rot6d | xyz_rotvec
    state_key: str | None


@dataclass(frozen=True)
class ReferenceEmbodiment:
    """One embodiment's entry of a reference checkpoint."""

    tag: str
    state: dict[str, Stats]
    action: dict[str, Stats]
    relative_action: dict[str, Stats]
    modality: Mapping[str, Any] | None = None  # raw modality config (processor_config.json)
    projector_index: int | None = None


@dataclass(frozen=True)
class ReferenceMetadata:
    """Everything data-side a reference checkpoint stores."""

    folder: Path
    statistics_file: Path
    embodiments: dict[str, ReferenceEmbodiment]
    processor_kwargs: dict[str, Any] = field(default_factory=dict)  # without modality_configs

    @property
    def use_percentiles(self) -> bool:
        return bool(self.processor_kwargs.get("use_percentiles", False))


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ReferenceMetadataError(f"{path}: not valid JSON: {exc}") from exc


def has_reference_metadata(folder: str | Path) -> bool:
    """Whether `folder` holds reference statistics (N1.6 `statistics.json` or N1.5 `experiment_cfg/metadata.json`)."""
    folder = Path(folder)
    return (folder / STATISTICS_FILE).is_file() or (folder / LEGACY_METADATA_FILE).is_file()


def _stats_entry(entry: Any, where: str, ndim: int) -> Stats:
    if not isinstance(entry, Mapping):
        raise ReferenceMetadataError(f"{where}: expected an object of statistics, got {type(entry).__name__}")
    missing = [k for k in REQUIRED_STATS if k not in entry]
    if missing:
        raise ReferenceMetadataError(f"{where}: missing statistics {missing} (has {sorted(entry)})")
    out: Stats = {}
    for name in REQUIRED_STATS + OPTIONAL_STATS:
        if name not in entry:
            continue
        try:
            arr = np.asarray(entry[name], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ReferenceMetadataError(f"{where}.{name}: not a numeric array: {exc}") from exc
        if arr.ndim != ndim:
            shape = "[D]" if ndim == 1 else "[H, D]"
            raise ReferenceMetadataError(f"{where}.{name}: shape {list(arr.shape)}, expected {shape}")
        if not np.all(np.isfinite(arr)):
            raise ReferenceMetadataError(f"{where}.{name}: contains NaN or infinity")
        out[name] = arr
    shapes = {k: v.shape for k, v in out.items()}
    if len(set(shapes.values())) != 1:
        raise ReferenceMetadataError(f"{where}: statistics disagree in shape {shapes}")
    return out


def _section(data: Mapping[str, Any], name: str, where: str, ndim: int) -> dict[str, Stats]:
    groups = data.get(name) or {}
    if not isinstance(groups, Mapping):
        raise ReferenceMetadataError(f"{where}.{name}: expected an object of groups")
    return {str(k): _stats_entry(v, f"{where}.{name}.{k}", ndim) for k, v in groups.items()}


def _processor_kwargs(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(processor kwargs without modality configs, modality configs by tag) from processor_config.json."""
    path = folder / PROCESSOR_FILE
    if not path.is_file():
        return {}, {}
    data = _read_json(path)
    kwargs = data.get("processor_kwargs") if isinstance(data, Mapping) else None
    if not isinstance(kwargs, Mapping):
        # this project's own processor_config.json has no processor_kwargs: not reference metadata
        return {}, {}
    modality = kwargs.get("modality_configs") or {}
    if not isinstance(modality, Mapping):
        raise ReferenceMetadataError(f"{path}: processor_kwargs.modality_configs: expected an object")
    return {k: v for k, v in kwargs.items() if k != "modality_configs"}, dict(modality)


def load_reference_metadata(folder: str | Path) -> ReferenceMetadata:
    """Parse a reference checkpoint's statistics, modality configs and embodiment ids."""
    folder = Path(folder)
    stats_path = folder / STATISTICS_FILE
    legacy = False
    if not stats_path.is_file():
        stats_path = folder / LEGACY_METADATA_FILE
        legacy = True
        if not stats_path.is_file():
            raise ReferenceMetadataError(
                f"{folder}: no reference statistics ({STATISTICS_FILE} or {LEGACY_METADATA_FILE})"
            )
    raw = _read_json(stats_path)
    if not isinstance(raw, Mapping):
        raise ReferenceMetadataError(f"{stats_path}: expected an object keyed by embodiment tag")
    kwargs, modality = _processor_kwargs(folder)
    ids_path = folder / EMBODIMENT_ID_FILE
    ids = _read_json(ids_path) if ids_path.is_file() else {}
    if not isinstance(ids, Mapping):
        raise ReferenceMetadataError(f"{ids_path}: expected an object tag -> projector index")

    embodiments: dict[str, ReferenceEmbodiment] = {}
    for tag, entry in raw.items():
        where = f"{stats_path}: {tag}"
        if not isinstance(entry, Mapping):
            raise ReferenceMetadataError(f"{where}: expected an object, got {type(entry).__name__}")
        if legacy:
            entry = entry.get("statistics")
            if not isinstance(entry, Mapping):
                raise ReferenceMetadataError(f"{where}.statistics: missing or not an object")
        index = ids.get(tag)
        if index is not None and (isinstance(index, bool) or not isinstance(index, int)):
            raise ReferenceMetadataError(f"{ids_path}: {tag}={index!r}: expected an integer")
        embodiments[str(tag)] = ReferenceEmbodiment(
            tag=str(tag),
            state=_section(entry, "state", where, 1),
            action=_section(entry, "action", where, 1),
            relative_action=_section(entry, "relative_action", where, 2),
            modality=modality.get(tag),
            projector_index=index,
        )
    return ReferenceMetadata(
        folder=folder, statistics_file=stats_path, embodiments=embodiments, processor_kwargs=kwargs
    )


# ----------------------------------------------------------------------------------------------
# Modality configs
# ----------------------------------------------------------------------------------------------


def _enum(value: Any, table: Mapping[str, Any], where: str) -> Any:
    key = str(value).upper() if value is not None else "DEFAULT"
    key = key.replace("+", "_")  # enum values ("xyz+rot6d") as well as names ("XYZ_ROT6D")
    if key not in table:
        raise ReferenceMetadataError(f"{where}={value!r}: expected one of {sorted(table)}")
    return table[key]


def reference_action_configs(meta: ReferenceMetadata, tag: str) -> dict[str, ReferenceActionConfig] | None:
    """Per action group semantics the reference declares for `tag` (None without modality config)."""
    modality = meta.embodiments[tag].modality if tag in meta.embodiments else None
    if not modality or "action" not in modality:
        return None
    where = f"{meta.folder / PROCESSOR_FILE}: modality_configs.{tag}.action"
    action = modality["action"]
    keys = list(action.get("modality_keys") or [])
    configs = action.get("action_configs")
    if configs is None:
        return {k: ReferenceActionConfig("absolute", "joint", None, None) for k in keys}
    if len(configs) != len(keys):
        raise ReferenceMetadataError(f"{where}: {len(configs)} action_configs for {len(keys)} modality_keys")
    out = {}
    for i, (key, cfg) in enumerate(zip(keys, configs)):
        w = f"{where}.action_configs[{i}]"
        if not isinstance(cfg, Mapping):
            raise ReferenceMetadataError(f"{w}: expected an object")
        out[key] = ReferenceActionConfig(
            rep=_enum(cfg.get("rep"), _REPS, f"{w}.rep"),
            type=_enum(cfg.get("type"), _TYPES, f"{w}.type"),
            format=_enum(cfg.get("format"), _FORMATS, f"{w}.format"),
            state_key=cfg.get("state_key"),
        )
    return out


def reference_embodiment_dict(meta: ReferenceMetadata, tag: str) -> dict[str, Any]:
    """The reference modality config of `tag` as an embodiment mapping (`EmbodimentConfig.from_dict`).

    Normalisation: keys in `mean_std_embedding_keys` → mean_std; the others percentile when the
    reference processor uses percentiles, else min_max. `sin_cos_embedding_keys` → state.sin_cos.
    """
    if tag not in meta.embodiments or not meta.embodiments[tag].modality:
        raise ReferenceMetadataError(
            f"{meta.folder / PROCESSOR_FILE}: no modality config for embodiment {tag!r}"
        )
    entry = meta.embodiments[tag]
    modality = entry.modality
    assert modality is not None
    where = f"{meta.folder / PROCESSOR_FILE}: modality_configs.{tag}"
    for name in ("video", "state", "action", "language"):
        if not isinstance(modality.get(name), Mapping):
            raise ReferenceMetadataError(f"{where}.{name}: missing or not an object")
    if entry.projector_index is None:
        raise ReferenceMetadataError(f"{meta.folder / EMBODIMENT_ID_FILE}: no projector index for {tag!r}")
    default_norm = "percentile" if meta.use_percentiles else "min_max"

    def window(name: str) -> dict[str, Any]:
        m = modality[name]
        return {
            "keys": list(m.get("modality_keys") or []),
            "delta_indices": list(m.get("delta_indices") or [0]),
        }

    state_mod = modality["state"]
    state_mean_std = set(state_mod.get("mean_std_embedding_keys") or [])
    state = {
        **window("state"),
        "sin_cos": list(state_mod.get("sin_cos_embedding_keys") or []),
        "normalization": {
            k: ("mean_std" if k in state_mean_std else default_norm) for k in window("state")["keys"]
        },
    }
    groups = _action_groups(meta, tag, modality["action"], default_norm, where)
    return {
        "tag": tag,
        "projector_index": entry.projector_index,
        "video": window("video"),
        "state": state,
        "action": {"delta_indices": window("action")["delta_indices"], "groups": groups},
        "language": window("language"),
    }


def _action_groups(
    meta: ReferenceMetadata, tag: str, action: Mapping[str, Any], default_norm: str, where: str
) -> list[dict[str, Any]]:
    """The embodiment's action groups from the reference action configs."""
    action_mean_std = set(action.get("mean_std_embedding_keys") or [])
    groups = []
    for key, cfg in (reference_action_configs(meta, tag) or {}).items():
        if cfg.rep == "delta":
            raise ReferenceMetadataError(
                f"{where}.action: group {key!r} uses rep DELTA, which this project lacks"
            )
        group: dict[str, Any] = {
            "key": key,
            "rep": cfg.rep,
            "type": cfg.type,
            "normalization": "mean_std" if key in action_mean_std else default_norm,
        }
        if cfg.format is not None:
            group["format"] = cfg.format
        if cfg.state_key:
            group["state_key"] = cfg.state_key
        groups.append(group)
    return groups


# ----------------------------------------------------------------------------------------------
# Statistics for a finetune embodiment
# ----------------------------------------------------------------------------------------------


def _problems(
    meta: ReferenceMetadata, entry: ReferenceEmbodiment, emb: EmbodimentConfig, use_relative_action: bool
) -> list[str]:
    problems = []
    for section, keys, have in (
        ("state", emb.state.keys, entry.state),
        ("action", emb.action.keys, entry.action),
    ):
        missing = [k for k in keys if k not in have]
        if missing:
            problems.append(f"{section} groups {missing} have no statistics (the release has {sorted(have)})")
    declared = reference_action_configs(meta, emb.tag)
    for group in emb.action.groups:
        ref = declared.get(group.key) if declared is not None else None
        if ref is not None:
            if ref.rep != group.rep:
                problems.append(
                    f"action group {group.key!r} is {group.rep} here but {ref.rep} in the release"
                )
            if ref.type != group.type or (group.type == "eef" and ref.format != group.format):
                problems.append(
                    f"action group {group.key!r} is {group.type}/{group.format} here but {ref.type}/{ref.format} "
                    "in the release"
                )
            if group.is_relative and (ref.state_key or group.key) != group.reference_key:
                problems.append(
                    f"relative action group {group.key!r} is relative to state {group.reference_key!r} here but "
                    f"to {ref.state_key or group.key!r} in the release"
                )
        if not (group.is_relative and use_relative_action):
            continue
        rel = entry.relative_action.get(group.key)
        if rel is None:
            problems.append(f"relative action group {group.key!r} has no relative_action statistics")
            continue
        horizon, width = rel["mean"].shape
        if horizon != emb.action_horizon:
            problems.append(
                f"relative statistics of {group.key!r} are for horizon {horizon}, the embodiment uses "
                f"{emb.action_horizon}"
            )
        if group.key in entry.action and entry.action[group.key]["mean"].shape[-1] != width:
            problems.append(
                f"relative statistics of {group.key!r} have width {width}, its action statistics "
                f"{entry.action[group.key]['mean'].shape[-1]}"
            )
    return problems


def reference_stats_for(
    source: str | Path | ReferenceMetadata,
    embodiment: EmbodimentConfig | str,
    use_relative_action: bool = True,
) -> tuple[dict[str, dict[str, Stats]], dict[str, Stats]] | None:
    """The release's statistics for `embodiment`, in `load_stats` form; None when the release has
    no entry for its tag. Raises `ReferenceMetadataError` listing every difference when the entry
    exists but does not fit (groups, relative/absolute semantics, horizon of relative statistics).

    With `use_relative_action` off (the model config's flag) relative groups are normalised as
    absolute ones, so no relative statistics are needed or returned."""
    meta = source if isinstance(source, ReferenceMetadata) else load_reference_metadata(source)
    emb = load_embodiment(embodiment)
    entry = meta.embodiments.get(emb.tag)
    if entry is None:
        return None
    problems = _problems(meta, entry, emb, use_relative_action)
    if problems:
        raise ReferenceMetadataError(
            f"{meta.statistics_file}: statistics of embodiment {emb.tag!r} do not fit {emb.source}: "
            + "; ".join(problems)
        )
    grouped = {
        "state": {k: dict(entry.state[k]) for k in emb.state.keys},
        "action": {k: dict(entry.action[k]) for k in emb.action.keys},
    }
    relative = {
        g.key: dict(entry.relative_action[g.key])
        for g in emb.action.groups
        if g.is_relative and use_relative_action
    }
    return grouped, relative


__all__ = [
    "ReferenceActionConfig",
    "ReferenceEmbodiment",
    "ReferenceMetadata",
    "ReferenceMetadataError",
    "has_reference_metadata",
    "load_reference_metadata",
    "reference_action_configs",
    "reference_embodiment_dict",
    "reference_stats_for",
]
