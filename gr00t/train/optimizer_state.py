"""Whether a checkpoint's optimiser state belongs to the optimiser of the run resuming from it.

AdamW moments are stored per tensor in the order of the optimiser's parameter groups, without
names. When the trainable set changes between runs (``tune_llm``, ``tune_top_llm_layers``,
``tune_visual``, ...) the stored moments could load onto other parameters — silently, whenever the
tensor counts and shapes happen to agree. So every checkpoint also records the ordered parameter
names of each group in ``optimizer_params.json``::

    {"format": 1, "param_groups": [{"name": "head/decay", "params": ["action_head.x.weight", ...]}, ...]}

On resume the names are compared with the current optimiser's; on any difference the run starts
with fresh moments (single process / DDP) or is refused (DeepSpeed, whose engine cannot restore a
partial state). Checkpoints written before this file existed fall back to comparing tensor counts
and shapes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from gr00t import atomic
from gr00t.train import checkpoint as ckpt

NAMES_FORMAT = 1


def param_group_names(model: torch.nn.Module, groups: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """``[{"name": group name, "params": [parameter names in order]}, ...]`` of optimiser ``groups``.

    Parameters are named after ``model.named_parameters()``; a tensor that is not a parameter of
    ``model`` is recorded as ``<unnamed:index>``.
    """
    names: dict[int, str] = {}
    for name, param in model.named_parameters():
        names.setdefault(id(param), name)
    out = []
    for index, group in enumerate(groups):
        params = [names.get(id(p), f"<unnamed:{i}>") for i, p in enumerate(group["params"])]
        out.append({"name": str(group.get("name", f"group_{index}")), "params": params})
    return out


def write_param_names(directory: str | Path, groups: list[dict[str, Any]]) -> Path:
    """Write ``optimizer_params.json`` into a checkpoint folder (atomically)."""
    path = Path(directory) / ckpt.OPTIMIZER_PARAMS_NAME
    atomic.write_json(path, {"format": NAMES_FORMAT, "param_groups": groups}, sort_keys=True)
    return path


def read_param_names(checkpoint: str | Path) -> list[dict[str, Any]] | None:
    """The parameter names stored in a checkpoint, or None for a checkpoint without them."""
    path = Path(checkpoint) / ckpt.OPTIMIZER_PARAMS_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: corrupt optimiser parameter names ({e}); expected a JSON object") from e
    groups = data.get("param_groups") if isinstance(data, dict) else None
    valid = isinstance(groups, list) and all(
        isinstance(g, dict)
        and isinstance(g.get("params"), list)
        and all(isinstance(n, str) for n in g["params"])
        for g in groups
    )
    if not valid:
        raise ValueError(
            f"{path}: expected {{'param_groups': [{{'name': str, 'params': [str, ...]}}, ...]}}, got {str(data)[:200]}"
        )
    return [
        {"name": str(g.get("name", f"group_{i}")), "params": list(g["params"])} for i, g in enumerate(groups)
    ]


def _first(names: list[str]) -> str:
    shown = ", ".join(names[:3])
    return shown + (f", … ({len(names)} in all)" if len(names) > 3 else "")


def names_difference(saved: list[dict[str, Any]], current: list[dict[str, Any]]) -> str | None:
    """How the optimiser's parameters differ from the checkpoint's (None when identical, order included)."""
    if [(g["name"], g["params"]) for g in saved] == [(g["name"], g["params"]) for g in current]:
        return None
    saved_all = {n for g in saved for n in g["params"]}
    current_all = {n for g in current for n in g["params"]}
    added = sorted(current_all - saved_all)
    removed = sorted(saved_all - current_all)
    parts = []
    if added:
        parts.append(f"now also trains {_first(added)}")
    if removed:
        parts.append(f"no longer trains {_first(removed)}")
    if parts:
        return "the optimiser's parameters changed: " + "; ".join(parts)
    layout = [(g["name"], len(g["params"])) for g in saved]
    now = [(g["name"], len(g["params"])) for g in current]
    return f"the optimiser holds the same parameters in another group layout or order ({layout} -> {now})"


def shape_mismatch(checkpoint: str | Path, optimizer: torch.optim.Optimizer) -> str | None:
    """Why ``optimizer.pt`` cannot hold ``optimizer``'s state, judged by tensor counts and shapes only.

    The fallback for checkpoints without parameter names. Memory-mapped load: the moments
    themselves are not read. None when they agree (or there is no ``optimizer.pt``).
    """
    path = Path(checkpoint) / "optimizer.pt"
    if not path.is_file():
        return None
    saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    groups = optimizer.param_groups
    saved_sizes = [len(g["params"]) for g in saved.get("param_groups", [])]
    sizes = [len(g["params"]) for g in groups]
    if saved_sizes != sizes:
        return f"the trainable parameter groups held {saved_sizes} tensors, now {sizes}"
    saved_ids = [i for g in saved["param_groups"] for i in g["params"]]
    for index, param in zip(saved_ids, (p for g in groups for p in g["params"])):
        moment = saved.get("state", {}).get(index, {}).get("exp_avg")
        if moment is not None and tuple(moment.shape) != tuple(param.shape):
            return (
                f"a trainable tensor had shape {list(moment.shape)}, its counterpart now {list(param.shape)}"
            )
    return None


def optimizer_state_mismatch(
    checkpoint: str | Path, optimizer: torch.optim.Optimizer, current_names: list[dict[str, Any]] | None
) -> str | None:
    """Why the checkpoint's optimiser state must not be loaded into ``optimizer`` (None when it may).

    Compares the stored parameter names with ``current_names`` when both exist, then tensor counts
    and shapes.
    """
    saved_names = read_param_names(checkpoint)
    if saved_names is not None and current_names is not None:
        reason = names_difference(saved_names, current_names)
        if reason is not None:
            return reason
    return shape_mismatch(checkpoint, optimizer)
