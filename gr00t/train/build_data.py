"""The data side of building a run from the recipe: processes, datasets, embodiments, statistics.

* `dist_info` / `init_distributed` / `barrier`: this process's place in a torchrun launch;
* `resolve_mixture`: `data=` is a dataset folder, a Hugging Face dataset id, a mixture name or
  YAML file, or `demo` (the built-in dataset, written to `demo_dir` by rank 0 when missing);
  `cotrain.mixture` mixes another mixture in with `cotrain.ratio` of the draws;
* `main_embodiment` / `mixture_embodiments`: the `embodiment` node of the recipe (command-line
  overrides applied) for the main dataset, known configs by name for the others;
* `ensure_all_stats`: statistics computed once by rank 0, the other ranks wait at a barrier;
* `sampler_factory`: the run's sampler per rank (mixture weights, intervention up-weighting).
* `hold_out`, `build_datasets`, `build_validation_dataset`: the recipe's `val_episodes` kept out of
  the training datasets and served, through an eval-mode processor, to the validation loss.

Nothing here imports torch before it is needed (the command line runs these checks first).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

DEMO_DATA = "demo"


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


def shutdown_distributed() -> None:
    """Leave the process group before the interpreter exits. Left to Python's teardown, gloo's
    threads can be destroyed while still joinable ("terminate called without an active exception",
    SIGABRT) after training ended well, and the launcher then reports the rank as failed."""
    import sys

    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if dist_info().world_size <= 1:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


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


def is_demo(cfg: DictConfig) -> bool:
    """`data=demo` naming the built-in demo dataset (not a folder called `demo`)."""
    return str(cfg.get("data")) == DEMO_DATA and not Path(DEMO_DATA).is_dir()


def data_folder(data: str) -> str:
    """`data` with a Hugging Face dataset id replaced by its local snapshot folder."""
    from gr00t.hub import HubError, looks_like_hub_id, resolve

    if not looks_like_hub_id(data):
        return data
    try:
        return str(resolve(data, repo_type="dataset", key="data"))
    except HubError as exc:
        raise BuildError(str(exc)) from exc


def resolve_mixture(cfg: DictConfig, embodiment_name: str | None, info: DistInfo) -> Any:
    """The training mixture named by `data=` (+ `cotrain`)."""
    from gr00t.data.mixture import MixtureError, co_train, load_mixture, resolve_data

    if cfg.get("data") is None or OmegaConf.is_missing(cfg, "data"):
        raise BuildError(
            "data=??? : give a dataset folder, a Hugging Face dataset id (org/name), a mixture name, "
            "a mixture .yaml file, or `demo` (e.g. data=demo)"
        )
    data = (
        str(ensure_demo_dataset(cfg.get("demo_dir") or "demo_data", info)) if is_demo(cfg) else str(cfg.data)
    )
    cotrain = cfg.get("cotrain") or {}
    try:
        mixture = resolve_data(data_folder(data), embodiment=embodiment_name, data_root=cfg.get("data_root"))
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


def embodiment_choice() -> tuple[str | None, str]:
    """(robot name, source description) of the `embodiment` option Hydra picked."""
    try:
        from hydra.core.hydra_config import HydraConfig

        option = HydraConfig.get().runtime.choices.get("embodiment")
    except ValueError:
        return None, "config node 'embodiment'"
    from gr00t.configs.compose import embodiment_name, embodiment_source

    path = embodiment_source(option) if option else None
    return embodiment_name(option), str(path) if path else "config node 'embodiment'"


def main_embodiment(cfg: DictConfig) -> Any | None:
    """The `embodiment` node (with command-line overrides applied) as an `EmbodimentConfig`."""
    from gr00t.data.embodiment import EmbodimentConfig

    node = cfg.get("embodiment")
    if isinstance(node, DictConfig):
        name, source = embodiment_choice()
        return EmbodimentConfig.from_dict(node, source=source, name=name)
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
    mixture: Any, embodiments: Mapping[str, Any], info: DistInfo, recompute: bool = False
) -> dict[str, tuple[Any, Any]]:
    """Per embodiment tag: (stats, relative_stats) over its datasets; rank 0 computes, others wait.

    Statistics that do not fit are an error unless ``recompute`` (`recompute_stats=true`)."""
    from gr00t.data.stats import ensure_stats

    roots: dict[str, list[Path]] = {}
    configs: dict[str, Any] = {}
    for entry in mixture.entries:
        emb = embodiments[entry.embodiment]
        roots.setdefault(emb.tag, []).append(entry.path)
        configs[emb.tag] = emb
    out = {}
    for tag, paths in roots.items():
        out[tag] = ensure_stats(
            paths, configs[tag], is_main_process=info.is_main, barrier=barrier, recompute=recompute
        )
    return out


def sampler_factory(
    datasets: Sequence[Any],
    mixture: Any,
    embodiments: Mapping[str, Any],
    settings: Any,
    training_dataset: Any = None,
) -> tuple[Any, list[dict[str, Any]]]:
    """`(rank, world_size) -> sampler` over the mixture's datasets with its weights, and the
    intervention weighting in force (per weighted dataset; empty: none).

    Given the ``training_dataset`` (a `MixtureDataset` of ``datasets``), the sampler
    ``trainer.dataloader_sampling`` asks for (`gr00t.train.loader.make_sampler`): the decode-aware
    `WindowSampler` by default, its chunks weighted by the episodes' intervention factors. With a
    weighting under ``random`` sampling (or without the training dataset): the random-access
    `EpisodeWeightedSampler`; otherwise a `MixtureSampler`."""
    from gr00t.data.intervention import mixture_factors, weighted_sampler_factory
    from gr00t.data.sampler import MixtureSampler

    weights = [e.weight for e in mixture.entries] if len(mixture.entries) > 1 else None
    try:
        factors, summary = mixture_factors(mixture.entries, embodiments, datasets)
    except ValueError as exc:
        raise BuildError(str(exc)) from exc
    windows = training_dataset is not None and getattr(settings, "dataloader_sampling", None) == "windows"
    if any(factors) and not windows:
        batch = settings.per_device_batch_size
        return weighted_sampler_factory(datasets, weights, factors, settings.seed, batch), summary
    if training_dataset is not None:
        from gr00t.train.loader import make_sampler

        found = factors if any(factors) else None

        def default(rank: int, world_size: int) -> Any:
            return make_sampler(training_dataset, settings, rank, world_size, weights=weights, factors=found)

        return default, summary

    def factory(rank: int, world_size: int) -> MixtureSampler:
        return MixtureSampler(
            [len(d) for d in datasets],
            weights=weights,
            seed=settings.seed,
            rank=rank,
            world_size=world_size,
            round_to=settings.per_device_batch_size * world_size,
        )

    return factory, summary


# ---- datasets and held-out episodes ---------------------------------------------------------------


@dataclass
class HeldOut:
    """Per mixture entry: the episodes training uses and those held out (both None: every episode)."""

    train: list[list[int] | None]
    val: list[list[int]]
    record: dict[str, Any] | None  # heldout_episodes.json (None when nothing is held out)


def hold_out(cfg: DictConfig, mixture: Any, embodiments: Mapping[str, Any]) -> HeldOut:
    """Apply the recipe's `val_episodes` to every dataset of the mixture (`gr00t.data.heldout`)."""
    from gr00t.data.heldout import HeldoutError, choose_heldout, heldout_record
    from gr00t.data.lerobot import open_lerobot_dataset

    spec = cfg.get("val_episodes")
    if OmegaConf.is_config(spec):
        spec = OmegaConf.to_container(spec)
    entries = list(mixture.entries)
    if spec is None:
        return HeldOut([None] * len(entries), [[] for _ in entries], None)
    if isinstance(spec, list) and len(entries) > 1:
        raise BuildError(
            f"val_episodes={spec}: a list of episodes needs a single dataset, this mixture has {len(entries)}; "
            "give a count or a fraction"
        )
    seed = int(cfg.get("seed", 42))
    train, val, recorded = [], [], []
    for entry in entries:
        episodes = list(open_lerobot_dataset(entry.path).episode_indices)
        try:
            held = choose_heldout(episodes, spec, seed, str(entry.path))
        except HeldoutError as exc:
            raise BuildError(str(exc)) from exc
        train.append([e for e in episodes if e not in set(held)])
        val.append(held)
        recorded.append((entry.path, embodiments[entry.embodiment].tag, held))
    return HeldOut(train, val, heldout_record(seed, spec, recorded))


def build_datasets(
    mixture: Any, embodiments: Mapping[str, Any], episodes: Sequence[list[int] | None] | None = None
) -> list[Any]:
    """One raw-sample dataset per mixture entry (``episodes``: each entry's episodes, None = all)."""
    from gr00t.data.dataset import Gr00tDataset

    chosen = list(episodes) if episodes is not None else [None] * len(mixture.entries)
    return [
        Gr00tDataset(entry.path, embodiments[entry.embodiment], episodes=eps)
        for entry, eps in zip(mixture.entries, chosen)
    ]


def build_training_dataset(datasets: Sequence[Any], processor: Any, seed: int) -> Any:
    """The processed training dataset: `MixtureDataset` over ``datasets`` with ``processor`` applied.

    Indexed with the `SampleIndex` values the run's `MixtureSampler` yields, each sample's random
    draws (image augmentation) are keyed by its (sampler seed, epoch, position): identical after a
    resume and whatever the number of workers, and different when the sample is drawn again.
    """
    from gr00t.data.dataset import MixtureDataset

    return MixtureDataset(datasets, transform=processor, seed=seed)


def build_validation_dataset(
    mixture: Any, embodiments: Mapping[str, Any], heldout: HeldOut, processor: Any, seed: int
) -> Any | None:
    """The held-out samples through an eval-mode copy of the processor (None: nothing held out)."""
    import copy

    from gr00t.data.dataset import Gr00tDataset

    kept = [(e, eps) for e, eps in zip(mixture.entries, heldout.val) if eps]
    if not kept:
        return None
    datasets = [Gr00tDataset(e.path, embodiments[e.embodiment], episodes=eps) for e, eps in kept]
    return build_training_dataset(datasets, copy.copy(processor).eval(), seed)
