"""Build a training run from the resolved Hydra config, then hand it to the trainer.

`build_and_train(cfg)` is what `gr00t-train` and `gr00t-finetune` call. In order:

1. distributed set-up from the launcher's environment (`torchrun`: RANK/WORLD_SIZE/LOCAL_RANK);
2. data: `data=` is a dataset directory, a mixture name or YAML, or `demo` (the built-in demo
   dataset, written to `demo_dir` by rank 0 when missing); `cotrain.mixture` mixes another
   mixture in with `cotrain.ratio` of the draws;
3. embodiments: the `embodiment` config group node (so `embodiment.*=` overrides apply) for the
   main dataset, shipped configs by name for the others;
4. statistics: computed once by rank 0 (`ensure_stats`), the other ranks wait at a barrier;
5. model: from the `model` preset fields, or `from_pretrained(base)` with the recipe's
   training-time switches (unfreezing, relative actions, state dropout) on top;
6. processor (training mode), datasets → `MixtureDataset` (processed samples), sampler
   (resumable, rank-sharded), collator;
7. `gr00t.train.trainer.run_training` with the trainer settings and the resolved config.

The effective settings are logged before training starts and written to
`<run_dir>/effective_settings.json`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

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
)
DEMO_DATA = "demo"
TRAINER_ONLY_KEYS = ("global_batch_size", "cpu_threads")  # `trainer` keys that are not TrainingSettings


class BuildError(ValueError):
    """The resolved config cannot be turned into a run; the message names the key."""


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the launch."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


# ---- distribution ------------------------------------------------------------------------------


def dist_info() -> DistInfo:
    """Rank, world size and local rank from the launcher's environment (1 process without one)."""
    return DistInfo(
        rank=int(os.environ.get("RANK", "0")),
        world_size=int(os.environ.get("WORLD_SIZE", "1")),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def init_distributed(info: DistInfo) -> None:
    """Join the process group early (the stats barrier needs it); the trainer reuses it."""
    if info.world_size <= 1:
        return
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(info.local_rank)
        dist.init_process_group("nccl", device_id=torch.device("cuda", info.local_rank))
    else:
        dist.init_process_group("gloo")


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if dist_info().world_size <= 1:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


# ---- data ------------------------------------------------------------------------------------------


def ensure_demo_dataset(directory: str | Path, info: DistInfo) -> Path:
    """The built-in demo dataset at `directory`, written by rank 0 when missing."""
    path = Path(directory).expanduser().resolve()
    if info.is_main and not (path / "meta" / "info.json").is_file():
        from gr00t.data.demo import write_demo_dataset

        if path.exists() and any(path.iterdir()):
            raise BuildError(
                f"demo_dir={str(directory)!r}: {path} exists, is not empty and holds no demo dataset "
                "(meta/info.json missing); remove it or choose another demo_dir"
            )
        print(f"[gr00t] writing the demo dataset to {path}", flush=True)
        write_demo_dataset(path)
    barrier()
    return path


def resolve_mixture(cfg: DictConfig, embodiment_name: str | None, info: DistInfo) -> Any:
    """The training mixture named by `data=` (+ `cotrain`)."""
    from gr00t.data.mixture import MixtureError, co_train, load_mixture, resolve_data

    data = cfg.get("data")
    if data is None or OmegaConf.is_missing(cfg, "data"):
        raise BuildError(
            "data=??? : give a dataset directory, a mixture name from data_mixtures/, a mixture "
            ".yaml file, or `demo` (e.g. data=demo)"
        )
    data = str(data)
    if data == DEMO_DATA and not Path(DEMO_DATA).is_dir():
        data = str(ensure_demo_dataset(cfg.get("demo_dir") or "demo_data", info))
    cotrain = cfg.get("cotrain") or {}
    try:
        mixture = resolve_data(data, embodiment=embodiment_name, data_root=cfg.get("data_root"))
        if cotrain.get("mixture"):
            ratio = float(cotrain.get("ratio") or 0.0)
            if not 0.0 < ratio < 1.0:
                raise BuildError(
                    f"cotrain.ratio={ratio}: expected a share of draws in (0, 1) with "
                    f"cotrain.mixture={cotrain.get('mixture')!r}"
                )
            other = load_mixture(str(cotrain["mixture"]), data_root=cfg.get("data_root"))
            mixture = co_train(mixture, other, ratio)
        elif cotrain.get("ratio"):
            raise BuildError(f"cotrain.ratio={cotrain.get('ratio')} needs cotrain.mixture=<mixture name>")
    except MixtureError as exc:
        raise BuildError(str(exc)) from exc
    missing = [str(e.path) for e in mixture.entries if not e.path.is_dir()]
    if missing:
        raise BuildError(
            f"data={cfg.get('data')!r}: dataset director{'y' if len(missing) == 1 else 'ies'} "
            f"not found: {missing} (set data_root= or $GR00T_DATA_ROOT for relative mixture paths)"
        )
    return mixture


def main_embodiment(cfg: DictConfig) -> Any | None:
    """The `embodiment` node (with command-line overrides applied) as an `EmbodimentConfig`."""
    from gr00t.data.embodiment import EmbodimentConfig, load_embodiment

    node = cfg.get("embodiment")
    if isinstance(node, DictConfig):
        return EmbodimentConfig.from_dict(
            node, source="config group 'embodiment'", name=_choice("embodiment")
        )
    name = cfg.get("embodiment_name") or (node if isinstance(node, str) else None)
    return load_embodiment(name) if name else None


def _choice(group: str) -> str | None:
    """The option Hydra picked for `group` (None outside a Hydra run)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return HydraConfig.get().runtime.choices.get(group)
    except ValueError:
        return None


def mixture_embodiments(mixture: Any, main: Any | None) -> dict[str, Any]:
    """Embodiment config for every name used by the mixture (the main one wins for its name/tag)."""
    from gr00t.data.embodiment import load_embodiment

    out: dict[str, Any] = {}
    for name in mixture.embodiments:
        if main is not None and name in (main.name, main.tag):
            out[name] = main
        else:
            out[name] = load_embodiment(name)
    return out


def ensure_all_stats(
    mixture: Any, embodiments: Mapping[str, Any], info: DistInfo
) -> dict[str, tuple[Any, Any]]:
    """Per embodiment tag: (stats, relative_stats) over its datasets; rank 0 computes, others wait."""
    from gr00t.data.stats import ensure_stats

    roots: dict[str, list[Path]] = {}
    configs: dict[str, Any] = {}
    for entry in mixture.entries:
        emb = embodiments[entry.embodiment]
        roots.setdefault(emb.tag, []).append(entry.path)
        configs[emb.tag] = emb
    out = {}
    for tag, paths in roots.items():
        out[tag] = ensure_stats(paths, configs[tag], is_main_process=info.is_main, barrier=barrier)
    return out


# ---- model -----------------------------------------------------------------------------------------


def resolve_base_checkpoint(base: str | Path) -> Path:
    """A checkpoint folder from `base=`: the folder itself, or the newest complete one of a run dir."""
    from gr00t.train.checkpoint import latest_checkpoint

    path = Path(base).expanduser()
    if (path / "config.json").is_file():
        return path
    if path.is_dir():
        latest = latest_checkpoint(path)
        if latest is not None:
            return latest
        raise BuildError(
            f"base={str(base)!r}: {path} has no config.json and no complete checkpoint-<step>/ folder"
        )
    raise BuildError(f"base={str(base)!r}: no such checkpoint directory")


def explicit_model_overrides() -> set[str]:
    """`model.<field>` keys set on the command line (empty outside a Hydra run)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        task = HydraConfig.get().overrides.task
    except ValueError:
        return set()
    keys = set()
    for item in task:
        key = item.split("=", 1)[0].lstrip("+~")
        if key.startswith("model."):
            keys.add(key.split(".", 2)[1])
    return keys


def build_model(cfg: DictConfig) -> tuple[Any, dict[str, Any]]:
    """The model and a description of where it came from."""
    from gr00t.model.config import Gr00tN16Config
    from gr00t.model.gr00t_n16 import Gr00tN16Model
    from gr00t.model.presets import config_from_dict

    fields = OmegaConf.to_container(cfg.model, resolve=True)
    assert isinstance(fields, dict)
    preset = fields.pop("name", None)
    base = cfg.get("base")
    if not base:
        try:
            config = config_from_dict(fields)
        except ValueError as exc:
            raise BuildError(f"model ({preset}): {exc}") from exc
        return Gr00tN16Model(config), {"source": f"preset {preset}", "preset": preset}

    checkpoint = resolve_base_checkpoint(str(base))
    base_config = Gr00tN16Config.from_pretrained(str(checkpoint))
    explicit = explicit_model_overrides()
    frozen = sorted(k for k in explicit if k not in TRAINING_TIME_FIELDS and k != "name")
    if frozen:
        raise BuildError(
            f"model.{frozen[0]} cannot change when finetuning from base={base}: it is part of the checkpoint's "
            f"architecture. Fields that may change: {list(TRAINING_TIME_FIELDS)}"
        )
    overrides = {k: fields[k] for k in TRAINING_TIME_FIELDS if k in fields}
    differs = {
        k: (getattr(base_config, k), fields[k])
        for k in fields
        if k not in TRAINING_TIME_FIELDS and hasattr(base_config, k) and getattr(base_config, k) != fields[k]
    }
    if differs:
        logger.info(
            "base checkpoint architecture used instead of preset %s for: %s",
            preset,
            ", ".join(f"{k}={old!r} (preset {new!r})" for k, (old, new) in sorted(differs.items())),
        )
    model = Gr00tN16Model.from_pretrained(str(checkpoint), **overrides)
    return model, {"source": f"checkpoint {checkpoint}", "base": str(checkpoint), "preset": preset}


# ---- processor and samples -------------------------------------------------------------------------


def resolve_tokenizer(cfg: DictConfig, model_config: Any) -> Any:
    """`tokenizer=auto|tiny|<path or hub name>`; auto: the base checkpoint's, else tiny for tiny vocabularies."""
    from gr00t.data.tokenizer import load_tokenizer

    choice = str(cfg.get("tokenizer") or "auto")
    if choice != "auto":
        return load_tokenizer(choice)
    base = cfg.get("base")
    if base:
        candidate = resolve_base_checkpoint(str(base)) / "processor" / "tokenizer"
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
    image = OmegaConf.to_container(cfg.image, resolve=True) if cfg.get("image") is not None else {}
    try:
        image_config = ImageTransformConfig(**image)
    except TypeError as exc:
        raise BuildError(f"image: {exc}") from exc
    vlm = OmegaConf.to_container(cfg.vlm, resolve=True) if cfg.get("vlm") is not None else {}
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
    node = OmegaConf.to_container(cfg.trainer, resolve=True)
    assert isinstance(node, dict)
    global_batch = node.pop("global_batch_size", None)
    node.pop("cpu_threads", None)
    accumulation = int(node.get("gradient_accumulation_steps") or 1)
    if node.get("per_device_batch_size") is None:
        if global_batch is None:
            raise BuildError("trainer.per_device_batch_size and trainer.global_batch_size are both null")
        denom = info.world_size * accumulation
        if global_batch % denom:
            raise BuildError(
                f"trainer.global_batch_size={global_batch} is not divisible by {info.world_size} processes x "
                f"{accumulation} accumulation steps; set trainer.per_device_batch_size explicitly"
            )
        node["per_device_batch_size"] = global_batch // denom
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


def build_and_train(cfg: DictConfig) -> int:
    """Build everything from `cfg` and train; returns the process exit code."""
    t0 = time.perf_counter()
    info = dist_info()
    _configure_logging(info)
    run_dir = Path(str(cfg.run_dir)).expanduser().resolve()
    main = main_embodiment(cfg)
    if OmegaConf.is_missing(cfg, "data"):  # fail before the heavy imports
        resolve_mixture(cfg, None, info)

    init_distributed(info)
    threads = apply_cpu_threads(cfg.trainer.get("cpu_threads"))
    mixture = resolve_mixture(cfg, main.name if main is not None else None, info)
    from gr00t.train.trainer import TrainingSettings, run_training

    try:
        settings = TrainingSettings.from_dict(trainer_settings(cfg, info))
    except ValueError as exc:
        raise BuildError(str(exc)) from exc
    embodiments = mixture_embodiments(mixture, main)
    stats = ensure_all_stats(mixture, embodiments, info)

    model, model_source = build_model(cfg)
    processor = build_processor(cfg, model.config, embodiments, stats)
    datasets = build_datasets(mixture, embodiments)
    dataset = build_training_dataset(datasets, processor, seed=settings.seed)
    from gr00t.data.collator import Gr00tCollator
    from gr00t.train.loader import make_sampler

    collator = Gr00tCollator(pad_token_id=processor.tokenizer.pad_token_id)
    global_batch = settings.per_device_batch_size * info.world_size * settings.gradient_accumulation_steps
    weights = [e.weight for e in mixture.entries] if len(mixture.entries) > 1 else None
    sizes = dataset.sizes

    def sampler_factory(rank: int, world_size: int) -> Any:
        # trainer.dataloader_sampling: the decode-aware WindowSampler (default) or a MixtureSampler
        return make_sampler(dataset, settings, rank, world_size, weights=weights)

    effective = {
        "recipe": cfg.get("recipe"),
        "run_dir": str(run_dir),
        "processes": info.world_size,
        "model": model_source,
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total_parameters": sum(p.numel() for p in model.parameters()),
        "model_switches": {
            k: getattr(model.config, k) for k in TRAINING_TIME_FIELDS if hasattr(model.config, k)
        },
        "action_horizon": model.config.action_horizon,
        "data": mixture.to_dict(),
        "samples_per_dataset": sizes,
        "embodiments": {tag: emb_id for tag, emb_id in processor.embodiment_id_map().items()},
        "global_batch_size": global_batch,
        "cpu_threads": threads,
        "trainer": settings.to_dict(),
        "build_seconds": round(time.perf_counter() - t0, 2),
    }
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_json_atomic(run_dir / "effective_settings.json", effective)
        logger.info("effective settings:\n%s", json.dumps(effective, indent=2, default=str))
        print(
            f"[gr00t] {cfg.get('recipe')}: {model_source['source']}, "
            f"{effective['trainable_parameters']:,}/{effective['total_parameters']:,} trainable parameters, "
            f"{len(dataset)} samples from {len(datasets)} dataset(s), embodiments {effective['embodiments']}, "
            f"run_dir {run_dir}",
            flush=True,
        )

    statistics = {tag: {"stats": s, "relative_stats": rel} for tag, (s, rel) in stats.items()}
    result = run_training(
        model,
        dataset,
        collator,
        settings,
        run_dir,
        processor=processor,
        sampler=sampler_factory,
        statistics=statistics,
        embodiment_map=processor.embodiment_id_map(),
        experiment_config=OmegaConf.to_container(cfg, resolve=True),
    )
    if info.is_main:
        print(
            f"[gr00t] done: step {result.global_step}, last checkpoint {result.last_checkpoint}", flush=True
        )
    return result.exit_code


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


def _configure_logging(info: DistInfo) -> None:
    level = logging.INFO if info.is_main else logging.WARNING
    logging.getLogger("gr00t").setLevel(level)


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)
