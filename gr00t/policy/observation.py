"""What a robot sends to a policy, parsed and checked once, at the boundary (SPEC-N16 §4).

Observation, batched::

    {"video": {view: uint8 [B, T_v, H, W, 3]}, "state": {key: float32 [B, T_s, D]},
     "language": {key: [[str], ...]}}          # B lists of one instruction

or unbatched (no B axis; language a str or [str]); the answer then has no B axis either. With
several language channels (`gr00t.data.language`) the first is required, the others optional, and
the embodiment's rule picks the instruction (deterministically, as in evaluation). The flat
layout of the reference's simulation wrapper (``"video.<view>"``, ``"state.<key>"``, ``<language key>``:
list of B strings) is accepted too and answered with ``"action.<key>"`` keys.

`parse_observation` checks keys, types, dtypes, shapes, step counts (the embodiment's
delta_indices), finiteness of the state and batch sizes, naming the offending key, and returns an
`Observation` whose per-sample raw samples go straight to the processor. `modality_config`
describes the expected layout to clients, in the reference's terms.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gr00t.data.embodiment import EmbodimentConfig
from gr00t.data.state_action import StateActionProcessor


class ObservationError(ValueError):
    """An observation that does not match the embodiment the policy serves."""


@dataclass
class Observation:
    """A checked observation, always with a batch axis."""

    video: dict[str, np.ndarray]  # view -> uint8 [B, T, H, W, 3]
    state: dict[str, np.ndarray]  # key -> float32 [B, T, D]
    language: list[str] | list[dict[str, str]]  # B instructions, or B {channel: text} to combine
    batched: bool  # the caller sent a B axis
    flat: bool  # the caller used the flat "video.<view>" layout

    @property
    def batch_size(self) -> int:
        return len(self.language)

    def samples(self, embodiment_tag: str) -> list[dict[str, Any]]:
        """One raw sample per row (the processor's input, as in training)."""
        return [
            {
                "video": {k: v[b] for k, v in self.video.items()},
                "state": {k: v[b] for k, v in self.state.items()},
                "language": self.language[b],
                "embodiment": embodiment_tag,
            }
            for b in range(self.batch_size)
        ]

    def answer(self, actions: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Actions `[B, H, D]` in the caller's layout: no B axis if it sent none, flat keys if it did."""
        out = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in actions.items()}
        if not self.batched:
            out = {k: v[0] for k, v in out.items()}
        if self.flat:
            out = {f"action.{k}": v for k, v in out.items()}
        return out


def parse_observation(
    observation: Any, embodiment: EmbodimentConfig, state_dims: Mapping[str, int]
) -> Observation:
    """Check an observation against `embodiment` (``state_dims``: raw width per state key)."""
    nested, flat = _unflatten(observation, embodiment)
    videos = _section(nested, "video", embodiment.video.keys, embodiment.tag)
    states = _section(nested, "state", embodiment.state.keys, embodiment.tag)
    languages = _section(nested, "language", embodiment.language.keys[:1], embodiment.tag)
    first = videos[embodiment.video.keys[0]]
    batched = not (isinstance(first, np.ndarray) and first.ndim == 4)
    sizes: dict[str, int] = {}
    t_video, t_state = len(embodiment.video.delta_indices), len(embodiment.state.delta_indices)
    video = {k: _video(videos[k], f"video[{k!r}]", t_video, batched, sizes) for k in embodiment.video.keys}
    state = {
        k: _state(states[k], f"state[{k!r}]", t_state, state_dims[k], batched, sizes)
        for k in embodiment.state.keys
    }
    language = _languages(languages, embodiment, batched, sizes)
    if len(set(sizes.values())) != 1:
        raise ObservationError(f"batch sizes disagree across the observation: {sizes}")
    if not language:
        raise ObservationError(f"empty batch: {sizes}")
    return Observation(video, state, language, batched, flat)


def _unflatten(observation: Any, emb: EmbodimentConfig) -> tuple[dict[str, Any], bool]:
    if not isinstance(observation, Mapping):
        raise ObservationError(f"observation must be a mapping, got {type(observation).__name__}")
    if any(m in observation for m in ("video", "state", "language")):
        return dict(observation), False
    if not any(isinstance(k, str) and k.startswith(("video.", "state.")) for k in observation):
        raise ObservationError(
            "observation needs 'video', 'state' and 'language' entries "
            f"(or the flat 'video.<view>' / 'state.<key>' layout); got keys {sorted(map(str, observation))}"
        )
    nested: dict[str, Any] = {"video": {}, "state": {}, "language": {}}
    for modality, keys in (("video", emb.video.keys), ("state", emb.state.keys)):
        for key in keys:
            if f"{modality}.{key}" in observation:
                nested[modality][key] = observation[f"{modality}.{key}"]
    for key in emb.language.keys:
        value = observation.get(key, observation.get("task") if len(emb.language.keys) == 1 else None)
        if isinstance(value, str):
            nested["language"][key] = value
        elif isinstance(value, (list, tuple)):
            nested["language"][key] = [[str(s)] for s in value]
        elif value is not None:
            raise ObservationError(
                f"language key {key!r}: expected a list of strings, got {type(value).__name__}"
            )
    return nested, True


def _section(observation: Mapping[str, Any], modality: str, keys: tuple[str, ...], tag: str) -> Mapping:
    section = observation.get(modality)
    if not isinstance(section, Mapping):
        raise ObservationError(
            f"observation[{modality!r}] must be a mapping of {list(keys)}, got {type(section).__name__}"
        )
    missing = [k for k in keys if k not in section]
    if missing:
        raise ObservationError(
            f"observation[{modality!r}] is missing key(s) {missing} of embodiment {tag!r}; "
            f"got {sorted(map(str, section))}"
        )
    return section


def _video(arr: Any, where: str, steps: int, batched: bool, sizes: dict[str, int]) -> np.ndarray:
    lead = 1 if batched else 0
    if not isinstance(arr, np.ndarray):
        raise ObservationError(f"{where}: expected a numpy uint8 array, got {type(arr).__name__}")
    if arr.dtype != np.uint8:
        raise ObservationError(f"{where}: expected dtype uint8, got {arr.dtype}")
    want = "[B, T, H, W, 3]" if batched else "[T, H, W, 3]"
    if arr.ndim != 4 + lead or arr.shape[-1] != 3 or arr.shape[-2] < 1 or arr.shape[-3] < 1:
        raise ObservationError(f"{where}: expected shape {want} (RGB), got {arr.shape}")
    if arr.shape[lead] != steps:
        raise ObservationError(
            f"{where}: expected T={steps} frames (video delta_indices), got {arr.shape[lead]}"
        )
    out = arr if batched else arr[None]
    sizes[where] = out.shape[0]
    return out


def _state(arr: Any, where: str, steps: int, dim: int, batched: bool, sizes: dict[str, int]) -> np.ndarray:
    lead = 1 if batched else 0
    if not isinstance(arr, np.ndarray):
        raise ObservationError(f"{where}: expected a numpy float32 array, got {type(arr).__name__}")
    if arr.dtype != np.float32:
        raise ObservationError(f"{where}: expected dtype float32, got {arr.dtype}")
    want = f"[B, {steps}, {dim}]" if batched else f"[{steps}, {dim}]"
    if arr.ndim != 2 + lead or arr.shape[-1] != dim:
        raise ObservationError(f"{where}: expected shape {want}, got {arr.shape}")
    if arr.shape[lead] != steps:
        raise ObservationError(
            f"{where}: expected T={steps} steps (state delta_indices), got {arr.shape[lead]}"
        )
    if not np.all(np.isfinite(arr)):
        raise ObservationError(f"{where}: contains NaN or infinity")
    out = arr if batched else arr[None]
    sizes[where] = out.shape[0]
    return out


def _languages(
    section: Mapping[str, Any], embodiment: EmbodimentConfig, batched: bool, sizes: dict[str, int]
) -> list[str] | list[dict[str, str]]:
    """B instructions; with several language channels (`gr00t.data.language`) B ``{key: text}``
    mappings of the channels sent (the first is required) for the processor to combine."""
    lang = embodiment.language
    keys = [k for k in lang.keys if k in section] if lang.mode != "first" else [lang.keys[0]]
    texts = {}
    for key in keys:
        texts[key] = _language(section[key], f"language[{key!r}]", batched)
        sizes[f"language[{key!r}]"] = len(texts[key])
    if lang.mode == "first":
        return texts[keys[0]]
    rows = len(texts[keys[0]])
    return [{key: t[b] for key, t in texts.items() if b < len(t)} for b in range(rows)]


def _language(value: Any, where: str, batched: bool) -> list[str]:
    if batched:
        ok = isinstance(value, (list, tuple)) and all(
            isinstance(item, (list, tuple)) and len(item) == 1 and isinstance(item[0], str) for item in value
        )
        if not ok:
            raise ObservationError(
                f"{where}: expected B lists of one instruction string ([[str], ...]), got {value!r:.200}"
            )
        return [item[0] for item in value]
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    if not isinstance(value, str):
        raise ObservationError(
            f"{where}: expected an instruction string (unbatched observation), got {value!r:.200}"
        )
    return [value]


_ACTION_REP = {"relative": "RELATIVE", "absolute": "ABSOLUTE"}
_ACTION_FORMAT = {None: "DEFAULT", "xyz_rot6d": "XYZ_ROT6D", "xyz_rotvec": "XYZ_ROTVEC"}


def modality_config(state_action: StateActionProcessor) -> dict[str, dict[str, Any]]:
    """The embodiment's keys and windows as plain data, field names as the reference's ModalityConfig."""
    emb, sap = state_action.embodiment, state_action
    mean_std_state = [k for k in emb.state.keys if emb.state.mode(k) == "mean_std"]
    mean_std_action = [g.key for g in emb.action.groups if g.normalization == "mean_std"]
    return {
        "video": {"delta_indices": list(emb.video.delta_indices), "modality_keys": list(emb.video.keys)},
        "state": {
            "delta_indices": list(emb.state.delta_indices),
            "modality_keys": list(emb.state.keys),
            "sin_cos_embedding_keys": list(sap.sincos_keys) or None,
            "mean_std_embedding_keys": mean_std_state or None,
        },
        "action": {
            "delta_indices": list(emb.action.delta_indices),
            "modality_keys": list(emb.action.keys),
            "mean_std_embedding_keys": mean_std_action or None,
            "action_configs": [
                {
                    "rep": _ACTION_REP[g.rep] if sap.use_relative_action else "ABSOLUTE",
                    "type": "EEF" if g.type == "eef" else "NON_EEF",
                    "format": _ACTION_FORMAT[g.format],
                    "state_key": g.reference_key if g.is_relative else None,
                }
                for g in emb.action.groups
            ],
        },
        "language": {
            "delta_indices": list(emb.language.delta_indices),
            "modality_keys": list(emb.language.keys),
        },
    }
