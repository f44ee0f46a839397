"""Per-step training metrics, a JSONL metrics file, wandb set-up and the final loss-curve plot.

Every logged step carries (besides HF's ``loss``, ``learning_rate``, ``grad_norm``):

* ``samples_per_s``  global samples per second (all ranks) over the logging window,
* ``step_time_s``    mean wall time of one optimiser step,
* ``data_wait_s``    mean time per optimiser step spent waiting for the dataloader (rank 0),
* ``peak_mem_mb``    peak memory of this process: CUDA max allocated on GPU, peak RSS on CPU.

Rank 0 appends every log to ``<run_dir>/metrics.jsonl`` and writes ``<run_dir>/loss_curve.png``
(matplotlib, Agg backend) when training ends.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import secrets
import sys
import time
from pathlib import Path

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from gr00t import atomic

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
LOSS_CURVE_FILE = "loss_curve.png"


def peak_memory_mb() -> float:
    """Peak memory of this process in MiB: CUDA max allocated when on GPU, else peak RSS."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


class StepMetrics:
    """Accumulates timings between two logging events (the trainer feeds it)."""

    def __init__(self, global_batch_size: int) -> None:
        self.global_batch_size = global_batch_size
        self._window_start = time.perf_counter()
        self._last_step: int | None = None
        self._data_wait = 0.0

    def add_data_wait(self, seconds: float) -> None:
        """Record time spent blocked on the dataloader."""
        self._data_wait += seconds

    def start(self, global_step: int) -> None:
        """Open the first window at ``global_step`` (training start or resume)."""
        self._window_start = time.perf_counter()
        self._last_step = global_step
        self._data_wait = 0.0

    def collect(self, global_step: int) -> dict[str, float]:
        """Metrics of the window since the last call (ending at ``global_step``); opens a new window."""
        now = time.perf_counter()
        elapsed = max(now - self._window_start, 1e-9)
        done = global_step - (self._last_step if self._last_step is not None else 0)
        steps = max(done, 1)
        out = {
            "samples_per_s": done * self.global_batch_size / elapsed,
            "step_time_s": elapsed / steps,
            "data_wait_s": self._data_wait / steps,
            "peak_mem_mb": peak_memory_mb(),
        }
        self._window_start = now
        self._last_step = global_step
        self._data_wait = 0.0
        return out


class StepMetricsCallback(TrainerCallback):
    """Opens the first timing window of a :class:`StepMetrics` when training (re)starts."""

    def __init__(self, metrics: StepMetrics) -> None:
        self.metrics = metrics

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw):
        self.metrics.start(state.global_step)


class MetricsFileCallback(TrainerCallback):
    """Appends each log dict (with its step) as one JSON line to ``<run_dir>/metrics.jsonl`` (rank 0)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / METRICS_FILE

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs=None, **kw):
        if not state.is_world_process_zero or not logs:
            return
        record = {"step": state.global_step, **{k: v for k, v in logs.items() if _is_number(v)}}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


class LossCurveCallback(TrainerCallback):
    """Plots the training loss against the step into ``<run_dir>/loss_curve.png`` at the end (rank 0)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOSS_CURVE_FILE

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw):
        if state.is_world_process_zero:
            write_loss_curve(state.log_history, self.path)


def write_loss_curve(log_history: list[dict], path: str | Path) -> Path | None:
    """Write a loss-vs-step PNG from HF ``log_history``; returns the path (None if no loss was logged)."""
    points = sorted(
        {int(r["step"]): float(r["loss"]) for r in log_history if "loss" in r and "step" in r}.items()
    )
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    steps, losses = zip(*points)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot(steps, losses, marker="." if len(steps) < 50 else None, linewidth=1.2)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("training loss")
    ax.set_title("flow-matching loss")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    try:
        with atomic.atomic_file(path, "wb") as fh:
            fig.savefig(fh, format="png")
    finally:
        plt.close(fig)
    return path


WANDB_ID_FILE = "wandb_run_id"


def wandb_report_to(mode: str | None) -> list[str]:
    """``["wandb"]`` unless the wandb mode (``mode`` or ``$WANDB_MODE``, default offline) is ``disabled``."""
    mode = (mode or os.environ.get("WANDB_MODE") or "offline").lower()
    if mode not in ("offline", "online", "disabled", "dryrun", "run"):
        raise ValueError(f"wandb mode {mode!r}: expected 'offline', 'online' or 'disabled'")
    return [] if mode == "disabled" else ["wandb"]


def configure_wandb(run_dir: str | Path, mode: str | None, project: str, run_name: str | None) -> list[str]:
    """Set wandb's environment for this run; returns ``report_to``.

    Offline by default (``mode``/``WANDB_MODE`` select ``online`` or ``disabled``); files go to
    ``<run_dir>/wandb``. The wandb run id is kept in ``<run_dir>/wandb_run_id`` so that a resumed
    run continues the same wandb run instead of starting a new one.
    """
    report_to = wandb_report_to(mode)
    if not report_to:
        return report_to
    os.environ["WANDB_MODE"] = (mode or os.environ.get("WANDB_MODE") or "offline").lower()
    os.environ["WANDB_DIR"] = str(run_dir)
    os.environ.setdefault("WANDB_PROJECT", project)
    os.environ.setdefault("WANDB_SILENT", "true")
    if run_name:
        os.environ["WANDB_NAME"] = run_name
    id_file = Path(run_dir) / WANDB_ID_FILE
    if id_file.is_file():
        run_id = id_file.read_text().strip()
    else:
        run_id = secrets.token_hex(6)
        if int(os.environ.get("RANK", "0")) == 0:
            atomic.write_text(id_file, run_id)
    os.environ["WANDB_RUN_ID"] = run_id
    os.environ["WANDB_RESUME"] = "allow"
    return report_to


def finish_wandb(report_to: list[str]) -> None:
    """Close the wandb run of this process, if wandb is in ``report_to`` (failures are only logged)."""
    if "wandb" not in report_to:
        return
    try:
        import wandb

        if wandb.run is not None:
            wandb.finish()
    except Exception as e:  # never fail a finished training over its logger
        logger.warning("wandb.finish failed: %s", e)


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)
