"""Build a training run from the composed recipe, then hand it to the trainer.

`build_and_train(cfg)` is what `gr00t-train` and `gr00t-finetune` call. In order:

1. distributed set-up from the launcher's environment (`torchrun`: RANK/WORLD_SIZE/LOCAL_RANK);
2. data, embodiments, statistics and held-out episodes (`gr00t.train.build_data`);
3. model and processor (`gr00t.train.build_model`): the `model` preset, or `from_pretrained(base)`
   changed only where the recipe files or the command line set `model.*` keys, each change logged;
4. datasets → `MixtureDataset` (processed samples; the held-out episodes through an eval-mode
   processor for the validation loss), sampler (resumable, rank-sharded), collator;
5. `gr00t.train.trainer.run_training` with the trainer settings and the resolved config.

The effective settings are logged before training starts and written to
`<run_dir>/effective_settings.json`. A run that fails before its first checkpoint or logged step
leaves no run folder behind (when this call created it).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from gr00t import atomic
from gr00t.train.build_data import (  # noqa: F401  (re-exported: the build API in one place)
    DEMO_DATA,
    BuildError,
    DistInfo,
    HeldOut,
    barrier,
    build_datasets,
    build_training_dataset,
    build_validation_dataset,
    dist_info,
    ensure_all_stats,
    ensure_demo_dataset,
    hold_out,
    init_distributed,
    main_embodiment,
    mixture_embodiments,
    resolve_mixture,
    sampler_factory,
    shutdown_distributed,
)
from gr00t.train.build_model import (  # noqa: F401  (re-exported)
    TRAINING_TIME_FIELDS,
    base_statistics,
    build_model,
    build_processor,
    explicit_model_overrides,
    random_weights_warning,
    resolve_base_checkpoint,
    resolve_tokenizer,
)
from gr00t.train.lifetime import tie_trainer_to_launcher
from gr00t.train.run_dir import RunDir
from gr00t.train.settings import derive_batch, global_batch_note

logger = logging.getLogger(__name__)

# ---- trainer settings ------------------------------------------------------------------------------


def trainer_settings(cfg: DictConfig, info: DistInfo) -> dict[str, Any]:
    """`TrainingSettings` fields from the `trainer` node, `seed`, `resume`, `launcher` and the world size."""
    node = OmegaConf.to_container(cfg.trainer, resolve=True, enum_to_str=True)
    assert isinstance(node, dict)
    global_batch = node.pop("global_batch_size", None)
    try:
        node["per_device_batch_size"], node["gradient_accumulation_steps"] = derive_batch(
            global_batch,
            node.get("per_device_batch_size"),
            node.get("gradient_accumulation_steps"),
            info.world_size,
        )
    except ValueError as exc:
        raise BuildError(str(exc)) from exc
    node["seed"] = int(cfg.get("seed", node.get("seed", 42)))
    if cfg.get("resume") is not None:  # the recipe's top-level `resume=` (SPEC: "resume=false starts over")
        node["resume"] = bool(cfg.resume)
    launcher = cfg.get("launcher") or {}
    if launcher.get("preemption_signals") is not None:
        node["preemption_signals"] = list(launcher["preemption_signals"])
    if not node.get("run_name"):
        node["run_name"] = Path(str(cfg.run_dir)).name
    return node


# ---- entry -----------------------------------------------------------------------------------------


def build_and_train(cfg: DictConfig, log_name: str = "train") -> int:
    """Build everything from `cfg` and train; returns the process exit code.

    `log_name`: the run's log file, `<run_dir>/<log_name>.log`."""
    from gr00t.train.run_logging import RunLog

    tie_trainer_to_launcher()  # under torchrun: die with the agent rather than outlive it as an orphan
    info = dist_info()
    log = RunLog(info.is_main)
    if cfg.get("data") is None or OmegaConf.is_missing(cfg, "data"):  # fail before the heavy imports
        resolve_mixture(cfg, None, info)
    warning = random_weights_warning(cfg)
    if warning and info.is_main:
        logger.warning(warning)
    run_dir = Path(str(cfg.run_dir)).expanduser().resolve()
    created = _first_missing(run_dir)
    try:
        with RunDir(run_dir).lock():  # one trainer per run directory: fails fast when another holds it
            return _build_and_train(cfg, info, run_dir, log, log_name)
    except BaseException:
        if info.is_main and created is not None:
            _remove_unstarted(run_dir, created)
        raise
    finally:
        shutdown_distributed()
        log.close()


@dataclass
class _Parts:
    """What `_build_and_train` hands to the trainer."""

    model: Any
    source: dict[str, Any]
    processor: Any
    dataset: Any
    eval_dataset: Any | None
    heldout: HeldOut
    stats: dict[str, tuple[Any, Any]]
    sampler: Any  # (rank, world_size) -> the run's sampler
    weighting: list[dict[str, Any]]  # intervention up-weighting in force, per weighted dataset


def _build_parts(cfg: DictConfig, info: DistInfo, mixture: Any, embodiments: Any, settings: Any) -> _Parts:
    """Statistics, model, processor and the (training, held-out) datasets."""
    from gr00t.train.arguments import check_engine

    seed = settings.seed
    stats = ensure_all_stats(mixture, embodiments, info, recompute=bool(cfg.get("recompute_stats")))
    model, source = build_model(cfg)
    try:  # precision, DeepSpeed config and optimiser that cannot work together fail here, in one line
        check_engine(settings, str(model.config.model_dtype), info.world_size)
    except (ValueError, FileNotFoundError) as exc:
        raise BuildError(str(exc)) from exc
    stats = base_statistics(cfg, embodiments, stats, bool(model.config.use_relative_action))
    processor = build_processor(cfg, model.config, embodiments, stats)
    heldout = hold_out(cfg, mixture, embodiments)
    raw_datasets = build_datasets(mixture, embodiments, heldout.train)
    dataset = build_training_dataset(raw_datasets, processor, seed=seed)
    sampler, weighting = sampler_factory(raw_datasets, mixture, embodiments, settings, dataset)
    eval_dataset = build_validation_dataset(mixture, embodiments, heldout, processor, seed)
    return _Parts(model, source, processor, dataset, eval_dataset, heldout, stats, sampler, weighting)


def _build_and_train(cfg: DictConfig, info: DistInfo, run_dir: Path, log: Any, log_name: str) -> int:
    t0 = time.perf_counter()
    main = main_embodiment(cfg)
    init_distributed(info)
    threads = apply_cpu_threads(cfg.trainer.get("cpu_threads"))
    mixture = resolve_mixture(cfg, (main.name or main.tag) if main is not None else None, info)
    from gr00t.data.collator import Gr00tCollator
    from gr00t.train.trainer import run_training

    settings = _settings(cfg, info)
    parts = _build_parts(cfg, info, mixture, mixture_embodiments(mixture, main), settings)
    effective = _effective_settings(cfg, info, run_dir, parts, mixture, settings, threads, t0)
    if info.is_main:
        _announce(cfg, run_dir, log, log_name, effective, parts, mixture)
    processor = parts.processor
    result = run_training(
        parts.model,
        parts.dataset,
        Gr00tCollator(pad_token_id=processor.tokenizer.pad_token_id),
        settings,
        run_dir,
        processor=processor,
        sampler=parts.sampler,
        statistics={tag: {"stats": s, "relative_stats": rel} for tag, (s, rel) in parts.stats.items()},
        embodiment_map=processor.embodiment_id_map(),
        experiment_config=OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
        eval_dataset=parts.eval_dataset,
        heldout_episodes=parts.heldout.record,
    )
    if info.is_main:
        print(
            f"[gr00t] done: step {result.global_step}, last checkpoint {result.last_checkpoint}", flush=True
        )
    return result.exit_code


def _effective_settings(
    cfg: DictConfig,
    info: DistInfo,
    run_dir: Path,
    parts: _Parts,
    mixture: Any,
    settings: Any,
    threads: int | None,
    t0: float,
) -> dict[str, Any]:
    return {
        "recipe": cfg.get("recipe"),
        "run_dir": str(run_dir),
        "processes": info.world_size,
        **_model_summary(parts.model, parts.source),
        "data": mixture.to_dict(),
        "samples_per_dataset": parts.dataset.sizes,
        **({"intervention_weighting": parts.weighting} if parts.weighting else {}),
        "heldout_episodes": parts.heldout.record,
        "validation_samples": len(parts.eval_dataset) if parts.eval_dataset is not None else 0,
        "embodiments": dict(parts.processor.embodiment_id_map()),
        "global_batch_size": settings.global_batch_size,
        "cpu_threads": threads,
        "trainer": settings.to_dict(),
        "build_seconds": round(time.perf_counter() - t0, 2),
    }


def _announce(
    cfg: DictConfig, run_dir: Path, log: Any, log_name: str, effective: dict, parts: _Parts, mixture: Any
) -> None:
    """Rank 0: the run's log file, effective_settings.json, and one line on stdout."""
    log.attach(run_dir, log_name)
    atomic.write_json(run_dir / "effective_settings.json", effective)
    logger.info("effective settings:\n%s", json.dumps(effective, indent=2, default=str))
    held = f", {effective['validation_samples']} held out" if parts.eval_dataset is not None else ""
    print(
        f"[gr00t] {cfg.get('recipe')}: {parts.source['source']}, "
        f"{effective['trainable_parameters']:,}/{effective['total_parameters']:,} trainable parameters, "
        f"{len(parts.dataset)} samples{held} from {len(mixture.entries)} dataset(s), "
        f"embodiments {effective['embodiments']}, run_dir {run_dir}",
        flush=True,
    )


def _settings(cfg: DictConfig, info: DistInfo) -> Any:
    """The validated `TrainingSettings`, its `global_batch_size` the one this launch really runs."""
    from gr00t.train.settings import TrainingSettings

    try:
        settings = TrainingSettings.from_dict(trainer_settings(cfg, info))
    except ValueError as exc:
        raise BuildError(str(exc)) from exc
    accumulation = settings.gradient_accumulation_steps
    settings.global_batch_size = settings.per_device_batch_size * info.world_size * accumulation
    note = global_batch_note(cfg.trainer.get("global_batch_size"), settings, info.world_size)
    if note and info.is_main:
        logger.warning(note)
        print(f"[gr00t] warning: {note}", flush=True)
    return settings


def _model_summary(model: Any, source: dict[str, Any]) -> dict[str, Any]:
    """Where the model came from, its size and its training-time switches."""
    return {
        "model": source,
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total_parameters": sum(p.numel() for p in model.parameters()),
        "model_switches": {
            k: getattr(model.config, k) for k in TRAINING_TIME_FIELDS if hasattr(model.config, k)
        },
        "action_horizon": model.config.action_horizon,
    }


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of `path` that does not exist yet (None when `path` exists)."""
    if path.exists():
        return None
    while not path.parent.exists():
        path = path.parent
    return path


def _remove_unstarted(run_dir: Path, created: Path) -> None:
    """Remove the folders this run created when it wrote no checkpoint and logged no step."""
    if not run_dir.exists():
        return
    metrics = run_dir / "metrics.jsonl"
    started = any(run_dir.glob("checkpoint-*")) or (metrics.is_file() and metrics.stat().st_size > 0)
    if not started:
        shutil.rmtree(created, ignore_errors=True)


def apply_cpu_threads(threads: int | None) -> int | None:
    """`trainer.cpu_threads`: torch intra-op threads per process on CPU-only machines (None: torch's default).

    Small models gain nothing from intra-op threads, and on a busy machine they cost a lot."""
    import torch

    if threads is None or torch.cuda.is_available():
        return None
    if int(threads) < 1:
        raise BuildError(f"trainer.cpu_threads={threads}: expected a positive integer or null")
    torch.set_num_threads(int(threads))
    return int(threads)
