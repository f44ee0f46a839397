"""Build a training run from the composed recipe, then hand it to the trainer.

`build_and_train(cfg)` is what `gr00t-train` and `gr00t-finetune` call. In order:

1. distributed set-up from the launcher's environment (`torchrun`: RANK/WORLD_SIZE/LOCAL_RANK);
2. data, embodiments and statistics (`gr00t.train.build_data`);
3. model: from the `model` preset fields, or `from_pretrained(base)` (a checkpoint folder, a run
   folder or a Hugging Face model id) where only the `model.*` keys the recipe files or the command
   line set change the checkpoint's config, each change logged;
4. processor (training mode), datasets → `MixtureDataset` (processed samples), sampler
   (resumable, rank-sharded), collator;
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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from gr00t import atomic
from gr00t.train.build_data import (  # noqa: F401  (re-exported: the build API in one place)
    DEMO_DATA,
    BuildError,
    DistInfo,
    barrier,
    dist_info,
    ensure_all_stats,
    ensure_demo_dataset,
    init_distributed,
    main_embodiment,
    mixture_embodiments,
    resolve_mixture,
    sampler_factory,
)
from gr00t.train.lifetime import tie_trainer_to_launcher
from gr00t.train.run_lock import holding_run_dir
from gr00t.train.settings import derive_batch, global_batch_note

logger = logging.getLogger(__name__)

# Model config fields that may change when finetuning a pretrained checkpoint: everything else
# describes the architecture and is taken from the checkpoint.
TRAINING_TIME_FIELDS = (
    "tune_llm",
    "tune_visual",
    "tune_top_llm_layers",
    "tune_projector",
    "tune_diffusion_model",
    "tune_vlln",
    "backbone_trainable_params_fp32",
    "state_dropout_prob",
    "state_additive_noise_scale",
    "use_relative_action",
    "dit_dropout",
    "num_inference_timesteps",
    "backbone_attn_implementation",
    "rtc_training_max_delay",
)


# ---- model -----------------------------------------------------------------------------------------


def resolve_base_checkpoint(base: str | Path) -> Path:
    """A checkpoint folder from `base=`: the folder itself, the newest complete one of a run folder,
    or the snapshot of a Hugging Face model id (`org/name[@revision]`)."""
    from gr00t.hub import HubError, looks_like_hub_id, resolve
    from gr00t.train.checkpoint import latest_checkpoint

    path = Path(base).expanduser()
    if not path.exists() and looks_like_hub_id(str(base)):
        try:
            path = resolve(str(base), repo_type="model", key="base")
        except HubError as exc:
            raise BuildError(str(exc)) from exc
    if (path / "config.json").is_file():
        if not any((path / n).is_file() for n in ("model.safetensors", "model.safetensors.index.json")):
            raise BuildError(f"base={str(base)!r}: {path} has config.json but no model.safetensors")
        return path
    if path.is_dir():
        latest = latest_checkpoint(path)
        if latest is not None:
            return latest
        raise BuildError(
            f"base={str(base)!r}: {path} has no config.json and no complete checkpoint-<step>/ folder"
        )
    raise BuildError(f"base={str(base)!r}: no such checkpoint directory (nor a Hugging Face model id)")


def explicit_model_overrides() -> set[str]:
    """`model.<field>` keys the recipe files or the command line set (empty outside a composed run)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        hydra = HydraConfig.get()
    except ValueError:
        return set()
    from gr00t.configs.compose import model_keys_set

    return model_keys_set(str(hydra.job.config_name), list(hydra.overrides.task))


def build_model(cfg: DictConfig) -> tuple[Any, dict[str, Any]]:
    """The model and a description of where it came from."""
    from gr00t.model.config import Gr00tN16Config
    from gr00t.model.gr00t_n16 import Gr00tN16Model
    from gr00t.model.presets import config_from_dict

    fields = OmegaConf.to_container(cfg.model, resolve=True, enum_to_str=True)
    assert isinstance(fields, dict)
    preset = fields.pop("name", None)
    base = cfg.get("base")
    if not base:
        try:
            config = config_from_dict(fields)
        except ValueError as exc:
            raise BuildError(f"model ({preset}): {exc}") from exc
        __import__("torch").manual_seed(int(cfg.get("seed", 42)))  # `seed=` fixes the initial weights too
        return Gr00tN16Model(config), {"source": f"preset {preset}", "preset": preset}

    checkpoint = resolve_base_checkpoint(str(base))
    base_config = Gr00tN16Config.from_pretrained(str(checkpoint))
    explicit = explicit_model_overrides()
    # architecture keys may be named (a recipe states the released shapes) as long as they agree
    frozen = sorted(
        k
        for k in explicit
        if k not in TRAINING_TIME_FIELDS and fields.get(k) != getattr(base_config, k, None)
    )
    if frozen:
        raise BuildError(
            f"model.{frozen[0]} cannot change when finetuning from base={base}: it is part of the checkpoint's "
            f"architecture. Fields that may change: {list(TRAINING_TIME_FIELDS)}"
        )
    overrides = {k: fields[k] for k in sorted(explicit) if k in fields}
    changes = {k: (getattr(base_config, k, None), v) for k, v in overrides.items()}
    for key, (old, new) in changes.items():
        logger.info(
            "base checkpoint %s: model.%s=%r %s",
            checkpoint.name,
            key,
            new,
            "(unchanged)" if old == new else f"overrides the checkpoint's {old!r}",
        )
    logger.info("base checkpoint %s: every other model field comes from its config.json", checkpoint)
    model = Gr00tN16Model.from_pretrained(str(checkpoint), **overrides)
    source = {"source": f"checkpoint {checkpoint}", "base": str(checkpoint), "preset": preset}
    return model, {**source, "overrides": {k: {"checkpoint": o, "run": n} for k, (o, n) in changes.items()}}


def random_weights_warning(cfg: DictConfig) -> str | None:
    """The warning for a full-size model without `base=` (its weights start random), or None."""
    if cfg.get("base") or int(cfg.model.backbone_embedding_dim) < 1024:
        return None
    return (
        f"model={cfg.model.name} without base=: the full-size model (billions of parameters) starts from "
        "RANDOM weights. That is right for pretraining from scratch; to finetune the released model pass "
        "base=<checkpoint folder or Hugging Face id, e.g. nvidia/GR00T-N1.6-3B>."
    )


# ---- processor and samples -------------------------------------------------------------------------


def resolve_tokenizer(cfg: DictConfig, model_config: Any) -> Any:
    """`tokenizer=auto|tiny|<path or hub name>`; auto: the base checkpoint's, else tiny for tiny vocabularies."""
    from gr00t.data.tokenizer import load_tokenizer

    choice = str(cfg.get("tokenizer") or "auto")
    if choice != "auto":
        return load_tokenizer(choice)
    base = cfg.get("base")
    if base:
        root = resolve_base_checkpoint(str(base))
        for candidate in (root / "tokenizer", root / "processor" / "tokenizer"):
            if candidate.is_dir():
                return load_tokenizer(candidate)
    vocab = int((model_config.text_config or {}).get("vocab_size", 0))
    if model_config.backbone_type == "eagle" and vocab <= 1024:
        return load_tokenizer("tiny")
    raise BuildError(
        f"tokenizer=auto: no tokenizer in base={base!r} and model {model_config.backbone_type} with vocabulary "
        f"{vocab} is not the tiny one; pass tokenizer=<tokenizer folder or hub name>"
    )


def build_processor(
    cfg: DictConfig, model_config: Any, embodiments: Mapping[str, Any], stats: Mapping[str, tuple[Any, Any]]
) -> Any:
    """The training-mode processor for every embodiment of the mixture."""
    from gr00t.data.image_transforms import ImageTransformConfig
    from gr00t.data.processor import Gr00tProcessor

    by_tag = {e.tag: e for e in embodiments.values()}
    triples = [(by_tag[tag], s, rel) for tag, (s, rel) in stats.items()]
    image = (
        OmegaConf.to_container(cfg.image, resolve=True, enum_to_str=True)
        if cfg.get("image") is not None
        else {}
    )
    try:
        image_config = ImageTransformConfig(**image)
    except TypeError as exc:
        raise BuildError(f"image: {exc}") from exc
    vlm = (
        OmegaConf.to_container(cfg.vlm, resolve=True, enum_to_str=True) if cfg.get("vlm") is not None else {}
    )
    vlm = {k: v for k, v in vlm.items() if v is not None}
    tokenizer = resolve_tokenizer(cfg, model_config)
    return Gr00tProcessor.from_config(
        model_config, triples, tokenizer, image_config, training=True, vlm_overrides=vlm
    )


def build_datasets(mixture: Any, embodiments: Mapping[str, Any]) -> list[Any]:
    """One raw-sample dataset per mixture entry."""
    from gr00t.data.dataset import Gr00tDataset

    return [Gr00tDataset(entry.path, embodiments[entry.embodiment]) for entry in mixture.entries]


def build_training_dataset(datasets: Sequence[Any], processor: Any, seed: int) -> Any:
    """The processed training dataset: `MixtureDataset` over ``datasets`` with ``processor`` applied.

    Indexed with the `SampleIndex` values the run's `MixtureSampler` yields, each sample's random
    draws (image augmentation) are keyed by its (sampler seed, epoch, position): identical after a
    resume and whatever the number of workers, and different when the sample is drawn again.
    """
    from gr00t.data.dataset import MixtureDataset

    return MixtureDataset(datasets, transform=processor, seed=seed)


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
        with holding_run_dir(run_dir):  # one trainer per run directory: fails fast when another holds it
            return _build_and_train(cfg, info, run_dir, log, log_name)
    except BaseException:
        if info.is_main and created is not None:
            _remove_unstarted(run_dir, created)
        raise
    finally:
        log.close()


def _build_and_train(cfg: DictConfig, info: DistInfo, run_dir: Path, log: Any, log_name: str) -> int:
    t0 = time.perf_counter()
    main = main_embodiment(cfg)
    init_distributed(info)
    threads = apply_cpu_threads(cfg.trainer.get("cpu_threads"))
    mixture = resolve_mixture(cfg, (main.name or main.tag) if main is not None else None, info)
    from gr00t.train.arguments import check_engine
    from gr00t.train.trainer import run_training

    settings = _settings(cfg, info)
    global_batch = settings.global_batch_size
    embodiments = mixture_embodiments(mixture, main)
    stats = ensure_all_stats(mixture, embodiments, info, recompute=bool(cfg.get("recompute_stats")))

    model, model_source = build_model(cfg)
    try:  # precision, DeepSpeed config and optimiser that cannot work together fail here, in one line
        check_engine(settings, str(model.config.model_dtype), info.world_size)
    except (ValueError, FileNotFoundError) as exc:
        raise BuildError(str(exc)) from exc
    processor = build_processor(cfg, model.config, embodiments, stats)
    raw_datasets = build_datasets(mixture, embodiments)
    dataset = build_training_dataset(raw_datasets, processor, seed=settings.seed)
    sampler, weighting = sampler_factory(raw_datasets, mixture, embodiments, settings, dataset)
    from gr00t.data.collator import Gr00tCollator

    collator = Gr00tCollator(pad_token_id=processor.tokenizer.pad_token_id)
    effective = {
        "recipe": cfg.get("recipe"),
        "run_dir": str(run_dir),
        "processes": info.world_size,
        **_model_summary(model, model_source),
        "data": mixture.to_dict(),
        "samples_per_dataset": dataset.sizes,
        **({"intervention_weighting": weighting} if weighting else {}),
        "embodiments": dict(processor.embodiment_id_map()),
        "global_batch_size": global_batch,
        "cpu_threads": threads,
        "trainer": settings.to_dict(),
        "build_seconds": round(time.perf_counter() - t0, 2),
    }
    if info.is_main:
        log.attach(run_dir, log_name)
        atomic.write_json(run_dir / "effective_settings.json", effective)
        logger.info("effective settings:\n%s", json.dumps(effective, indent=2, default=str))
        print(
            f"[gr00t] {cfg.get('recipe')}: {model_source['source']}, "
            f"{effective['trainable_parameters']:,}/{effective['total_parameters']:,} trainable parameters, "
            f"{len(dataset)} samples from {len(mixture.entries)} dataset(s), embodiments {effective['embodiments']}, "
            f"run_dir {run_dir}",
            flush=True,
        )
    result = run_training(
        model,
        dataset,
        collator,
        settings,
        run_dir,
        processor=processor,
        sampler=sampler,
        statistics={tag: {"stats": s, "relative_stats": rel} for tag, (s, rel) in stats.items()},
        embodiment_map=processor.embodiment_id_map(),
        experiment_config=OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
    )
    if info.is_main:
        print(
            f"[gr00t] done: step {result.global_step}, last checkpoint {result.last_checkpoint}", flush=True
        )
    return result.exit_code


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
