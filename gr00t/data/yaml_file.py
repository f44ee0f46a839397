"""Reading a YAML file whose top level must be a mapping, with errors that name the file."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml


def load_yaml_mapping(path: Path, error: type[Exception]) -> Mapping[str, Any]:
    """Parse `path`; raise `error` naming the file when it is not valid YAML or not a mapping."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, Mapping):
        raise error(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data
