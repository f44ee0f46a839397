"""Whether a checkpoint fits the run that would resume from it: model parameters and optimiser state.

* Parameters: names and shapes of the checkpoint's safetensors headers against
  ``model.state_dict()``; a changed architecture is refused up front with `ResumeMismatchError`,
  naming the differing config.json fields. Training-only changes (``tune_*``, dropout rates that
  keep the parameters) resume.
* Optimiser state: AdamW moments are stored per tensor in the order of the optimiser's groups,
  without names. When the trainable set changes between runs (``tune_llm``, ...), the moments could
  load onto other parameters, silently whenever counts and shapes agree. So every checkpoint also
  records the ordered parameter names of each group (``optimizer_params.json``, written and read by
  `gr00t.train.run_dir`)::

      {"format": 1, "param_groups": [{"name": "head/decay", "params": ["action_head.x.weight", ...]}, ...]}

  On any difference the run starts with fresh moments (single process / DDP) or is refused
  (DeepSpeed, whose engine cannot restore a partial state). Checkpoints without the names fall back
  to comparing tensor counts and shapes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from gr00t.model.checkpoint_files import check_checkpoint_files
from gr00t.train.run_dir import Checkpoint

# config.json entries that say nothing about the model (bookkeeping written by transformers).
_CONFIG_NOISE = frozenset(
    {
        "transformers_version",
        "_name_or_path",
        "architectures",
        "dtype",
        "torch_dtype",
        "auto_map",
        "_commit_hash",
        "_attn_implementation_autoset",
    }
)


class ResumeMismatchError(ValueError):
    """The run does not match the checkpoint it would resume from (its parameters or data order)."""


def model_tensor_shapes(model: Any) -> dict[str, tuple[int, ...]]:
    """Name → full shape of every entry of ``model.state_dict()`` (ZeRO-3 partitioned parameters included)."""
    shapes = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    for name, param in model.named_parameters(remove_duplicate=False):
        if name in shapes and hasattr(param, "ds_shape"):
            shapes[name] = tuple(param.ds_shape)
    return shapes


def _tied_aliases(model: Any) -> set[str]:
    """state_dict names that share storage with an earlier name (tied weights are saved once)."""
    seen: dict[tuple[int, int], str] = {}
    aliases = set()
    for name, t in model.state_dict().items():
        if t.numel() == 0:
            continue
        key = (t.untyped_storage().data_ptr(), t.storage_offset())
        if key in seen:
            aliases.update({name, seen[key]})
        else:
            seen[key] = name
    return aliases


def config_differences(
    old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = ""
) -> dict[str, tuple[Any, Any]]:
    """Dotted field name → (checkpoint value, new value) for every differing config field."""
    out: dict[str, tuple[Any, Any]] = {}
    for key in sorted(set(old) | set(new)):
        if not prefix and key in _CONFIG_NOISE:
            continue
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out.update(config_differences(a, b, f"{prefix}{key}."))
        elif a != b and not (
            isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and list(a) == list(b)
        ):
            out[f"{prefix}{key}"] = (a, b)
    return out


def _first(names: list[str], count: int = 5, describe=lambda k: k) -> str:
    shown = ", ".join(describe(k) for k in names[:count])
    return shown + (f", … ({len(names)} in all)" if len(names) > count else "")


def _normalised_config(checkpoint: Checkpoint, model: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(checkpoint's config, model's config) as dicts, both through this version's config class."""
    saved_config = checkpoint.config()
    config = getattr(model, "config", None)
    new_config = config.to_dict() if hasattr(config, "to_dict") else {}
    if saved_config and hasattr(config, "from_dict"):  # same defaults/normalisation on both sides
        try:
            saved_config = type(config).from_dict(saved_config).to_dict()
        except (ValueError, TypeError):  # an older config this version rejects: compare the raw file
            pass
    return saved_config, new_config


def check_resume_compatible(checkpoint: str | Path | Checkpoint, model: Any) -> dict[str, tuple[Any, Any]]:
    """Raise `ResumeMismatchError` unless ``model`` has exactly the checkpoint's parameters.

    First every file a resume reads is checked (`IncompleteCheckpointError` names a truncated one).

    The decision compares parameter names and shapes (the checkpoint's safetensors headers against
    ``model.state_dict()``), so training-only config changes (``tune_*``, dropout rates that keep the
    same parameters, ...) are allowed. The error names the differing config.json fields, the first
    differing parameters and the checkpoint. Returns the config differences (for logging).
    """
    checkpoint = checkpoint if isinstance(checkpoint, Checkpoint) else Checkpoint(Path(checkpoint))
    check_checkpoint_files(checkpoint.path)  # a truncated or corrupt file is named here, not in a loader
    saved_config, new_config = _normalised_config(checkpoint, model)
    differences = config_differences(saved_config, new_config) if saved_config and new_config else {}
    saved = checkpoint.tensor_shapes()
    if saved is None:
        return differences
    current = model_tensor_shapes(model)
    tied = _tied_aliases(model)
    missing = sorted(k for k in current.keys() - saved.keys() if k not in tied)
    unexpected = sorted(saved.keys() - current.keys())
    reshaped = sorted(k for k in current.keys() & saved.keys() if current[k] != saved[k])
    if not (missing or unexpected or reshaped):
        return differences
    raise ResumeMismatchError(
        _mismatch_message(checkpoint.path, differences, saved, current, missing, unexpected, reshaped)
    )


def _mismatch_message(
    checkpoint: Path,
    differences: Mapping[str, tuple[Any, Any]],
    saved: Mapping[str, tuple[int, ...]],
    current: Mapping[str, tuple[int, ...]],
    missing: list[str],
    unexpected: list[str],
    reshaped: list[str],
) -> str:
    problems = []
    if unexpected:
        problems.append(f"in the checkpoint but not in the model: {_first(unexpected)}")
    if missing:
        problems.append(f"in the model but not in the checkpoint: {_first(missing)}")
    if reshaped:
        problems.append(
            "with another shape: "
            + _first(reshaped, describe=lambda k: f"{k} {list(saved[k])} -> {list(current[k])}")
        )
    fields = (
        ", ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in ((k, *v) for k, v in differences.items()))
        if differences
        else "none (the parameters differ through training settings, e.g. lora_rank)"
    )
    return (
        f"cannot resume from {checkpoint}: the model's architecture differs from the checkpoint's.\n"
        f"  config.json fields that differ (checkpoint -> now): {fields}\n"
        f"  parameters {'; '.join(problems)}\n"
        f"Start over with resume=false (the old checkpoints are moved to <run_dir>/superseded-<time>/), "
        f"use a new run_dir, or restore the checkpoint's model settings."
    )


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
        parts.append(f"now also trains {_first(added, 3)}")
    if removed:
        parts.append(f"no longer trains {_first(removed, 3)}")
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
    checkpoint: Checkpoint, optimizer: torch.optim.Optimizer, current_names: list[dict[str, Any]] | None
) -> str | None:
    """Why the checkpoint's optimiser state must not be loaded into ``optimizer`` (None when it may).

    Compares the stored parameter names with ``current_names`` when both exist, then tensor counts
    and shapes.
    """
    saved_names = checkpoint.optimizer_param_names()
    if saved_names is not None and current_names is not None:
        reason = names_difference(saved_names, current_names)
        if reason is not None:
            return reason
    return shape_mismatch(checkpoint.path, optimizer)


def deepspeed_resume_problem(
    checkpoint: Checkpoint,
    model: torch.nn.Module,
    groups: list[dict[str, Any]],
    changed: Mapping[str, tuple[Any, Any]],
) -> str | None:
    """Why DeepSpeed's engine cannot restore the checkpoint's optimiser state into this run (None: it can).

    Decided by the stored optimiser parameter names (``groups``: this run's optimiser groups);
    checkpoints without them fall back to the ``tune_*`` config fields that changed.
    """
    saved = checkpoint.optimizer_param_names()
    if saved is not None:
        return names_difference(saved, param_group_names(model, groups))
    switched = sorted(k for k in changed if k.startswith("tune_") or k == "backbone_trainable_params_fp32")
    if not switched:
        return None
    return ", ".join(f"{k}: {changed[k][0]!r} -> {changed[k][1]!r}" for k in switched)


__all__ = [
    "ResumeMismatchError",
    "check_resume_compatible",
    "config_differences",
    "deepspeed_resume_problem",
    "model_tensor_shapes",
    "names_difference",
    "optimizer_state_mismatch",
    "param_group_names",
    "shape_mismatch",
]
