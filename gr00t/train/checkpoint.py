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
        global_step<N>/, latest        DeepSpeed engine checkpoint (under DeepSpeed; incl. optimizer)
        rng_state.pth | rng_state_<rank>.pth   python / numpy / torch (/ cuda) RNG per rank
        trainer_state.json             HF TrainerState (global step, log history)
      checkpoint-<N>.tmp-<pid>/        a checkpoint being written (ignored, removed on the next start)
      metrics.jsonl, loss_curve.png    logging (gr00t.train.logging_callbacks)
      wandb/, wandb_run_id             offline wandb files; the id makes a resumed run continue the same run
      PREEMPTED                        present while a preempted run waits to be requeued

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
from pathlib import Path

CHECKPOINT_PREFIX = "checkpoint-"
COMPLETE_MARKER = "COMPLETE"
TMP_INFIX = ".tmp-"
DATA_STATE_NAME = "data_state.json"
SETTINGS_NAME = "training_settings.json"
STATISTICS_NAME = "statistics.json"
EMBODIMENT_MAP_NAME = "embodiment_map.json"
EXPERIMENT_CONFIG_NAME = "experiment_config.yaml"
PREEMPTED_MARKER = "PREEMPTED"

_FINAL_RE = re.compile(rf"^{re.escape(CHECKPOINT_PREFIX)}(\d+)$")
_TMP_RE = re.compile(rf"^{re.escape(CHECKPOINT_PREFIX)}(\d+){re.escape(TMP_INFIX)}\d+$")


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


def remove_incomplete(run_dir: str | Path) -> list[Path]:
    """Delete what :func:`incomplete_checkpoints` lists (call on rank 0 before training starts)."""
    removed = incomplete_checkpoints(run_dir)
    for p in removed:
        shutil.rmtree(p, ignore_errors=True)
    return removed


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json_atomic(path: str | Path, data: object) -> None:
    """Write JSON to ``path`` through a temporary file + rename (never a half-written file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write text to ``path`` through a temporary file + rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            try:
                fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            except OSError:
                continue
            try:
                os.fsync(fd)
            except OSError:
                pass
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def publish(tmp_dir: str | Path, step: int) -> Path:
    """Mark ``tmp_dir`` complete and rename it to ``checkpoint-<step>`` next to it (rank 0 only).

    An existing complete ``checkpoint-<step>`` (e.g. a re-save of the same step) is replaced: it is
    first renamed out of the way, so there is no instant without a complete copy on disk.
    """
    tmp_dir = Path(tmp_dir)
    if not tmp_dir.is_dir():
        raise FileNotFoundError(f"checkpoint being published does not exist: {tmp_dir}")
    _fsync_tree(tmp_dir)
    write_json_atomic(tmp_dir / COMPLETE_MARKER, {"step": step, "time": time.time()})
    _fsync_dir(tmp_dir)
    final = checkpoint_dir(tmp_dir.parent, step)
    old = None
    if final.exists():
        old = temp_checkpoint_dir(tmp_dir.parent, step, os.getpid() + 1_000_000)
        (final / COMPLETE_MARKER).unlink(missing_ok=True)
        os.replace(final, old)
    os.replace(tmp_dir, final)
    _fsync_dir(final.parent)
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
    found = list_checkpoints(run_dir) + incomplete_checkpoints(run_dir)
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
