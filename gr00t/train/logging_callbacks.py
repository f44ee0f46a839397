"""Per-step training metrics, a JSONL metrics file, wandb set-up and the final loss-curve plot.

Every logged step carries (besides HF's ``loss``, ``learning_rate``, ``grad_norm``):

* ``samples_per_s``  global samples per second (all ranks) over the logging window,
* ``step_time_s``    mean wall time of one optimiser step,
* ``data_wait_s``    mean time per optimiser step spent waiting for the dataloader (rank 0),
* ``peak_mem_mb``    peak memory of this process: CUDA max allocated on GPU, peak RSS on CPU.

Rank 0 appends every log to ``<run_dir>/metrics.jsonl`` and writes ``<run_dir>/loss_curve.png``
(`gr00t.train.loss_curve`: smoothed loss, validation loss, learning rate) at each checkpoint and
when training ends; with wandb on, the curve and the run's dataset and embodiment go there too.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import secrets
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from gr00t import atomic
from gr00t.train.loss_curve import read_metrics, write_loss_curve

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
    """Rank 0 writes ``<run_dir>/loss_curve.png`` (`gr00t.train.loss_curve`) at every checkpoint and at
    the end, from ``<run_dir>/metrics.jsonl`` (which carries ``val_loss`` when validation runs), else
    from HF's ``log_history``. With wandb on, the run's dataset and embodiment go into the wandb run
    config at the start and the final curve is logged as an image."""

    def __init__(self, run_dir: str | Path, run_info: Mapping[str, Any] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOSS_CURVE_FILE
        self.run_info = dict(run_info or {})

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw):
        if state.is_world_process_zero and self.run_info:
            run = _wandb_run(args)
            if run is not None:
                run.config.update(self.run_info, allow_val_change=True)

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw):
        if state.is_world_process_zero:
            self.write(state)

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw):
        if not state.is_world_process_zero:
            return
        path = self.write(state)
        run = _wandb_run(args)
        if path is not None and run is not None:
            import wandb

            run.log({"loss_curve": wandb.Image(str(path))})

    def write(self, state: TrainerState) -> Path | None:
        """Write the PNG now; returns its path (None before the first logged loss)."""
        metrics = self.run_dir / METRICS_FILE
        records = read_metrics(metrics) if metrics.is_file() else state.log_history
        subtitle = "  |  ".join(f"{k} {v}" for k, v in self.run_info.items())
        return write_loss_curve(records, self.path, title=self.run_dir.name, subtitle=subtitle)


def run_info(experiment_config: Mapping[str, Any] | str | None) -> dict[str, Any]:
    """What names a run in its plot and in wandb: recipe, dataset, embodiment, base, model preset."""
    cfg: Any = experiment_config
    if isinstance(cfg, str):
        try:
            cfg = yaml.safe_load(cfg)
        except yaml.YAMLError:
            cfg = None
    if not isinstance(cfg, Mapping):
        return {}
    embodiment = cfg.get("embodiment")
    if isinstance(embodiment, Mapping):
        embodiment = embodiment.get("name") or embodiment.get("tag")
    model, data = cfg.get("model"), cfg.get("data")
    if data == "demo" and cfg.get("demo_dir"):
        data = f"demo ({cfg['demo_dir']})"
    info = {
        "recipe": cfg.get("recipe"),
        "dataset": data,
        "embodiment": embodiment,
        "base": cfg.get("base"),
        "model": model.get("name") if isinstance(model, Mapping) else model,
    }
    return {k: v for k, v in info.items() if isinstance(v, (str, int, float)) and v != ""}


def _wandb_run(args: TrainingArguments) -> Any:
    """The active wandb run when this trainer reports to wandb, else None."""
    if "wandb" not in (args.report_to or []):
        return None
    import wandb

    return wandb.run


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
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is None:
        # wandb reads its environment once per process: without this a second run in the same
        # process (a notebook, a sweep) would write into the first run's wandb folder
        wandb.teardown()
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
