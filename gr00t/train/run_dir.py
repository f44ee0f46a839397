"""The run directory: checkpoint layout, atomic publish, rotation, the run lock and the resume state.

Entry point: ``RunDir(path)``. Everything the package writes into or reads back from a run
directory goes through it (the file names below are its constants)::

    <run_dir>/
      checkpoint-<N>/                  one complete, loadable model + everything to resume exactly
        COMPLETE                       completion marker (JSON: step, time); written last
        config.json                    Gr00tN16Config (save_pretrained)
        model.safetensors              the raw training weights (save_pretrained); a LoRA run keeps peft's
                                       layout (*.base_layer.*, *.lora_A/B.*), merged when a policy loads it
        ema.safetensors                EMA of the trained weights, same key names (trainer.ema_decay)
        lora_config.json               r, alpha, targets of a LoRA run (what the loader merges with)
        processor_config.json, tokenizer/   processor state (processor.save_pretrained), when given
        statistics.json                dataset statistics used for normalisation, when given
        embodiment_map.json            embodiment tag -> projector index, when given
        experiment_config.yaml         the resolved Hydra config, when given
        heldout_episodes.json          episodes held out of training per dataset (val_episodes=)
        training_settings.json         the TrainingSettings of the run
        data_state.json                the sampler's state: global draws consumed (data position)
        optimizer.pt, scheduler.pt     optimiser / scheduler (single process and plain DDP)
        optimizer_params.json          ordered parameter names per optimiser group (gr00t.train.resume_check)
        global_step<N>/, latest        DeepSpeed engine checkpoint (under DeepSpeed; incl. optimizer)
        rng_state.pth | rng_state_<rank>.pth   python / numpy / torch (/ cuda) RNG per rank
        trainer_state.json             HF TrainerState (global step, log history)
      checkpoint-<N>.tmp-<pid>/        a checkpoint being written by process <pid> (ignored; the next
                                       start removes it unless that process still runs)
      metrics.jsonl, loss_curve.png    logging (gr00t.train.logging_callbacks); val_loss rows too
      wandb/, wandb_run_id             offline wandb files; the id makes a resumed run continue the same run
      superseded-<time>/               old checkpoints moved aside by resume=false
      PREEMPTED                        present while a preempted run waits to be requeued
      RUN_LOCK                         held (flock) by the run's rank 0; names the holder (gr00t.train.run_lock)

Use::

    run = RunDir(run_dir)
    with run.lock():                                # rank 0: one trainer per run directory
        resume = run.prepare(resume=True)           # newest complete Checkpoint (or None); debris removed
        staging = run.begin_checkpoint(step, pid)   # every rank writes into staging.path
        staging.write_side_files(...)               # rank 0
        run.publish(staging); run.rotate(keep)      # rank 0, after every rank is done
    resume.data_state(), resume.optimizer_param_names(), resume.tensor_shapes(), resume.ema_path ...

A crash at any point leaves either the old set of complete checkpoints or the old set plus the new
one, never a half-written ``checkpoint-<N>``. Every file goes through `gr00t.atomic`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gr00t import atomic
from gr00t.data.heldout import HELDOUT_FILE
from gr00t.model.checkpoint_files import WEIGHTS_INDEX_NAME, WEIGHTS_NAME
from gr00t.model.weights import EMA_WEIGHTS_NAME, LORA_CONFIG_NAME
from gr00t.train.run_lock import holding_run_dir

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
COMPLETE_MARKER = "COMPLETE"
TMP_INFIX = ".tmp-"
DATA_STATE_NAME = "data_state.json"
SETTINGS_NAME = "training_settings.json"
STATISTICS_NAME = "statistics.json"
EMBODIMENT_MAP_NAME = "embodiment_map.json"
EXPERIMENT_CONFIG_NAME = "experiment_config.yaml"
OPTIMIZER_PARAMS_NAME = "optimizer_params.json"
HELDOUT_NAME = HELDOUT_FILE
PREEMPTED_MARKER = "PREEMPTED"
OPTIMIZER_NAMES_FORMAT = 1
RUN_FILES = ("trainer_state.json", "metrics.jsonl", "loss_curve.png", "wandb_run_id")

_FINAL_RE = re.compile(rf"^{re.escape(CHECKPOINT_PREFIX)}(\d+)$")
# checkpoint-<step>.tmp-<pid>, optionally with a -<word> suffix (a folder renamed aside while replaced)
_TMP_RE = re.compile(rf"^{re.escape(CHECKPOINT_PREFIX)}(\d+){re.escape(TMP_INFIX)}(\d+)(?:-\w+)?$")

__all__ = [
    "COMPLETE_MARKER",
    "DATA_STATE_NAME",
    "EMA_WEIGHTS_NAME",
    "HELDOUT_NAME",
    "OPTIMIZER_PARAMS_NAME",
    "PREEMPTED_MARKER",
    "Checkpoint",
    "CheckpointStaging",
    "RunDir",
    "checkpoint_step",
]


def checkpoint_step(path: str | Path) -> int:
    """Step number encoded in a checkpoint folder name (final or temporary)."""
    match = _FINAL_RE.match(Path(path).name) or _TMP_RE.match(Path(path).name)
    if not match:
        raise ValueError(f"{path}: not a checkpoint folder (expected '{CHECKPOINT_PREFIX}<step>')")
    return int(match.group(1))


def temp_owner(path: str | Path) -> int | None:
    """The pid of the process that writes a temporary checkpoint folder (None for other folders)."""
    match = _TMP_RE.match(Path(path).name)
    return int(match.group(2)) if match else None


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: corrupt {what} ({e}); expected a JSON object") from e


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


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint folder and the resume state it holds (read-only)."""

    path: Path

    @property
    def step(self) -> int:
        return checkpoint_step(self.path)

    @property
    def is_complete(self) -> bool:
        """It has its final name and the completion marker."""
        return bool(_FINAL_RE.match(self.path.name)) and (self.path / COMPLETE_MARKER).is_file()

    @property
    def ema_path(self) -> Path | None:
        """``ema.safetensors`` when the run kept an EMA."""
        path = self.path / EMA_WEIGHTS_NAME
        return path if path.is_file() else None

    def data_state(self) -> dict[str, Any] | None:
        """The sampler state (data position), or None if the checkpoint has none."""
        path = self.path / DATA_STATE_NAME
        return _read_json(path, "data state") if path.is_file() else None

    def config(self) -> dict[str, Any]:
        """config.json as a dict ({} when absent)."""
        path = self.path / "config.json"
        if not path.is_file():
            return {}
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e}); expected the checkpoint's model config") from e

    def optimizer_param_names(self) -> list[dict[str, Any]] | None:
        """``optimizer_params.json``: ordered parameter names per optimiser group (None when absent)."""
        path = self.path / OPTIMIZER_PARAMS_NAME
        if not path.is_file():
            return None
        data = _read_json(path, "optimiser parameter names")
        groups = data.get("param_groups") if isinstance(data, dict) else None
        valid = isinstance(groups, list) and all(
            isinstance(g, dict)
            and isinstance(g.get("params"), list)
            and all(isinstance(n, str) for n in g["params"])
            for g in groups
        )
        if not valid:
            raise ValueError(
                f"{path}: expected {{'param_groups': [{{'name': str, 'params': [str, ...]}}, ...]}}, "
                f"got {str(data)[:200]}"
            )
        return [
            {"name": str(g.get("name", f"group_{i}")), "params": list(g["params"])}
            for i, g in enumerate(groups)
        ]

    def tensor_shapes(self) -> dict[str, tuple[int, ...]] | None:
        """Name → shape of every tensor in the safetensors weights (headers only; None without weights)."""
        from safetensors import safe_open

        single, index = self.path / WEIGHTS_NAME, self.path / WEIGHTS_INDEX_NAME
        if single.is_file():
            files = [single]
        elif index.is_file():
            weight_map = _read_json(index, "safetensors index")
            if not isinstance(weight_map, dict) or not isinstance(weight_map.get("weight_map"), dict):
                raise ValueError(
                    f"{index}: not a safetensors index (expected a JSON object with 'weight_map')"
                )
            files = [self.path / name for name in sorted(set(weight_map["weight_map"].values()))]
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


class CheckpointStaging:
    """A checkpoint being written (``checkpoint-<N>.tmp-<pid>/``); published by `RunDir.publish`."""

    def __init__(self, path: Path, step: int) -> None:
        self.path = path
        self.step = step

    def write_side_files(
        self,
        *,
        settings: Mapping[str, Any],
        data_state: Mapping[str, Any],
        optimizer_param_names: list[dict[str, Any]] | None = None,
        processor: Any | None = None,
        statistics: Mapping[str, Any] | None = None,
        embodiment_map: Mapping[str, int] | None = None,
        experiment_config: Mapping[str, Any] | str | None = None,
        heldout_episodes: Mapping[str, Any] | None = None,
        lora_config: Mapping[str, Any] | None = None,
    ) -> None:
        """Write every given non-tensor file (rank 0)."""
        out = self.path
        atomic.write_json(out / DATA_STATE_NAME, dict(data_state), sort_keys=True)
        atomic.write_json(out / SETTINGS_NAME, dict(settings), sort_keys=True)
        if optimizer_param_names is not None:
            names = {"format": OPTIMIZER_NAMES_FORMAT, "param_groups": optimizer_param_names}
            atomic.write_json(out / OPTIMIZER_PARAMS_NAME, names, sort_keys=True)
        if processor is not None:
            processor.save_pretrained(str(out))
        optional = {
            STATISTICS_NAME: statistics,
            EMBODIMENT_MAP_NAME: embodiment_map,
            HELDOUT_NAME: heldout_episodes,
            LORA_CONFIG_NAME: lora_config,
        }
        for name, value in optional.items():
            if value is not None:
                atomic.write_json(out / name, jsonable(dict(value)), sort_keys=True)
        if experiment_config is not None:
            atomic.write_text(out / EXPERIMENT_CONFIG_NAME, as_yaml(experiment_config))


class RunDir:
    """A training run's folder (see the module docstring for its tree)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # ---- locking ---------------------------------------------------------------------------------
    def lock(self) -> Any:
        """Context manager: rank 0 holds ``RUN_LOCK`` inside the block (`gr00t.train.run_lock`)."""
        return holding_run_dir(self.path)

    # ---- discovery -------------------------------------------------------------------------------
    def checkpoint_dir(self, step: int) -> Path:
        """Final path of the checkpoint after ``step`` optimiser steps."""
        return self.path / f"{CHECKPOINT_PREFIX}{step}"

    def checkpoints(self) -> list[Checkpoint]:
        """Complete checkpoints, oldest (smallest step) first."""
        if not self.path.is_dir():
            return []
        found = [Checkpoint(p) for p in self.path.iterdir() if p.is_dir()]
        return sorted((c for c in found if c.is_complete), key=lambda c: c.step)

    def latest_checkpoint(self) -> Checkpoint | None:
        """Newest complete checkpoint, or None."""
        found = self.checkpoints()
        return found[-1] if found else None

    def incomplete(self) -> list[Path]:
        """Temporary folders and final-named folders without a completion marker."""
        if not self.path.is_dir():
            return []
        out = []
        for p in self.path.iterdir():
            if not p.is_dir():
                continue
            if _TMP_RE.match(p.name) or (_FINAL_RE.match(p.name) and not (p / COMPLETE_MARKER).is_file()):
                out.append(p)
        return sorted(out)

    def foreign_temporaries(self) -> list[Path]:
        """Temporary checkpoint folders that a live process other than this one is writing (this host)."""
        out = []
        for p in self.incomplete():
            owner = temp_owner(p)
            if owner is not None and owner != os.getpid() and atomic.pid_alive(owner):
                out.append(p)
        return out

    # ---- clean-up and start --------------------------------------------------------------------
    def remove_incomplete(self) -> list[Path]:
        """Delete what `incomplete` lists, except another live process's temporaries (rank 0, locked)."""
        keep = set(self.foreign_temporaries())
        removed = [p for p in self.incomplete() if p not in keep]
        for p in removed:
            shutil.rmtree(p, ignore_errors=True)
        return removed

    def archive(self) -> Path | None:
        """Move every checkpoint and the run's logs into ``superseded-<time>/`` (``resume=false``)."""
        keep = set(self.foreign_temporaries())
        found = [c.path for c in self.checkpoints()] + [p for p in self.incomplete() if p not in keep]
        if not found:
            return None
        dest = self.path / time.strftime("superseded-%Y%m%d-%H%M%S", time.gmtime())
        dest.mkdir(parents=True, exist_ok=True)
        for p in found:
            os.replace(p, dest / p.name)
        for name in RUN_FILES:
            if (self.path / name).exists():
                os.replace(self.path / name, dest / name)
        return dest

    def prepare(self, resume: bool) -> Checkpoint | None:
        """Start of a run (rank 0, locked): remove debris, then the newest complete checkpoint to resume
        from (``resume``) or archive the old ones (None). Clears a previous ``PREEMPTED`` marker."""
        self.path.mkdir(parents=True, exist_ok=True)
        for removed in self.remove_incomplete():
            logger.warning("removed incomplete checkpoint %s", removed)
        found = None
        if resume:
            found = self.latest_checkpoint()
        else:
            archived = self.archive()
            if archived is not None:
                logger.warning("resume=false: previous checkpoints moved to %s", archived)
        (self.path / PREEMPTED_MARKER).unlink(missing_ok=True)
        return found

    # ---- writing checkpoints ------------------------------------------------------------------
    def begin_checkpoint(self, step: int, pid: int, create: bool) -> CheckpointStaging:
        """The staging folder ``checkpoint-<step>.tmp-<pid>`` (``pid``: rank 0's, the same on every rank);
        ``create`` on the process that creates it (rank 0)."""
        path = self.path / f"{CHECKPOINT_PREFIX}{step}{TMP_INFIX}{pid}"
        if create:
            path.mkdir(parents=True, exist_ok=True)
        return CheckpointStaging(path, step)

    def publish(self, staging: CheckpointStaging) -> Checkpoint:
        """Mark the staging folder complete and rename it to ``checkpoint-<step>`` (rank 0 only).

        Every file gets ordinary umask modes first (safetensors writes 0600). An existing complete
        ``checkpoint-<step>`` (a re-save of the same step) is first renamed out of the way, so there
        is no instant without a complete copy on disk.
        """
        tmp = staging.path
        if not tmp.is_dir():
            raise FileNotFoundError(f"checkpoint being published does not exist: {tmp}")
        atomic.share_tree(tmp)
        atomic.fsync_tree(tmp)
        marker = {"step": staging.step, "time": time.time()}
        atomic.write_json(tmp / COMPLETE_MARKER, marker, sort_keys=True)
        final = tmp.parent / f"{CHECKPOINT_PREFIX}{staging.step}"
        old = None
        if final.exists():
            old = tmp.parent / f"{final.name}{TMP_INFIX}{os.getpid()}-replaced"
            (final / COMPLETE_MARKER).unlink(missing_ok=True)
            os.replace(final, old)
        os.replace(tmp, final)
        atomic.fsync_path(final.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return Checkpoint(final)

    def rotate(self, keep: int | None) -> list[Path]:
        """Delete the oldest complete checkpoints so that at most ``keep`` remain (None/<=0: keep all)."""
        if keep is None or keep <= 0:
            return []
        found = self.checkpoints()
        doomed = [c.path for c in found[: max(0, len(found) - keep)]]
        for p in doomed:
            # Unmark first so a crash mid-delete leaves an incomplete (ignored) folder, not a broken one.
            (p / COMPLETE_MARKER).unlink(missing_ok=True)
            shutil.rmtree(p, ignore_errors=True)
        return doomed

    # ---- run-level markers ---------------------------------------------------------------------
    def mark_preempted(self, record: Mapping[str, Any]) -> None:
        """Write ``PREEMPTED`` (the next start clears it)."""
        atomic.write_json(self.path / PREEMPTED_MARKER, dict(record), sort_keys=True)

    @property
    def preempted(self) -> bool:
        return (self.path / PREEMPTED_MARKER).is_file()
