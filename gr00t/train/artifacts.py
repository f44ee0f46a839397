"""The non-tensor files of a checkpoint folder (rank 0): settings, data position, processor, statistics,
embodiment map, the resolved experiment config and the optimiser's parameter names.

Each file is written atomically (:mod:`gr00t.atomic`); see :mod:`gr00t.train.checkpoint` for
the folder layout.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from gr00t import atomic
from gr00t.train import checkpoint as ckpt
from gr00t.train.optimizer_state import write_param_names
from gr00t.train.settings import TrainingSettings


def jsonable(obj: Any) -> Any:
    """``obj`` with tensors/arrays turned into lists, dataclasses into dicts and keys into strings."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return jsonable(dataclasses.asdict(obj))
    return obj


def as_yaml(config: Any) -> str:
    """YAML text of a config given as YAML text or as a (nested) dict."""
    if isinstance(config, str):
        return config
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.create(jsonable(config)))


def write_artifacts(
    directory: Path,
    *,
    settings: TrainingSettings,
    data_state: dict[str, Any],
    processor: Any | None = None,
    statistics: dict[str, Any] | None = None,
    embodiment_map: dict[str, int] | None = None,
    experiment_config: dict[str, Any] | str | None = None,
    optimizer_param_names: list[dict[str, Any]] | None = None,
) -> None:
    """Write every given artifact into the checkpoint folder ``directory`` being assembled."""
    atomic.write_json(directory / ckpt.DATA_STATE_NAME, data_state, sort_keys=True)
    atomic.write_json(directory / ckpt.SETTINGS_NAME, settings.to_dict(), sort_keys=True)
    if optimizer_param_names is not None:
        write_param_names(directory, optimizer_param_names)
    if processor is not None:
        processor.save_pretrained(str(directory))
    if statistics is not None:
        atomic.write_json(directory / ckpt.STATISTICS_NAME, jsonable(statistics), sort_keys=True)
    if embodiment_map is not None:
        atomic.write_json(directory / ckpt.EMBODIMENT_MAP_NAME, dict(embodiment_map), sort_keys=True)
    if experiment_config is not None:
        atomic.write_text(directory / ckpt.EXPERIMENT_CONFIG_NAME, as_yaml(experiment_config))
