"""Named model presets (`configs/model/<name>.yaml`) turned into `Gr00tN16Config` objects."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from gr00t.model.config import Gr00tN16Config
from gr00t.paths import config_root


def available_presets() -> list[str]:
    """Names of the model presets shipped in `configs/model/`."""
    return sorted(p.stem for p in (config_root() / "model").glob("*.yaml"))


def _load_yaml_with_defaults(path: Path, seen: tuple[str, ...] = ()) -> DictConfig:
    if not path.is_file():
        names = available_presets()
        hint = difflib.get_close_matches(path.stem, names, n=1)
        extra = f" Did you mean {hint[0]!r}?" if hint else ""
        raise FileNotFoundError(f"model preset {path.stem!r} not found at {path}. Available: {names}.{extra}")
    if path.stem in seen:
        raise ValueError(f"model preset {path} includes itself through defaults: {seen}")
    raw = OmegaConf.load(path)
    merged = OmegaConf.create()
    defaults = raw.pop("defaults", None) or []
    for entry in defaults:
        if entry == "_self_":
            continue
        merged = OmegaConf.merge(
            merged, _load_yaml_with_defaults(path.parent / f"{entry}.yaml", seen + (path.stem,))
        )
    return OmegaConf.merge(merged, raw)


def preset_dict(name: str) -> dict[str, Any]:
    """The resolved fields of preset `name` as a plain dict (without the `name` key)."""
    cfg = _load_yaml_with_defaults(config_root() / "model" / f"{name}.yaml")
    data = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(data, dict)
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
