"""Embodiment configs: which keys, windows and action semantics one robot uses (SPEC §2.2).

One YAML file per robot: shipped in `gr00t/configs/embodiment/` (the Hydra config group
`embodiment`), or the user's own, anywhere (`embodiment=<path.yaml>`, or `<config_dir>/embodiment/`,
see `gr00t.paths`). A user adds a robot by writing one file; nothing in Python has to change. Schema (every field is checked, and
an error names the file and the dotted key)::

    tag: new_embodiment            # embodiment tag (used in checkpoints, stats, the policy)
    projector_index: 10            # row of every CategorySpecific layer, 0 <= i < 32
    video:    {keys: [front, wrist], delta_indices: [0]}
    state:
      keys: [arm, gripper]
      delta_indices: [0]
      normalization: {gripper: min_max}   # per key: min_max (default) | mean_std | percentile
      sin_cos: [arm]                      # [sin x, cos x] for these keys when sin/cos is enabled
    action:
      horizon: 16                  # shorthand for delta_indices: [0, 1, ..., 15]
      groups:                      # in model order
        - {key: arm, rep: relative, type: joint, state_key: arm}
        - {key: gripper, rep: absolute, type: joint, normalization: min_max}
        # end effector: {key: eef, rep: relative, type: eef, format: xyz_rot6d, state_key: eef,
        #                state_format: xyz_quat_wxyz}
    language: {keys: [annotation.human.task_description], delta_indices: [0]}
    # several channels combine by a rule (gr00t.data.language): combine: {mode: sample,
    #   probabilities: {<key>: p, ...}} or {mode: template, template: "{<key>}: {<key>}"}
    intervention: {column: is_intervention, weight: 3.0}   # optional (gr00t.data.intervention)
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gr00t.data.intervention import InterventionWeighting, parse_intervention
from gr00t.data.language import LanguageConfig, parse_language
from gr00t.data.yaml_file import load_yaml_mapping
from gr00t.paths import available, find_file, search_dirs

NORMALIZATION_MODES = ("min_max", "mean_std", "percentile")
ACTION_REPS = ("relative", "absolute")
ACTION_TYPES = ("joint", "eef")
EEF_FORMATS = ("xyz_rot6d", "xyz_rotvec")
# Formats a reference state of an eef group may be stored in (converted before composing poses).
EEF_STATE_FORMATS = EEF_FORMATS + ("xyz_quat_wxyz", "xyz_quat_xyzw")
EEF_FORMAT_DIMS = {"xyz_rot6d": 9, "xyz_rotvec": 6, "xyz_quat_wxyz": 7, "xyz_quat_xyzw": 7}
MAX_NUM_EMBODIMENTS = 32


class EmbodimentConfigError(ValueError):
    """An embodiment YAML is missing, malformed or inconsistent."""


class EmbodimentFileMissing(EmbodimentConfigError, FileNotFoundError):
    """An embodiment given as a path names no file."""


@dataclass(frozen=True)
class ModalityWindow:
    """Keys of one modality and the frame offsets (relative to the sample step) it reads."""

    keys: tuple[str, ...]
    delta_indices: tuple[int, ...]


@dataclass(frozen=True)
class StateConfig(ModalityWindow):
    """State groups, their window and their encoding."""

    normalization: Mapping[str, str] = field(default_factory=dict)
    sin_cos: tuple[str, ...] = ()

    def mode(self, key: str) -> str:
        """Normalisation mode of state group `key` (sin/cos is decided by the processor flag)."""
        return self.normalization.get(key, "min_max")


@dataclass(frozen=True)
class ActionGroup:
    """Semantics of one action group."""

    key: str
    rep: str = "absolute"
    type: str = "joint"
    format: str | None = None  # eef only: xyz_rot6d | xyz_rotvec
    state_key: str | None = None  # reference state group of a relative group (default: key)
    state_format: str | None = None  # eef only: layout of the reference state (default: format)
    normalization: str = "min_max"

    @property
    def is_relative(self) -> bool:
        return self.rep == "relative"

    @property
    def reference_key(self) -> str:
        return self.state_key or self.key

    @property
    def reference_format(self) -> str | None:
        return self.state_format or self.format


@dataclass(frozen=True)
class ActionConfig:
    """Action groups (in model order) and the horizon window."""

    groups: tuple[ActionGroup, ...]
    delta_indices: tuple[int, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(g.key for g in self.groups)

    @property
    def horizon(self) -> int:
        return len(self.delta_indices)

    def group(self, key: str) -> ActionGroup:
        for g in self.groups:
            if g.key == key:
                return g
        raise KeyError(f"no action group {key!r}; groups are {list(self.keys)}")


@dataclass(frozen=True)
class EmbodimentConfig:
    """One robot: tag, projector row, keys and windows per modality, action semantics."""

    name: str
    tag: str
    projector_index: int
    video: ModalityWindow
    state: StateConfig
    action: ActionConfig
    language: LanguageConfig
    source: str = "<dict>"
    intervention: InterventionWeighting | None = None

    @property
    def action_horizon(self) -> int:
        return self.action.horizon

    def to_dict(self) -> dict[str, Any]:
        """Plain, YAML/JSON-ready form; `from_dict(to_dict())` rebuilds an equal config."""
        groups = []
        for g in self.action.groups:
            entry: dict[str, Any] = {
                "key": g.key,
                "rep": g.rep,
                "type": g.type,
                "normalization": g.normalization,
            }
            for opt in ("format", "state_key", "state_format"):
                if getattr(g, opt) is not None:
                    entry[opt] = getattr(g, opt)
            groups.append(entry)
        return {
            "name": self.name,
            "tag": self.tag,
            "projector_index": self.projector_index,
            "video": {"keys": list(self.video.keys), "delta_indices": list(self.video.delta_indices)},
            "state": {
                "keys": list(self.state.keys),
                "delta_indices": list(self.state.delta_indices),
                "normalization": dict(self.state.normalization),
                "sin_cos": list(self.state.sin_cos),
            },
            "action": {"delta_indices": list(self.action.delta_indices), "groups": groups},
            "language": self.language.to_dict(),
            **({"intervention": self.intervention.to_dict()} if self.intervention else {}),
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], source: str = "<dict>", name: str | None = None
    ) -> EmbodimentConfig:
        """Validate and build a config from a mapping (a parsed YAML file or a Hydra node)."""
        return _Parser(source).parse(_plain(data), name)


# ----------------------------------------------------------------------------------------------
# Loading and discovery
# ----------------------------------------------------------------------------------------------


def embodiment_dirs() -> list[Path]:
    """Folders searched for embodiment YAML files: the user's (`$GR00T_CONFIG_DIR`/`config_dir=`), then the shipped one."""
    return search_dirs("embodiment")


def available_embodiments() -> list[str]:
    """Names (file stems) of the known embodiment configs, shipped and the user's."""
    return available("embodiment")


def _is_path(text: str) -> bool:
    return text.endswith((".yaml", ".yml")) or "/" in text or os.sep in text


def resolve_embodiment_path(name_or_path: str | Path) -> Path:
    """The YAML file for a config name, a tag, or an explicit path."""
    text = str(name_or_path)
    candidate = Path(text).expanduser()
    if _is_path(text) or candidate.is_file():
        if not candidate.is_file():
            raise EmbodimentFileMissing(f"embodiment={text!r}: no such file {candidate.resolve()}")
        return candidate
    path = find_file("embodiment", text)
    if path is not None:
        return path
    for stem, (tag, _) in registry().items():  # accept a tag as well (unitree_g1 -> g1.yaml)
        if tag == text:
            found = find_file("embodiment", stem)
            assert found is not None
            return found
    names = available_embodiments()
    hint = difflib.get_close_matches(text, names + [t for t, _ in registry().values()], n=1)
    extra = f" Did you mean {hint[0]!r}?" if hint else ""
    raise EmbodimentConfigError(
        f"unknown embodiment {text!r}: expected a name of {names}, a tag, or a path to a robot YAML "
        f"file.{extra} To add a robot, pass embodiment=<path/to/robot.yaml> or put <name>.yaml in "
        "<config_dir>/embodiment/ (see gr00t/data/embodiment.py for the schema)."
    )


def load_embodiment(name_or_path: str | Path | EmbodimentConfig | Mapping[str, Any]) -> EmbodimentConfig:
    """Load and validate an embodiment from a name (`new_embodiment`), a tag (`unitree_g1`), a path,
    a mapping (e.g. a Hydra node) or pass an `EmbodimentConfig` through."""
    if isinstance(name_or_path, EmbodimentConfig):
        return name_or_path
    if not isinstance(name_or_path, (str, Path)):
        return EmbodimentConfig.from_dict(name_or_path)
    path = resolve_embodiment_path(name_or_path)
    data = load_yaml_mapping(path, EmbodimentConfigError)
    return EmbodimentConfig.from_dict(data, source=str(path), name=path.stem)


def registry() -> dict[str, tuple[str, int]]:
    """Known embodiments: config name -> (tag, projector_index). Reads only the two top fields."""
    out: dict[str, tuple[str, int]] = {}
    for folder in reversed(embodiment_dirs()):  # the user's files win over shipped ones of the same name
        for path in sorted(folder.glob("*.yaml")):
            data = yaml.safe_load(path.read_text()) or {}
            if isinstance(data, Mapping) and "tag" in data and "projector_index" in data:
                out[path.stem] = (str(data["tag"]), int(data["projector_index"]))
    return dict(sorted(out.items()))


def tag_to_projector_index() -> dict[str, int]:
    """Known embodiments: tag -> projector index (the embodiment-id map saved with checkpoints)."""
    return {tag: idx for tag, idx in registry().values()}


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------


def _plain(data: Any) -> Any:
    """Turn OmegaConf containers into plain Python containers."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(data, (DictConfig, ListConfig)):
            return OmegaConf.to_container(data, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    return data


_TOP_KEYS = tuple("name tag projector_index video state action language intervention defaults".split())
_WINDOW_KEYS = ("keys", "delta_indices")
_STATE_KEYS = ("keys", "delta_indices", "normalization", "sin_cos")
_ACTION_KEYS = ("horizon", "delta_indices", "groups")
_GROUP_KEYS = ("key", "rep", "type", "format", "state_key", "state_format", "normalization")


class _Parser:
    def __init__(self, source: str):
        self.source = source

    def fail(self, key: str, message: str) -> EmbodimentConfigError:
        return EmbodimentConfigError(f"{self.source}: key {key!r}: {message}")

    def check_known(self, where: str, data: Mapping[str, Any], allowed: Sequence[str]) -> None:
        for k in data:
            if k not in allowed:
                hint = difflib.get_close_matches(str(k), allowed, n=1)
                extra = f" Did you mean {hint[0]!r}?" if hint else ""
                prefix = f"{where}." if where else ""
                raise self.fail(f"{prefix}{k}", f"unknown field; allowed: {list(allowed)}.{extra}")

    def mapping(self, key: str, value: Any) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(key, f"expected a mapping, got {value!r}")
        return value

    def string(self, key: str, value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"expected a non-empty string, got {value!r}")
        return value

    def choice(self, key: str, value: Any, choices: Sequence[str]) -> str:
        if value not in choices:
            raise self.fail(key, f"expected one of {list(choices)}, got {value!r}")
        return value

    def str_list(self, key: str, value: Any, allow_empty: bool = False) -> tuple[str, ...]:
        if not isinstance(value, (list, tuple)) or (not value and not allow_empty):
            raise self.fail(
                key, f"expected a {'' if allow_empty else 'non-empty '}list of strings, got {value!r}"
            )
        items = tuple(self.string(f"{key}[{i}]", v) for i, v in enumerate(value))
        dupes = sorted({v for v in items if items.count(v) > 1})
        if dupes:
            raise self.fail(key, f"duplicate entries {dupes}")
        return items

    def int_list(self, key: str, value: Any) -> tuple[int, ...]:
        if not isinstance(value, (list, tuple)) or not value:
            raise self.fail(key, f"expected a non-empty list of integers, got {value!r}")
        if any(isinstance(v, bool) or not isinstance(v, int) for v in value):
            raise self.fail(key, f"expected integers, got {value!r}")
        if list(value) != sorted(set(value)):
            raise self.fail(key, f"expected strictly increasing integers, got {value!r}")
        return tuple(value)

    def window(self, name: str, data: Any) -> ModalityWindow:
        data = self.mapping(name, data)
        self.check_known(name, data, _WINDOW_KEYS)
        if "keys" not in data:
            raise self.fail(f"{name}.keys", "missing")
        return ModalityWindow(
            keys=self.str_list(f"{name}.keys", data["keys"]),
            delta_indices=self.int_list(f"{name}.delta_indices", data.get("delta_indices", [0])),
        )

    def state(self, data: Any) -> StateConfig:
        data = self.mapping("state", data)
        self.check_known("state", data, _STATE_KEYS)
        base = self.window("state", {k: data[k] for k in _WINDOW_KEYS if k in data})
        norm = self.mapping("state.normalization", data.get("normalization") or {})
        for k, mode in norm.items():
            if k not in base.keys:
                raise self.fail(
                    f"state.normalization.{k}", f"not a state key; state keys are {list(base.keys)}"
                )
            self.choice(f"state.normalization.{k}", mode, NORMALIZATION_MODES)
        sin_cos = self.str_list("state.sin_cos", data.get("sin_cos") or [], allow_empty=True)
        for i, k in enumerate(sin_cos):
            if k not in base.keys:
                raise self.fail(
                    f"state.sin_cos[{i}]", f"{k!r} is not a state key; state keys are {list(base.keys)}"
                )
        return StateConfig(
            keys=base.keys, delta_indices=base.delta_indices, normalization=dict(norm), sin_cos=sin_cos
        )

    def group(self, where: str, data: Any, state: StateConfig) -> ActionGroup:
        data = self.mapping(where, data)
        self.check_known(where, data, _GROUP_KEYS)
        key = self.string(f"{where}.key", data.get("key"))
        rep = self.choice(f"{where}.rep", data.get("rep", "absolute"), ACTION_REPS)
        typ = self.choice(f"{where}.type", data.get("type", "joint"), ACTION_TYPES)
        norm = self.choice(
            f"{where}.normalization", data.get("normalization", "min_max"), NORMALIZATION_MODES
        )
        fmt = data.get("format")
        state_format = data.get("state_format")
        if typ == "eef":
            fmt = self.choice(f"{where}.format", fmt, EEF_FORMATS)
            if state_format is not None:
                self.choice(f"{where}.state_format", state_format, EEF_STATE_FORMATS)
        else:
            if fmt not in (None, "default"):
                raise self.fail(f"{where}.format", f"only eef groups take a rotation format, got {fmt!r}")
            if state_format is not None:
                raise self.fail(f"{where}.state_format", "only eef groups take a state format")
            fmt = None
        state_key = data.get("state_key")
        if state_key is not None:
            self.string(f"{where}.state_key", state_key)
        if rep == "relative" and (state_key or key) not in state.keys:
            raise self.fail(
                f"{where}.state_key",
                f"relative group {key!r} needs a reference state group, but {(state_key or key)!r} is not among "
                f"the state keys {list(state.keys)}; set state_key",
            )
        return ActionGroup(key, rep, typ, fmt, state_key, state_format, norm)

    def action(self, data: Any, state: StateConfig) -> ActionConfig:
        data = self.mapping("action", data)
        self.check_known("action", data, _ACTION_KEYS)
        horizon = data.get("horizon")
        deltas = data.get("delta_indices")
        if horizon is None and deltas is None:
            raise self.fail("action.horizon", "missing: give action.horizon or action.delta_indices")
        if horizon is not None and (isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1):
            raise self.fail("action.horizon", f"expected a positive integer, got {horizon!r}")
        if deltas is None:
            delta_indices = tuple(range(horizon))
        else:
            delta_indices = self.int_list("action.delta_indices", deltas)
            if horizon is not None and len(delta_indices) != horizon:
                raise self.fail(
                    "action.horizon", f"{horizon} disagrees with {len(delta_indices)} delta_indices"
                )
        groups_raw = data.get("groups")
        if not isinstance(groups_raw, (list, tuple)) or not groups_raw:
            raise self.fail("action.groups", f"expected a non-empty list of groups, got {groups_raw!r}")
        groups = tuple(self.group(f"action.groups[{i}]", g, state) for i, g in enumerate(groups_raw))
        keys = [g.key for g in groups]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise self.fail("action.groups", f"duplicate group keys {dupes}")
        return ActionConfig(groups=groups, delta_indices=delta_indices)

    def parse(self, data: Any, name: str | None) -> EmbodimentConfig:
        data = self.mapping("<top level>", data)
        self.check_known("", data, _TOP_KEYS)
        for required in ("tag", "projector_index", "video", "state", "action", "language"):
            if required not in data:
                raise self.fail(required, "missing")
        tag = self.string("tag", data["tag"])
        idx = data["projector_index"]
        if isinstance(idx, bool) or not isinstance(idx, int) or not 0 <= idx < MAX_NUM_EMBODIMENTS:
            raise self.fail(
                "projector_index", f"expected an integer in [0, {MAX_NUM_EMBODIMENTS}), got {idx!r}"
            )
        state = self.state(data["state"])
        return EmbodimentConfig(
            name=str(data.get("name") or name or tag),
            tag=tag,
            projector_index=idx,
            video=self.window("video", data["video"]),
            state=state,
            action=self.action(data["action"], state),
            language=parse_language(data["language"], self),
            source=self.source,
            intervention=parse_intervention(data.get("intervention"), "intervention", self.fail),
        )
