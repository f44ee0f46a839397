"""Where the project's YAML configuration trees live."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def config_root() -> Path:
    """Directory holding the Hydra config groups (`model/`, `embodiment/`, ...).

    `GR00T_CONFIG_DIR` overrides the default `<repo>/configs`.
    """
    return Path(os.environ.get("GR00T_CONFIG_DIR", REPO_ROOT / "configs"))


def recipes_root() -> Path:
    """Directory holding the top-level Hydra recipes."""
    return Path(os.environ.get("GR00T_RECIPES_DIR", REPO_ROOT / "recipes"))


def mixtures_root() -> Path:
    """Directory holding the named data mixtures."""
    return Path(os.environ.get("GR00T_MIXTURES_DIR", REPO_ROOT / "data_mixtures"))
