"""The one entry point the CLIs call: `run_training` (the trainer itself is `gr00t.train.gr00t_trainer`).

Public API (stable; ``gr00t/train/build.py`` calls it)::

    from gr00t.train.trainer import TrainingSettings, TrainingResult, run_training

    result = run_training(
        model,                     # Gr00tN16Model (any PreTrainedModel whose forward returns .loss)
        train_dataset,             # map-style torch Dataset of model-ready samples
        collator,                  # samples -> model batch (Gr00tCollator)
        settings,                  # TrainingSettings (or a plain dict: TrainingSettings.from_dict)
        run_dir,                   # run directory (gr00t.train.run_dir); checkpoints go to <run_dir>/checkpoint-<step>/
        processor=None,            # object with save_pretrained(dir); saved into each checkpoint folder
        sampler=None,              # WindowSampler / MixtureSampler for THIS rank, or factory(rank, world_size);
                                   #   None: loader.make_sampler (settings.dataloader_sampling, seed=settings.seed)
        statistics=None,           # dict -> checkpoint/statistics.json
        embodiment_map=None,       # {tag: projector index} -> checkpoint/embodiment_map.json
        experiment_config=None,    # resolved Hydra config (dict or YAML text) -> experiment_config.yaml
        callbacks=None,            # extra transformers.TrainerCallback objects
        eval_dataset=None,         # held-out samples (eval-mode processor): val_loss every eval_steps
        heldout_episodes=None,     # dict -> checkpoint/heldout_episodes.json
    ) -> TrainingResult            # global_step, train_loss, last_checkpoint, resumed_from, preempted

Behaviour:

* Process count comes from the launcher (``torchrun`` env). ``settings.deepspeed="auto"`` means
  DeepSpeed ZeRO-2 whenever more than one process runs, plain single-process training otherwise
  (`gr00t.train.arguments`). The optimiser is torch's AdamW, handed to DeepSpeed as a client optimiser.
* bf16 autocast (+ TF32 on CUDA) around each forward pass when the resolved precision is bf16
  (``precision="auto"``: bf16 on CUDA, and on CPU for a model storing bf16 weights); the
  parameters keep the model's precision policy (see :mod:`~gr00t.train.arguments`).
* Effective global batch = per-device batch × processes × gradient accumulation, logged at start.
* Resume (`gr00t.train.run_dir`, `gr00t.train.resume_check`): with ``settings.resume`` (default) the
  newest *complete* checkpoint is restored — weights, optimiser, scheduler, per-rank RNG, trainer
  state, data position (sampler state, not dataloader replay) and the EMA; debris of interrupted
  writes is deleted first. ``resume=False`` moves old checkpoints to ``superseded-<time>/``. A model
  whose parameters differ from the checkpoint's is refused up front (`ResumeMismatchError`); another
  trainable set resumes with fresh AdamW moments (refused under DeepSpeed).
* One trainer per run directory (rank 0 holds ``RUN_LOCK``); preemption (SIGTERM/SIGUSR1) →
  checkpoint → ``PREEMPTED`` → exit 75 (`gr00t.train.preemption`).
* Exactness: data order is a pure function of (seed, draws consumed); the global RNG is restored from
  the checkpoint; validation forks the RNG (`gr00t.train.validation`).
* Switches: ``gradient_checkpointing``, ``lora_rank > 0`` (`gr00t.train.lora`), ``ema_decay``
  (`gr00t.train.ema`), validation with ``eval_dataset`` every ``eval_steps``.
* Logging: wandb offline by default, one tqdm bar on rank 0, ``<run_dir>/metrics.jsonl``,
  ``loss_curve.png`` (`gr00t.train.logging_callbacks`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from transformers import TrainerCallback

from gr00t.train.arguments import (
    DEFAULT_TORCH_EXTENSIONS_DIR,
    model_storage_dtype,
    resolve_deepspeed_config,
    resolve_precision,
    training_arguments,
)
from gr00t.train.distributed import barrier, broadcast, launcher_world_size
from gr00t.train.ema import EmaCallback, WeightEma
from gr00t.train.gr00t_trainer import Gr00tTrainer
from gr00t.train.grad_checkpointing import enable_gradient_checkpointing
from gr00t.train.lifetime import tie_trainer_to_launcher
from gr00t.train.loader import EndlessSampler, resolve_sampler
from gr00t.train.logging_callbacks import (
    LossCurveCallback,
    MetricsFileCallback,
    configure_wandb,
    finish_wandb,
    run_info,
    wandb_report_to,
)
from gr00t.train.lora import LORA_DEFAULT_TARGETS, apply_lora, lora_config, lora_module_pattern
from gr00t.train.optim import param_groups, warmup_steps
from gr00t.train.preemption import REQUEUE_EXIT_CODE, PreemptionHandler, StopOnPreemption
from gr00t.train.resume_check import ResumeMismatchError, check_resume_compatible, deepspeed_resume_problem
from gr00t.train.run_dir import Checkpoint, RunDir
from gr00t.train.run_lock import locks_run_dir
from gr00t.train.settings import TrainingResult, TrainingSettings
from gr00t.train.validation import ValidationLoss

logger = logging.getLogger(__name__)


@locks_run_dir()  # rank 0 holds <run_dir>/RUN_LOCK for the whole run: one trainer per run directory
def run_training(
    model: torch.nn.Module,
    train_dataset: Dataset,
    collator: Callable[[list[Any]], Any],
    settings: TrainingSettings | dict[str, Any],
    run_dir: str | Path,
    *,
    processor: Any | None = None,
    sampler: Any | Callable[[int, int], Any] | None = None,
    statistics: dict[str, Any] | None = None,
    embodiment_map: dict[str, int] | None = None,
    experiment_config: dict[str, Any] | str | None = None,
    callbacks: list[TrainerCallback] | None = None,
    eval_dataset: Dataset | None = None,
    heldout_episodes: dict[str, Any] | None = None,
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
    run = RunDir(Path(run_dir).resolve())
    report_to = wandb_report_to(settings.wandb_mode)
    eval_steps = (settings.eval_steps or settings.save_steps) if eval_dataset is not None else None
    precision = resolve_precision(settings.precision, model_storage_dtype(model))
    args = training_arguments(
        settings, run.path, report_to, precision, eval_steps
    )  # initialises torch.distributed
    resume = _resume_point(run, settings, args.should_save)
    changed = _prepare_model(model, settings, resume)
    side_files = {
        "processor": processor,
        "statistics": statistics,
        "embodiment_map": embodiment_map,
        "experiment_config": experiment_config,
        "heldout_episodes": heldout_episodes,
        "lora_config": lora_config(settings),
    }
    handler = PreemptionHandler(settings.preemption_signals)
    extra = [StopOnPreemption(handler), *(callbacks or [])]
    data = (train_dataset, eval_dataset, collator, sampler)
    trainer = _make_trainer(model, args, data, settings, run, extra, side_files, precision)
    _attach_ema(trainer, settings, resume)
    _attach_validation(trainer, settings)
    if resume is not None:
        _check_resume(trainer, resume, changed)
    _announce(trainer, settings, resume)
    with handler:
        output = _train(trainer, resume, settings)
    finish_wandb(report_to)
    return _finish(trainer, run, output, resume, handler)


def _resume_point(run: RunDir, settings: TrainingSettings, is_main: bool) -> Checkpoint | None:
    """Rank 0 cleans the run directory and picks the checkpoint to resume from; every rank gets it."""
    resume = None
    if is_main:
        resume = run.prepare(settings.resume)
        configure_wandb(run.path, settings.wandb_mode, settings.wandb_project, settings.run_name)
    path = broadcast(None if resume is None else str(resume.path))
    return None if path is None else Checkpoint(Path(path))


def _prepare_model(
    model: torch.nn.Module, settings: TrainingSettings, resume: Checkpoint | None
) -> dict[str, tuple[Any, Any]]:
    """Model switches (LoRA, gradient checkpointing), then the resume compatibility check."""
    if settings.lora_rank > 0:
        n = apply_lora(model, settings)
        logger.info("LoRA r=%d on %d modules", settings.lora_rank, n)
    if settings.gradient_checkpointing:
        blocks = enable_gradient_checkpointing(model)
        logger.info("gradient checkpointing on %d blocks", len(blocks))
    if resume is None:
        return {}
    # Fail here, naming what changed, rather than deep inside the HF checkpoint loading.
    changed = check_resume_compatible(resume, model)
    if changed:
        logger.info(
            "resuming from %s with changed config fields (same parameters): %s",
            resume.path,
            ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items()),
        )
    return changed


def _make_trainer(
    model: torch.nn.Module,
    args: Any,
    data: tuple[Dataset, Dataset | None, Callable, Any],
    settings: TrainingSettings,
    run: RunDir,
    callbacks: list[TrainerCallback],
    side_files: dict[str, Any],
    precision: str,
) -> Gr00tTrainer:
    """``data``: (training dataset, held-out dataset or None, collator, sampler or factory or None);
    ``precision``: the resolved one (`resolve_precision`)."""
    train_dataset, eval_dataset, collator, sampler = data
    world_size, rank = max(1, args.world_size), args.process_index
    return Gr00tTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=collator,
        callbacks=[
            MetricsFileCallback(run.path),
            LossCurveCallback(run.path, run_info(side_files.get("experiment_config"))),
            *callbacks,
        ],
        settings=settings,
        run_dir=run,
        sampler=resolve_sampler(sampler, train_dataset, settings, rank, world_size),
        side_files=side_files,
        precision=precision,
    )


def _attach_ema(trainer: Gr00tTrainer, settings: TrainingSettings, resume: Checkpoint | None) -> None:
    """``trainer.ema_decay``: keep an EMA of the trained weights, continued from the checkpoint."""
    if not settings.ema_decay:
        return
    if trainer.is_deepspeed_enabled and trainer.accelerator.state.deepspeed_plugin.zero_stage == 3:
        raise ValueError(
            "trainer.ema_decay is not supported with DeepSpeed ZeRO-3 (partitioned parameters); "
            "use trainer.deepspeed=zero2 or switch the EMA off"
        )
    source = resume.ema_path if resume is not None else None
    if resume is not None and source is None:
        logger.warning("%s has no EMA: the average starts at its weights", resume.path)
    trainer.ema = WeightEma(settings.ema_decay)
    trainer.add_callback(EmaCallback(trainer.ema, trainer.model, resume_from=source))


def _attach_validation(trainer: Gr00tTrainer, settings: TrainingSettings) -> None:
    """The validation loss on the held-out samples, when there are any."""
    if trainer.eval_dataset is None:
        return
    trainer.validation = ValidationLoss(
        trainer.eval_dataset,
        trainer.data_collator,
        batch_size=settings.per_device_batch_size,
        max_samples=settings.eval_samples,
        seed=settings.seed,
    )


def _check_resume(trainer: Gr00tTrainer, resume: Checkpoint, changed: dict[str, tuple[Any, Any]]) -> None:
    """Restore the data position; refuse a DeepSpeed resume whose optimiser state cannot follow."""
    trainer.restore_data_state(resume)
    if not trainer.is_deepspeed_enabled:
        return
    groups = param_groups(trainer.model, trainer.settings.optimizer_settings())
    problem = deepspeed_resume_problem(resume, trainer.model, groups, changed)
    if problem is not None:
        raise ResumeMismatchError(
            f"cannot resume from {resume.path} under DeepSpeed with other trainable parameters "
            f"({problem}): the engine's optimizer state must match them. Keep the checkpoint's tune_* settings, "
            "resume without DeepSpeed, or start over with resume=false / a new run_dir "
            "(finetune from it with base=<checkpoint>)."
        )


def _announce(trainer: Gr00tTrainer, settings: TrainingSettings, resume: Checkpoint | None) -> None:
    """Log the run's shape (every rank) and print it once (rank 0)."""
    args, world = trainer.args, max(1, trainer.args.world_size)
    n_trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    mode = "no DeepSpeed"
    if trainer.is_deepspeed_enabled:
        mode = f"DeepSpeed ZeRO-{trainer.accelerator.state.deepspeed_plugin.zero_stage}"
    precision = trainer.precision
    source = resume.path if resume is not None else None
    logger.info(
        "effective global batch = %d per device x %d processes x %d accumulation = %d; "
        "max_steps=%d, warmup=%d, deepspeed=%s, precision=%s, trainable params=%s, ema=%s, resume from %s",
        settings.per_device_batch_size,
        world,
        settings.gradient_accumulation_steps,
        trainer.global_batch_size,
        settings.max_steps,
        warmup_steps(settings.max_steps, settings.warmup_ratio),
        mode,
        precision,
        f"{n_trainable:,}",
        settings.ema_decay or "off",
        source or "scratch",
    )
    if args.process_index == 0:
        print(
            f"[gr00t] global batch {trainer.global_batch_size} = {settings.per_device_batch_size} per device "
            f"x {world} processes x {settings.gradient_accumulation_steps} accumulation; {mode}, {precision}; "
            f"{'resuming from ' + str(source) if source else 'starting from scratch'}",
            flush=True,
        )


def _train(trainer: Gr00tTrainer, resume: Checkpoint | None, settings: TrainingSettings) -> Any:
    if resume is not None and resume.step >= settings.max_steps:
        logger.info(
            "checkpoint %s already reached max_steps=%d; nothing to do", resume.path, settings.max_steps
        )
        return None
    return trainer.train(resume_from_checkpoint=str(resume.path) if resume is not None else None)


def _finish(
    trainer: Gr00tTrainer, run: RunDir, output: Any, resume: Checkpoint | None, handler: PreemptionHandler
) -> TrainingResult:
    """The result; after a preemption the marker and (``exit_on_preemption``) the requeue exit."""
    latest = run.latest_checkpoint()
    stop = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, StopOnPreemption))
    result = TrainingResult(
        global_step=trainer.state.global_step if output is not None else (resume.step if resume else 0),
        train_loss=float(output.training_loss) if output is not None else float("nan"),
        last_checkpoint=latest.path if latest is not None else None,
        resumed_from=resume.path if resume is not None else None,
        preempted=stop.triggered_at_step is not None,
        global_batch_size=trainer.global_batch_size,
        metrics=dict(output.metrics) if output is not None else {},
    )
    if not result.preempted:
        return result
    if trainer.args.should_save:
        run.mark_preempted(
            {
                "step": result.global_step,
                "signal": handler.signal_name,
                "checkpoint": str(result.last_checkpoint),
            }
        )
    barrier()
    logger.warning(
        "preempted at step %d; checkpoint %s; exit code %d",
        result.global_step,
        result.last_checkpoint,
        REQUEUE_EXIT_CODE,
    )
    if trainer.settings.exit_on_preemption:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.exit(REQUEUE_EXIT_CODE)
    return result


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
