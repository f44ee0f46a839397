"""Checkpoint folders: layout, atomic publication, discovery of the newest complete one, rotation.

A run directory looks like this (``<N>`` = optimiser steps done)::

    <run_dir>/
      checkpoint-<N>/                  one complete, loadable model + everything to resume exactly
        COMPLETE                       completion marker (JSON: step, time); written last
        config.json                    Gr00tN16Config (save_pretrained)
        model.safetensors              weights (save_pretrained, safetensors)
        processor_config.json, tokenizer/   processor state (processor.save_pretrained), when given
        statistics.json                dataset statistics used for normalisation, when given
        embodiment_map.json            embodiment tag -> projector index, when given
        experiment_config.yaml         the resolved Hydra config, when given
        training_settings.json         the TrainingSettings of the run
        data_state.json                the sampler's state: global draws consumed (data position)
        optimizer.pt, scheduler.pt     optimiser / scheduler (single process and plain DDP)
        optimizer_params.json          ordered parameter names per optimiser group (gr00t.train.optimizer_state)
        global_step<N>/, latest        DeepSpeed engine checkpoint (under DeepSpeed; incl. optimizer)
        rng_state.pth | rng_state_<rank>.pth   python / numpy / torch (/ cuda) RNG per rank
        trainer_state.json             HF TrainerState (global step, log history)
      checkpoint-<N>.tmp-<pid>/        a checkpoint being written by process <pid> (ignored; the next
                                       start removes it unless that process still runs)
      metrics.jsonl, loss_curve.png    logging (gr00t.train.logging_callbacks)
      wandb/, wandb_run_id             offline wandb files; the id makes a resumed run continue the same run
      PREEMPTED                        present while a preempted run waits to be requeued
      RUN_LOCK                         held (flock) by the run's rank 0; names the holder (gr00t.train.run_lock)

Writes go to ``checkpoint-<N>.tmp-<pid>``; when every rank has finished, rank 0 writes ``COMPLETE``,
fsyncs and renames the folder to ``checkpoint-<N>``. A crash at any point leaves either the old set
of complete checkpoints or the old set plus the new one, never a half-written ``checkpoint-<N>``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gr00t import atomic
from gr00t.model.checkpoint_files import check_checkpoint_files

CHECKPOINT_PREFIX = "checkpoint-"
COMPLETE_MARKER = "COMPLETE"
TMP_INFIX = ".tmp-"
DATA_STATE_NAME = "data_state.json"
SETTINGS_NAME = "training_settings.json"
STATISTICS_NAME = "statistics.json"
EMBODIMENT_MAP_NAME = "embodiment_map.json"
EXPERIMENT_CONFIG_NAME = "experiment_config.yaml"
OPTIMIZER_PARAMS_NAME = "optimizer_params.json"
PREEMPTED_MARKER = "PREEMPTED"

_FINAL_RE = re.compile(rf"^{re.escape(CHECKPOINT_PREFIX)}(\d+)$")
# checkpoint-<step>.tmp-<pid>, optionally with a -<word> suffix (a folder renamed aside while replaced)
_TMP_RE = re.compile(rf"^{re.escape(CHECKPOINT_PREFIX)}(\d+){re.escape(TMP_INFIX)}(\d+)(?:-\w+)?$")


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    """Final path of the checkpoint after ``step`` optimiser steps."""
    return Path(run_dir) / f"{CHECKPOINT_PREFIX}{step}"


def temp_checkpoint_dir(run_dir: str | Path, step: int, pid: int) -> Path:
    """Path a checkpoint is written to before it is published."""
    return Path(run_dir) / f"{CHECKPOINT_PREFIX}{step}{TMP_INFIX}{pid}"


def is_complete(path: str | Path) -> bool:
    """A checkpoint folder is complete iff it has its final name and the completion marker."""
    path = Path(path)
    return bool(_FINAL_RE.match(path.name)) and (path / COMPLETE_MARKER).is_file()


def checkpoint_step(path: str | Path) -> int:
    """Step number encoded in a checkpoint folder name."""
    match = _FINAL_RE.match(Path(path).name) or _TMP_RE.match(Path(path).name)
    if not match:
        raise ValueError(f"{path}: not a checkpoint folder (expected '{CHECKPOINT_PREFIX}<step>')")
    return int(match.group(1))


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of ``run_dir``, oldest (smallest step) first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [p for p in run_dir.iterdir() if p.is_dir() and is_complete(p)]
    return sorted(found, key=checkpoint_step)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """Newest complete checkpoint of ``run_dir`` or None."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def incomplete_checkpoints(run_dir: str | Path) -> list[Path]:
    """Temporary folders and final-named folders without a completion marker."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    out = []
    for p in run_dir.iterdir():
        if not p.is_dir():
            continue
        if _TMP_RE.match(p.name) or (_FINAL_RE.match(p.name) and not (p / COMPLETE_MARKER).is_file()):
            out.append(p)
    return sorted(out)


def temp_owner(path: str | Path) -> int | None:
    """The pid of the process that writes a temporary checkpoint folder (None for other folders)."""
    match = _TMP_RE.match(Path(path).name)
    return int(match.group(2)) if match else None


def foreign_temporaries(run_dir: str | Path) -> list[Path]:
    """Temporary checkpoint folders that a live process other than this one is writing (on this host)."""
    out = []
    for p in incomplete_checkpoints(run_dir):
        owner = temp_owner(p)
        if owner is not None and owner != os.getpid() and atomic.pid_alive(owner):
            out.append(p)
    return out


def remove_incomplete(run_dir: str | Path) -> list[Path]:
    """Delete what :func:`incomplete_checkpoints` lists, except another live process's temporaries.

    Call on rank 0, holding the run-directory lock, before training starts. A temporary folder
    carries its writer's pid: one whose writer still runs (another run, or a trainer outliving its
    launcher) is left alone; see :func:`foreign_temporaries`.
    """
    keep = set(foreign_temporaries(run_dir))
    removed = [p for p in incomplete_checkpoints(run_dir) if p not in keep]
    for p in removed:
        shutil.rmtree(p, ignore_errors=True)
    return removed


def publish(tmp_dir: str | Path, step: int) -> Path:
    """Mark ``tmp_dir`` complete and rename it to ``checkpoint-<step>`` next to it (rank 0 only).

    Every file gets ordinary umask modes first (safetensors writes 0600). An existing complete
    ``checkpoint-<step>`` (e.g. a re-save of the same step) is replaced: it is first renamed out of
    the way, so there is no instant without a complete copy on disk.
    """
    tmp_dir = Path(tmp_dir)
    if not tmp_dir.is_dir():
        raise FileNotFoundError(f"checkpoint being published does not exist: {tmp_dir}")
    atomic.share_tree(tmp_dir)
    atomic.fsync_tree(tmp_dir)
    atomic.write_json(tmp_dir / COMPLETE_MARKER, {"step": step, "time": time.time()}, sort_keys=True)
    final = checkpoint_dir(tmp_dir.parent, step)
    old = None
    if final.exists():
        old = tmp_dir.parent / f"{final.name}{TMP_INFIX}{os.getpid()}-replaced"
        (final / COMPLETE_MARKER).unlink(missing_ok=True)
        os.replace(final, old)
    os.replace(tmp_dir, final)
    atomic.fsync_path(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return final


def rotate(run_dir: str | Path, keep: int | None) -> list[Path]:
    """Delete the oldest complete checkpoints so that at most ``keep`` remain (None/<=0: keep all)."""
    if keep is None or keep <= 0:
        return []
    found = list_checkpoints(run_dir)
    doomed = found[: max(0, len(found) - keep)]
    for p in doomed:
        # Unmark first so a crash mid-delete leaves an incomplete (ignored) folder, not a broken one.
        (p / COMPLETE_MARKER).unlink(missing_ok=True)
        shutil.rmtree(p, ignore_errors=True)
    return doomed


def archive_checkpoints(run_dir: str | Path) -> Path | None:
    """Move every checkpoint of ``run_dir`` into ``superseded-<time>/`` (for ``resume=false``)."""
    run_dir = Path(run_dir)
    keep = set(foreign_temporaries(run_dir))
    found = list_checkpoints(run_dir) + [p for p in incomplete_checkpoints(run_dir) if p not in keep]
    if not found:
        return None
    dest = run_dir / time.strftime("superseded-%Y%m%d-%H%M%S", time.gmtime())
    dest.mkdir(parents=True, exist_ok=True)
    for p in found:
        os.replace(p, dest / p.name)
    for name in ("trainer_state.json", "metrics.jsonl", "loss_curve.png", "wandb_run_id"):
        if (run_dir / name).exists():
            os.replace(run_dir / name, dest / name)
    return dest


def read_data_state(checkpoint: str | Path) -> dict | None:
    """The sampler state stored in a checkpoint, or None if the checkpoint has none."""
    path = Path(checkpoint) / DATA_STATE_NAME
    if not path.is_file():
        return None
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: corrupt data state ({e}); expected a JSON object") from e


# ---- resume compatibility ----------------------------------------------------------------------

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
WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"


class ResumeMismatchError(ValueError):
    """The run does not match the checkpoint it would resume from (its parameters or data order)."""


def checkpoint_tensor_shapes(checkpoint: str | Path) -> dict[str, tuple[int, ...]] | None:
    """Name → shape of every tensor in a checkpoint's safetensors weights (headers only, no data read).

    None when the checkpoint has no safetensors weights (e.g. DeepSpeed engine files only).
    """
    from safetensors import safe_open

    checkpoint = Path(checkpoint)
    single, index = checkpoint / WEIGHTS_NAME, checkpoint / WEIGHTS_INDEX_NAME
    if single.is_file():
        files = [single]
    elif index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(
                f"{index}: not a safetensors index (expected a JSON object with 'weight_map'): {e}"
            ) from e
        files = [checkpoint / name for name in sorted(set(weight_map.values()))]
    else:
        return None
    shapes: dict[str, tuple[int, ...]] = {}
    for path in files:
        try:
            with safe_open(str(path), framework="pt") as f:
                for key in f.keys():
                    shapes[key] = tuple(f.get_slice(key).get_shape())
        except Exception as e:  # noqa: BLE001 - safetensors raises several types for bad files
            raise ValueError(f"{path}: unreadable safetensors file: {e}") from e
    return shapes


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


def check_resume_compatible(checkpoint: str | Path, model: Any) -> dict[str, tuple[Any, Any]]:
    """Raise `ResumeMismatchError` unless ``model`` has exactly the checkpoint's parameters.

    First every file a resume reads is checked (`IncompleteCheckpointError` names a truncated one).

    The decision compares parameter names and shapes (the checkpoint's safetensors headers against
    ``model.state_dict()``), so training-only config changes (``tune_*``, dropout rates that keep the
    same parameters, ...) are allowed. The error names the differing config.json fields, the first
    differing parameters and the checkpoint. Returns the config differences (for logging).
    """
    checkpoint = Path(checkpoint)
    check_checkpoint_files(checkpoint)  # a truncated or corrupt file is named here, not deep in a loader
    config_path = checkpoint / "config.json"
    saved_config: dict[str, Any] = {}
    if config_path.is_file():
        try:
            saved_config = json.loads(config_path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(
                f"{config_path}: not valid JSON ({e}); expected the checkpoint's model config"
            ) from e
    config = getattr(model, "config", None)
    new_config = config.to_dict() if hasattr(config, "to_dict") else {}
    if saved_config and hasattr(config, "from_dict"):  # same defaults/normalisation on both sides
        try:
            saved_config = type(config).from_dict(saved_config).to_dict()
        except (ValueError, TypeError):  # an older config this version rejects: compare the raw file
            pass
    differences = config_differences(saved_config, new_config) if saved_config and new_config else {}
    saved = checkpoint_tensor_shapes(checkpoint)
    if saved is None:
        return differences
    current = model_tensor_shapes(model)
    tied = _tied_aliases(model)
    missing = sorted(k for k in current.keys() - saved.keys() if k not in tied)
    unexpected = sorted(saved.keys() - current.keys())
    reshaped = sorted(k for k in current.keys() & saved.keys() if current[k] != saved[k])
    if not (missing or unexpected or reshaped):
        return differences

    def first(names: list[str], describe=lambda k: k) -> str:
        shown = ", ".join(describe(k) for k in names[:5])
        return shown + (f", … ({len(names)} in all)" if len(names) > 5 else "")

    problems = []
    if unexpected:
        problems.append(f"in the checkpoint but not in the model: {first(unexpected)}")
    if missing:
        problems.append(f"in the model but not in the checkpoint: {first(missing)}")
    if reshaped:
        problems.append(
            "with another shape: " + first(reshaped, lambda k: f"{k} {list(saved[k])} -> {list(current[k])}")
        )
    fields = (
        ", ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in ((k, *v) for k, v in differences.items()))
        if differences
        else "none (the parameters differ through training settings, e.g. lora_rank)"
    )
    raise ResumeMismatchError(
        f"cannot resume from {checkpoint}: the model's architecture differs from the checkpoint's.\n"
        f"  config.json fields that differ (checkpoint -> now): {fields}\n"
        f"  parameters {'; '.join(problems)}\n"
        f"Start over with resume=false (the old checkpoints are moved to <run_dir>/superseded-<time>/), "
        f"use a new run_dir, or restore the checkpoint's model settings."
    )
