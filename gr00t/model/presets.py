"""Named model presets (`model/<name>.yaml`, shipped or a user's) turned into `Gr00tN16Config` objects.

Presets are composed by Hydra against the `ModelConfig` schema (`gr00t.configs.compose`), the same
way the recipes compose them, so a preset's `defaults:` and its field types are checked once.
"""

from __future__ import annotations

import copy
import difflib
import functools
import os
from typing import Any

from gr00t.configs.compose import compose_preset, group_options
from gr00t.model.config import Gr00tN16Config


def available_presets() -> list[str]:
    """Names of the model presets (`gr00t/configs/model/` and the user's `model/` folders)."""
    return group_options("model")


@functools.lru_cache(maxsize=64)
def _preset_cached(name: str, config_dirs: str) -> dict[str, Any]:
    return compose_preset(name)


def preset_dict(name: str) -> dict[str, Any]:
    """The resolved fields of preset `name` as a plain dict (without the `name` key)."""
    data = copy.deepcopy(_preset_cached(name, os.environ.get("GR00T_CONFIG_DIR", "")))
    data.pop("name", None)
    return data


def config_from_dict(fields: dict[str, Any]) -> Gr00tN16Config:
    """Build a config, rejecting unknown field names with the closest valid ones."""
    valid = set(Gr00tN16Config().to_dict())
    unknown = [k for k in fields if k not in valid and k != "name"]
    if unknown:
        msgs = []
        for key in unknown:
            hint = difflib.get_close_matches(key, sorted(valid), n=3)
            msgs.append(f"{key!r}" + (f" (did you mean {', '.join(map(repr, hint))}?)" if hint else ""))
        raise ValueError(f"unknown model config field(s): {'; '.join(msgs)}")
    fields = {k: v for k, v in fields.items() if k != "name"}
    return Gr00tN16Config(**fields)


def load_preset(name: str, **overrides: Any) -> Gr00tN16Config:
    """Config of preset `name` (`n16`, `n16_release`, `n16_tiny`, ...) with field overrides."""
    fields = preset_dict(name)
    fields.update(overrides)
    return config_from_dict(fields)
