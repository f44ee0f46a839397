"""The training loop: an HF ``Trainer`` subclass plus the one entry point the CLIs call.

Public API (stable; ``gr00t/train/build.py`` calls it)::

    from gr00t.train.trainer import TrainingSettings, TrainingResult, run_training

    result = run_training(
        model,                     # Gr00tN16Model (any PreTrainedModel whose forward returns .loss)
        train_dataset,             # map-style torch Dataset of model-ready samples
        collator,                  # samples -> model batch (Gr00tCollator)
        settings,                  # TrainingSettings (or a plain dict: TrainingSettings.from_dict)
        run_dir,                   # run directory; checkpoints go to <run_dir>/checkpoint-<step>/
        processor=None,            # object with save_pretrained(dir); saved into each checkpoint folder
        sampler=None,              # WindowSampler / MixtureSampler for THIS rank, or factory(rank, world_size);
                                   #   None: loader.make_sampler (settings.dataloader_sampling, seed=settings.seed)
        statistics=None,           # dict -> checkpoint/statistics.json
        embodiment_map=None,       # {tag: projector index} -> checkpoint/embodiment_map.json
        experiment_config=None,    # resolved Hydra config (dict or YAML text) -> experiment_config.yaml
        callbacks=None,            # extra transformers.TrainerCallback objects
    ) -> TrainingResult            # global_step, train_loss, last_checkpoint, resumed_from, preempted

The pieces live in their own modules (re-exported here for compatibility):
:mod:`~gr00t.train.settings` (TrainingSettings, TrainingResult), :mod:`~gr00t.train.arguments`
(DeepSpeed / precision resolution, HF TrainingArguments), :mod:`~gr00t.train.lora`,
:mod:`~gr00t.train.grad_checkpointing`, :mod:`~gr00t.train.loader` (resumable data loading),
:mod:`~gr00t.train.artifacts` (checkpoint side files), :mod:`~gr00t.train.optimizer_state`
(does a checkpoint's optimiser state fit this run), :mod:`~gr00t.train.checkpoint` (folders),
:mod:`~gr00t.train.preemption`, :mod:`~gr00t.train.optim` and :mod:`~gr00t.train.logging_callbacks`.

Behaviour:

* Process count comes from the launcher (``torchrun`` env). ``settings.deepspeed="auto"`` means
  DeepSpeed ZeRO-2 whenever more than one process runs, plain single-process training otherwise.
  The optimiser is always torch's AdamW handed to DeepSpeed as a client optimiser.
* bf16 autocast (+ TF32 on CUDA) around each forward pass when the resolved precision is bf16
  (``precision="auto"``: bf16 on CUDA, and on CPU for a model storing bf16 weights); the
  parameters keep the model's precision policy (see :mod:`~gr00t.train.arguments`).
* Effective global batch = per-device batch × processes × gradient accumulation, logged at start.
* Resume: with ``settings.resume`` (default) the newest *complete* checkpoint of ``run_dir`` is
  restored — weights, optimiser, scheduler, per-rank RNG, trainer state and the data position
  (sampler state, not dataloader replay); temporary/incomplete checkpoint folders are deleted first.
  ``resume=False`` moves old checkpoints to ``run_dir/superseded-<time>/`` and starts over.
  A model whose parameter names/shapes differ from the checkpoint's (changed architecture) is
  refused up front with `checkpoint.ResumeMismatchError` naming the differing config.json fields;
  training-only changes that keep the parameters (``tune_*``, dropout rates) resume. When the
  optimiser's ordered parameter names differ from the checkpoint's ``optimizer_params.json``
  (another trainable set), the AdamW moments start fresh with a warning and the schedule position
  is kept; under DeepSpeed such a resume is refused with `checkpoint.ResumeMismatchError`.
* One trainer per run directory: rank 0 holds ``run_dir/RUN_LOCK`` (:mod:`~gr00t.train.run_lock`);
  a second run on the folder fails at once naming the holder.
* Preemption: SIGTERM/SIGUSR1 → finish the step, checkpoint, write ``run_dir/PREEMPTED``, then
  ``sys.exit(REQUEUE_EXIT_CODE)`` (75) when ``settings.exit_on_preemption`` (default) — otherwise
  the result has ``preempted=True``. See :mod:`gr00t.train.preemption`.
* Exactness: data order is a pure function of (seed, draws consumed); the global RNG (model
  noise, dropout, state dropout) is restored from the checkpoint (see :mod:`gr00t.train.loader`).
* Memory switches: ``gradient_checkpointing`` (:func:`enable_gradient_checkpointing`) and
  ``lora_rank > 0`` (:func:`apply_lora`).
* Logging: wandb offline by default (``wandb_mode`` / ``WANDB_MODE``), one tqdm bar on rank 0,
  per-step loss / lr / grad norm / samples/s / data wait / peak memory in
  ``<run_dir>/metrics.jsonl``, ``loss_curve.png`` at the end (:mod:`gr00t.train.logging_callbacks`).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from transformers import Trainer, TrainerCallback

from gr00t import atomic
from gr00t.train import checkpoint as ckpt
from gr00t.train.arguments import (
    DEFAULT_TORCH_EXTENSIONS_DIR,
    model_storage_dtype,
    resolve_deepspeed_config,
    resolve_precision,
    training_arguments,
)
from gr00t.train.artifacts import write_artifacts
from gr00t.train.distributed import barrier, broadcast, launcher_world_size
from gr00t.train.grad_checkpointing import enable_gradient_checkpointing
from gr00t.train.lifetime import tie_trainer_to_launcher
from gr00t.train.loader import EndlessSampler, batch_size_of, build_train_dataloader, resolve_sampler
from gr00t.train.logging_callbacks import (
    LossCurveCallback,
    MetricsFileCallback,
    StepMetrics,
    StepMetricsCallback,
    configure_wandb,
    finish_wandb,
    run_info,
    wandb_report_to,
)
from gr00t.train.lora import LORA_DEFAULT_TARGETS, apply_lora, lora_module_pattern
from gr00t.train.optim import build_optimizer, build_scheduler, param_groups, warmup_steps
from gr00t.train.optimizer_state import (
    names_difference,
    optimizer_state_mismatch,
    param_group_names,
    read_param_names,
)
from gr00t.train.preemption import REQUEUE_EXIT_CODE, PreemptionHandler, StopOnPreemption
from gr00t.train.run_lock import locks_run_dir
from gr00t.train.settings import TrainingResult, TrainingSettings
from gr00t.train.typed_batch import TypedBatchHooks

logger = logging.getLogger(__name__)


class Gr00tTrainer(TypedBatchHooks, Trainer):
    """HF Trainer with our optimiser/schedule, sampler-based data position and atomic checkpoints,
    fed `Gr00tBatch` objects (see :mod:`gr00t.train.typed_batch`)."""

    def __init__(
        self,
        *args: Any,
        settings: TrainingSettings,
        run_dir: Path,
        sampler: Any,
        processor: Any | None = None,
        artifacts: dict[str, Any] | None = None,
        preemption: PreemptionHandler | None = None,
        precision: str = "fp32",
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.precision = precision
        self.settings = settings
        self.run_dir = Path(run_dir)
        self.sampler = sampler
        self.processor = processor
        self.artifacts = artifacts or {}
        self.preemption = preemption
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
        if self.lr_scheduler is None:
            self.lr_scheduler = build_scheduler(
                optimizer or self.optimizer, self.settings.max_steps, self.settings.optimizer_settings()
            )
            self._created_lr_scheduler = True
        return self.lr_scheduler

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        changed = None
        if checkpoint is not None and not self.is_deepspeed_enabled and self.optimizer is not None:
            changed = optimizer_state_mismatch(checkpoint, self.optimizer, self.optimizer_param_names)
        if changed is None:
            super()._load_optimizer_and_scheduler(checkpoint)
        else:  # e.g. tune_* switched on resume: the stored AdamW moments belong to other parameters
            logger.warning(
                "resuming from %s with fresh optimiser moments: %s (the schedule position is kept)",
                checkpoint,
                changed,
            )
            scheduler_file = Path(checkpoint) / "scheduler.pt"
            if self.lr_scheduler is not None and scheduler_file.is_file():
                self.lr_scheduler.load_state_dict(torch.load(scheduler_file, weights_only=True))
        # The stored schedule carries the old run's max_steps; the schedule must follow this run's.
        if checkpoint is not None and self.lr_scheduler is not None:
            for fn in getattr(self.lr_scheduler, "lr_lambdas", []):
                if hasattr(fn, "max_steps"):
                    fn.max_steps = self.settings.max_steps
                    fn.warmup = warmup_steps(self.settings.max_steps, self.settings.warmup_ratio)

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

    def restore_data_state(self, checkpoint: Path) -> None:
        """Position the sampler right after the last sample consumed before ``checkpoint``."""
        state = ckpt.read_data_state(checkpoint)
        if state is None:
            raise FileNotFoundError(
                f"{checkpoint / ckpt.DATA_STATE_NAME} is missing: cannot restore the data position of this checkpoint"
            )
        state = {k: v for k, v in state.items() if k not in ("world_size", "global_step")}
        try:
            self.sampler.load_state_dict(state)
        except ValueError as exc:  # another mixture, seed or weighting: a user error, one line
            raise ckpt.ResumeMismatchError(f"cannot resume from {checkpoint}: {exc}") from exc
        world = max(1, self.args.world_size)
        self.samples_consumed_local = int(state["consumed"]) // world

    # ---- logging ----------------------------------------------------------------------------
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            logs.update(self.step_metrics.collect(self.state.global_step))
            logs["samples_seen"] = self.samples_consumed_local * max(1, self.args.world_size)
        super().log(logs, start_time)

    # ---- checkpoints ------------------------------------------------------------------------
    def _save_checkpoint(self, model: torch.nn.Module, trial: Any) -> None:
        step = self.state.global_step
        pid = broadcast(os.getpid())
        tmp = ckpt.temp_checkpoint_dir(self.run_dir, step, pid)
        if self.args.should_save:
            tmp.mkdir(parents=True, exist_ok=True)
        barrier()
        started = time.perf_counter()
        self.store_flos()
        self.save_model(str(tmp), _internal_call=True)
        if not self.args.save_only_model:
            self._save_optimizer_and_scheduler(str(tmp))
            self._save_scaler(str(tmp))
            self._save_rng_state(str(tmp))
        if self.args.should_save:
            self.state.save_to_json(str(tmp / "trainer_state.json"))
            write_artifacts(
                tmp,
                settings=self.settings,
                data_state=self.data_state(),
                processor=self.processor,
                statistics=self.artifacts.get("statistics"),
                embodiment_map=self.artifacts.get("embodiment_map"),
                experiment_config=self.artifacts.get("experiment_config"),
                optimizer_param_names=self.optimizer_param_names,
            )
        barrier()
        final = None
        if self.args.should_save:
            final = ckpt.publish(tmp, step)
            removed = ckpt.rotate(self.run_dir, self.settings.save_total_limit)
            for path in removed:
                logger.info(
                    "removed old checkpoint %s (save_total_limit=%s)", path, self.settings.save_total_limit
                )
            logger.info("saved %s in %.1fs", final, time.perf_counter() - started)
        barrier()
        self.last_saved_checkpoint = ckpt.checkpoint_dir(self.run_dir, step)


def _deepspeed_resume_problem(
    checkpoint: Path, model: torch.nn.Module, settings: TrainingSettings, changed: dict[str, tuple[Any, Any]]
) -> str | None:
    """Why DeepSpeed's engine cannot restore the checkpoint's optimiser state into this run (None: it can).

    Decided by the stored optimiser parameter names; checkpoints without them fall back to the
    ``tune_*`` config fields that changed.
    """
    saved = read_param_names(checkpoint)
    if saved is not None:
        current = param_group_names(model, param_groups(model, settings.optimizer_settings()))
        return names_difference(saved, current)
    switched = sorted(k for k in changed if k.startswith("tune_") or k == "backbone_trainable_params_fp32")
    if not switched:
        return None
    return ", ".join(f"{k}: {changed[k][0]!r} -> {changed[k][1]!r}" for k in switched)


# ---------------------------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------------------------
@locks_run_dir()  # rank 0 holds <run_dir>/RUN_LOCK for the whole run: one trainer per run directory
def run_training(
    model: torch.nn.Module,
    train_dataset: Dataset,
    collator: Callable[[list[Any]], dict[str, Any]],
    settings: TrainingSettings | dict[str, Any],
    run_dir: str | Path,
    *,
    processor: Any | None = None,
    sampler: Any | Callable[[int, int], Any] | None = None,
    statistics: dict[str, Any] | None = None,
    embodiment_map: dict[str, int] | None = None,
    experiment_config: dict[str, Any] | str | None = None,
    callbacks: list[TrainerCallback] | None = None,
) -> TrainingResult:
    """Train ``model`` to ``settings.max_steps`` steps, resuming from ``run_dir`` when possible.

    See the module docstring for the contract. Exits the process with
    :data:`~gr00t.train.preemption.REQUEUE_EXIT_CODE` after a preemption checkpoint when
    ``settings.exit_on_preemption`` is true.
    """
    if isinstance(settings, dict):
        settings = TrainingSettings.from_dict(settings)
    settings.validate()
    tie_trainer_to_launcher()  # under torchrun: die with the agent rather than outlive it as an orphan
    run_dir = Path(run_dir).resolve()
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
    report_to = wandb_report_to(settings.wandb_mode)
    precision = resolve_precision(settings.precision, model_storage_dtype(model))
    args = training_arguments(settings, run_dir, report_to, precision)  # initialises torch.distributed
    world_size = max(1, args.world_size)
    rank = args.process_index

    # ---- resume decision (rank 0 decides and cleans up, everyone follows) ---------------------
    resume_from: Path | None = None
    if args.should_save:
        run_dir.mkdir(parents=True, exist_ok=True)
        for removed in ckpt.remove_incomplete(run_dir):
            logger.warning("removed incomplete checkpoint %s", removed)
        if settings.resume:
            resume_from = ckpt.latest_checkpoint(run_dir)
        else:
            archived = ckpt.archive_checkpoints(run_dir)
            if archived is not None:
                logger.warning("resume=false: previous checkpoints moved to %s", archived)
        (run_dir / ckpt.PREEMPTED_MARKER).unlink(missing_ok=True)
        configure_wandb(run_dir, settings.wandb_mode, settings.wandb_project, settings.run_name)
    resume_from = broadcast(resume_from)

    # ---- model switches ---------------------------------------------------------------------
    if settings.lora_rank > 0:
        n = apply_lora(model, settings)
        logger.info("LoRA r=%d on %d LLM modules", settings.lora_rank, n)
    if settings.gradient_checkpointing:
        blocks = enable_gradient_checkpointing(model)
        logger.info("gradient checkpointing on %d blocks", len(blocks))
    changed: dict[str, tuple[Any, Any]] = {}
    if resume_from is not None:
        # Fail here, naming what changed, rather than deep inside the HF checkpoint loading.
        changed = ckpt.check_resume_compatible(resume_from, model)
        if changed:
            logger.info(
                "resuming from %s with changed config fields (same parameters): %s",
                resume_from,
                ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items()),
            )

    sampler = resolve_sampler(sampler, train_dataset, settings, rank, world_size)
    handler = PreemptionHandler(settings.preemption_signals)
    stop_on_preemption = StopOnPreemption(handler)
    all_callbacks: list[TrainerCallback] = [
        stop_on_preemption,
        MetricsFileCallback(run_dir),
        LossCurveCallback(run_dir, run_info(experiment_config)),
        *(callbacks or []),
    ]
    trainer = Gr00tTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        data_collator=collator,
        callbacks=all_callbacks,
        settings=settings,
        run_dir=run_dir,
        sampler=sampler,
        processor=processor,
        artifacts={
            "statistics": statistics,
            "embodiment_map": embodiment_map,
            "experiment_config": experiment_config,
        },
        preemption=handler,
        precision=precision,
    )
    if resume_from is not None:
        trainer.restore_data_state(resume_from)
        problem = (
            _deepspeed_resume_problem(resume_from, model, settings, changed)
            if trainer.is_deepspeed_enabled
            else None
        )
        if problem is not None:
            raise ckpt.ResumeMismatchError(
                f"cannot resume from {resume_from} under DeepSpeed with other trainable parameters "
                f"({problem}): the engine's optimizer state must match them. Keep the checkpoint's tune_* settings, "
                "resume without DeepSpeed, or start over with resume=false / a new run_dir "
                "(finetune from it with base=<checkpoint>)."
            )
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    mode = "no DeepSpeed"
    if trainer.is_deepspeed_enabled:
        mode = f"DeepSpeed ZeRO-{trainer.accelerator.state.deepspeed_plugin.zero_stage}"
    logger.info(
        "effective global batch = %d per device x %d processes x %d accumulation = %d; "
        "max_steps=%d, warmup=%d, deepspeed=%s, precision=%s, trainable params=%s, resume from %s",
        settings.per_device_batch_size,
        world_size,
        settings.gradient_accumulation_steps,
        trainer.global_batch_size,
        settings.max_steps,
        warmup_steps(settings.max_steps, settings.warmup_ratio),
        mode,
        precision,
        f"{n_trainable:,}",
        resume_from or "scratch",
    )
    if rank == 0:
        print(
            f"[gr00t] global batch {trainer.global_batch_size} = {settings.per_device_batch_size} per device "
            f"x {world_size} processes x {settings.gradient_accumulation_steps} accumulation; {mode}, "
            f"{precision}; "
            f"{'resuming from ' + str(resume_from) if resume_from else 'starting from scratch'}",
            flush=True,
        )

    with handler:
        if resume_from is not None and _step_of(resume_from) >= settings.max_steps:
            output = None
            logger.info(
                "checkpoint %s already reached max_steps=%d; nothing to do", resume_from, settings.max_steps
            )
        else:
            output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    preempted = stop_on_preemption.triggered_at_step is not None
    finish_wandb(report_to)

    last = ckpt.latest_checkpoint(run_dir)
    result = TrainingResult(
        global_step=trainer.state.global_step if output is not None else _step_of(resume_from),
        train_loss=float(output.training_loss) if output is not None else float("nan"),
        last_checkpoint=last,
        resumed_from=resume_from,
        preempted=preempted,
        global_batch_size=trainer.global_batch_size,
        metrics=dict(output.metrics) if output is not None else {},
    )
    if preempted:
        if args.should_save:
            atomic.write_json(
                run_dir / ckpt.PREEMPTED_MARKER,
                {"step": result.global_step, "signal": handler.signal_name, "checkpoint": str(last)},
                sort_keys=True,
            )
        barrier()
        logger.warning(
            "preempted at step %d; checkpoint %s; exit code %d", result.global_step, last, REQUEUE_EXIT_CODE
        )
        if settings.exit_on_preemption:
            sys.stdout.flush()
            sys.stderr.flush()
            sys.exit(REQUEUE_EXIT_CODE)
    return result


def _step_of(path: Path | None) -> int:
    return 0 if path is None else ckpt.checkpoint_step(path)


__all__ = [
    "DEFAULT_TORCH_EXTENSIONS_DIR",
    "LORA_DEFAULT_TARGETS",
    "REQUEUE_EXIT_CODE",
    "EndlessSampler",
    "Gr00tTrainer",
    "TrainingResult",
    "TrainingSettings",
    "apply_lora",
    "enable_gradient_checkpointing",
    "launcher_world_size",
    "lora_module_pattern",
    "resolve_deepspeed_config",
    "resolve_precision",
    "run_training",
]
