"""`Gr00tTrainer`: the HF ``Trainer`` subclass `gr00t.train.trainer.run_training` drives.

Extended through HF's documented hooks: our optimiser and schedule (``create_optimizer``,
``create_scheduler``), the resumable rank-sharded loader (``get_train_dataloader``), data-wait
timing (``get_batch_samples``), the typed batch (``compute_loss``, `gr00t.train.typed_batch`), the
deterministic validation loss (``evaluate``, `gr00t.train.validation`), per-step metrics (``log``)
and callbacks (EMA, preemption, metrics file). The two private overrides HF leaves no hook for
(where a checkpoint is written, whether stored AdamW moments are loaded) are in
`gr00t.train.hf_private`; the checkpoint folder itself is `gr00t.train.run_dir`.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from gr00t.train.distributed import barrier, broadcast
from gr00t.train.ema import WeightEma
from gr00t.train.hf_private import PrivateTrainerHooks
from gr00t.train.loader import batch_size_of, build_train_dataloader
from gr00t.train.logging_callbacks import StepMetrics, StepMetricsCallback
from gr00t.train.optim import build_optimizer, build_scheduler
from gr00t.train.resume_check import ResumeMismatchError, optimizer_state_mismatch, param_group_names
from gr00t.train.run_dir import Checkpoint, CheckpointStaging, RunDir
from gr00t.train.settings import TrainingSettings
from gr00t.train.typed_batch import TypedBatchHooks
from gr00t.train.validation import VAL_LOSS, ValidationLoss

logger = logging.getLogger(__name__)


class Gr00tTrainer(TypedBatchHooks, PrivateTrainerHooks):
    """HF Trainer with our optimiser/schedule, sampler-based data position, atomic checkpoints of
    the run directory, optional weight EMA and validation loss, fed `Gr00tBatch` objects.

    ``side_files``: what every checkpoint records besides tensors (`CheckpointStaging.write_side_files`).
    """

    def __init__(
        self,
        *args: Any,
        settings: TrainingSettings,
        run_dir: RunDir,
        sampler: Any,
        side_files: dict[str, Any] | None = None,
        ema: WeightEma | None = None,
        validation: ValidationLoss | None = None,
        precision: str = "fp32",
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.precision = precision
        self.settings = settings
        self.run = run_dir
        self.sampler = sampler
        self.side_files = side_files or {}
        self.ema = ema
        self.validation = validation
        self.samples_consumed_local = 0  # samples this rank fed to the model since the start of training
        world = max(1, self.args.world_size)
        self.global_batch_size = settings.per_device_batch_size * world * settings.gradient_accumulation_steps
        self.step_metrics = StepMetrics(self.global_batch_size)
        self.add_callback(StepMetricsCallback(self.step_metrics))
        self.last_saved_checkpoint: Path | None = None
        # Ordered parameter names per optimiser group, recorded when the torch optimiser is built
        # (before DeepSpeed wraps it) and stored in every checkpoint.
        self.optimizer_param_names: list[dict[str, Any]] | None = None

    def compute_loss_context_manager(self) -> contextlib.AbstractContextManager:
        """HF's context plus bf16 autocast when the run's precision is bf16 (backward runs outside it)."""
        context = super().compute_loss_context_manager()
        if self.precision != "bf16":
            return context
        stack = contextlib.ExitStack()
        stack.enter_context(context)
        stack.enter_context(torch.autocast(self.args.device.type, dtype=torch.bfloat16))
        return stack

    # ---- optimiser / schedule ---------------------------------------------------------------
    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            target = self.model if model is None else model
            self.optimizer = build_optimizer(target, self.settings.optimizer_settings())
            self.optimizer_param_names = param_group_names(target, self.optimizer.param_groups)
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        # A restored schedule keeps this run's max_steps and warmup (`optim.RunSchedule`).
        if self.lr_scheduler is None:
            self.lr_scheduler = build_scheduler(
                optimizer or self.optimizer, self.settings.max_steps, self.settings.optimizer_settings()
            )
        return self.lr_scheduler

    def optimizer_state_mismatch(self, checkpoint: str) -> str | None:
        """Why the checkpoint's AdamW moments must not be loaded (None: load them). Under DeepSpeed the
        engine restores them itself (a mismatch is refused before training, in `run_training`)."""
        if self.is_deepspeed_enabled or self.optimizer is None:
            return None
        reason = optimizer_state_mismatch(
            Checkpoint(Path(checkpoint)), self.optimizer, self.optimizer_param_names
        )
        if reason is not None:  # e.g. tune_* switched on resume: the moments belong to other parameters
            logger.warning(
                "resuming from %s with fresh optimiser moments: %s (the schedule position is kept)",
                checkpoint,
                reason,
            )
        return reason

    def load_schedule_only(self, checkpoint: str) -> None:
        """Restore the schedule position of ``checkpoint`` (fresh optimiser moments)."""
        scheduler_file = Path(checkpoint) / "scheduler.pt"
        if self.lr_scheduler is not None and scheduler_file.is_file():
            self.lr_scheduler.load_state_dict(torch.load(scheduler_file, weights_only=True))

    # ---- data -------------------------------------------------------------------------------
    def get_train_dataloader(self) -> DataLoader:
        # The sampler is already rank-sharded (accelerate must not re-shard it) and resumes by
        # itself (no batch skipping).
        return build_train_dataloader(
            self.train_dataset, self.sampler, self.data_collator, self.settings, self.args.process_index
        )

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        start = time.perf_counter()
        batches = list(itertools.islice(epoch_iterator, num_batches))
        self.step_metrics.add_data_wait(time.perf_counter() - start)
        self.samples_consumed_local += sum(batch_size_of(b) for b in batches)
        return batches, None  # the flow loss is a per-batch mean: HF's item count is not needed

    def data_state(self) -> dict[str, Any]:
        """Sampler state at the current data position (global draws consumed by all ranks)."""
        consumed = self.samples_consumed_local * max(1, self.args.world_size)
        state = self.sampler.state_dict(consumed=consumed)
        state["world_size"] = max(1, self.args.world_size)
        state["global_step"] = self.state.global_step
        return state

    def restore_data_state(self, checkpoint: Checkpoint) -> None:
        """Position the sampler right after the last sample consumed before ``checkpoint``."""
        state = checkpoint.data_state()
        if state is None:
            raise FileNotFoundError(
                f"{checkpoint.path}/data_state.json is missing: cannot restore the data position of this checkpoint"
            )
        state = {k: v for k, v in state.items() if k not in ("world_size", "global_step")}
        try:
            self.sampler.load_state_dict(state)
        except ValueError as exc:  # another mixture, seed or weighting: a user error, one line
            raise ResumeMismatchError(
                f"cannot resume from {checkpoint.path}: {exc} (or start over with resume=false: the old "
                "checkpoints are moved to <run_dir>/superseded-<time>/)"
            ) from exc
        self.samples_consumed_local = int(state["consumed"]) // max(1, self.args.world_size)

    # ---- logging and validation -------------------------------------------------------------
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            logs.update(self.step_metrics.collect(self.state.global_step))
            logs["samples_seen"] = self.samples_consumed_local * max(1, self.args.world_size)
        super().log(logs, start_time)

    def evaluate(
        self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"
    ) -> dict[str, float]:
        """The validation loss on the held-out episodes (HF calls this every ``eval_steps``)."""
        if self.validation is None:
            return {}
        started = time.perf_counter()
        with self.compute_loss_context_manager():
            value = self.validation(
                self.model, self.device_batch, self.args.process_index, max(1, self.args.world_size)
            )
        metrics = {VAL_LOSS: value}
        logger.info(
            "step %d: %s %.6f (%.1fs)", self.state.global_step, VAL_LOSS, value, time.perf_counter() - started
        )
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    # ---- checkpoints (called from hf_private._save_checkpoint) ------------------------------
    def begin_checkpoint(self) -> CheckpointStaging:
        """The staging folder of this step's checkpoint, the same on every rank (rank 0's pid)."""
        pid = broadcast(os.getpid())
        staging = self.run.begin_checkpoint(self.state.global_step, pid, create=self.args.should_save)
        barrier()
        self.store_flos()
        self._checkpoint_started = time.perf_counter()
        return staging

    def finish_checkpoint(self, staging: CheckpointStaging) -> None:
        """Rank 0 adds trainer state, side files and the EMA, then publishes and rotates."""
        if self.args.should_save:
            self.state.save_to_json(str(staging.path / "trainer_state.json"))
            staging.write_side_files(
                settings=self.settings.to_dict(),
                data_state=self.data_state(),
                optimizer_param_names=self.optimizer_param_names,
                **self.side_files,
            )
            if self.ema is not None:
                self.ema.save(staging.path)
        barrier()
        if self.args.should_save:
            final = self.run.publish(staging)
            keep = self.settings.save_total_limit
            for path in self.run.rotate(keep):
                logger.info("removed old checkpoint %s (save_total_limit=%s)", path, keep)
            logger.info("saved %s in %.1fs", final.path, time.perf_counter() - self._checkpoint_started)
        barrier()
        self.last_saved_checkpoint = self.run.checkpoint_dir(staging.step)


__all__ = ["Gr00tTrainer"]
