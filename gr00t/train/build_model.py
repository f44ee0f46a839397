"""The model side of building a run: the model (preset or `base=` checkpoint), its tokenizer and processor.

* `build_model`: from the `model` preset's fields, or `from_pretrained(base)` (a checkpoint folder,
  a run folder or a Hugging Face model id) where only the `model.*` keys the recipe files or the
  command line set change the checkpoint's config, each change logged; weights a change adds
  (e.g. the state-dropout mask token) start fresh, any other missing weight is an error;
* `build_processor`: the training-mode processor; with a released (NVIDIA) `base=` checkpoint,
  its statistics normalise the embodiments it was trained on (`base_statistics`, as the
  reference processor does), read by `gr00t.data.reference_metadata`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from gr00t.train.build_data import BuildError

# a child of the build's logger: `gr00t.train.build` log settings cover it
logger = logging.getLogger("gr00t.train.build.model")

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


def resolve_base_checkpoint(base: str | Path) -> Path:
    """A checkpoint folder from `base=`: the folder itself, the newest complete one of a run folder,
    or the snapshot of a Hugging Face model id (`org/name[@revision]`)."""
    from gr00t.hub import HubError, looks_like_hub_id, resolve
    from gr00t.train.run_dir import RunDir

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
        latest = RunDir(path).latest_checkpoint()
        if latest is not None:
            return latest.path
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
    added = added_parameters(base_config, overrides)
    if added:
        logger.info("base checkpoint %s: the overrides add %s (freshly initialised)", checkpoint.name, added)
    model = Gr00tN16Model.from_pretrained(str(checkpoint), allow_missing=added, **overrides)
    source = {"source": f"checkpoint {checkpoint}", "base": str(checkpoint), "preset": preset}
    return model, {**source, "overrides": {k: {"checkpoint": o, "run": n} for k, (o, n) in changes.items()}}


def added_parameters(base_config: Any, overrides: Mapping[str, Any]) -> list[str]:
    """Weights the config ``overrides`` add to a checkpoint's model (e.g. ``state_dropout_prob > 0``
    adds the mask token); built on the meta device, so nothing is allocated."""
    import torch

    from gr00t.model.gr00t_n16 import Gr00tN16Model

    if not overrides:
        return []
    changed = type(base_config).from_dict({**base_config.to_dict(), **overrides})
    with torch.device("meta"):
        before = set(Gr00tN16Model(base_config).state_dict())
        after = set(Gr00tN16Model(changed).state_dict())
    return sorted(after - before)


def random_weights_warning(cfg: DictConfig) -> str | None:
    """The warning for a full-size model without `base=` (its weights start random), or None."""
    if cfg.get("base") or int(cfg.model.backbone_embedding_dim) < 1024:
        return None
    return (
        f"model={cfg.model.name} without base=: the full-size model (billions of parameters) starts from "
        "RANDOM weights. That is right for pretraining from scratch; to finetune the released model pass "
        "base=<checkpoint folder or Hugging Face id, e.g. nvidia/GR00T-N1.6-3B>."
    )


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


def base_statistics(
    cfg: DictConfig, embodiments: Mapping[str, Any], stats: dict[str, tuple[Any, Any]], relative: bool
) -> dict[str, tuple[Any, Any]]:
    """``stats`` with a released (NVIDIA) base checkpoint's statistics for the embodiments it was
    trained on (``base_statistics=true``, the reference processor's rule: a checkpoint's statistics
    are not overridden by a dataset's). Others keep the dataset's; each replacement is logged.
    ``relative``: the model's ``use_relative_action``."""
    if not cfg.get("base") or not cfg.get("base_statistics", True):
        return stats
    from gr00t.data.reference_metadata import ReferenceMetadataError, reference_stats_for
    from gr00t.model.reference_checkpoint import is_reference_checkpoint

    checkpoint = resolve_base_checkpoint(str(cfg.base))
    if not is_reference_checkpoint(checkpoint) or not (checkpoint / "statistics.json").is_file():
        return stats
    out = dict(stats)
    for emb in {e.tag: e for e in embodiments.values()}.values():
        try:
            released = reference_stats_for(checkpoint, emb, use_relative_action=relative)
        except ReferenceMetadataError as exc:
            raise BuildError(
                f"{exc} (set base_statistics=false to normalise with the dataset's statistics)"
            ) from exc
        if released is not None and emb.tag in out:
            out[emb.tag] = released
            logger.info(
                "embodiment %s: statistics of the released checkpoint %s (base_statistics=true)",
                emb.tag,
                checkpoint,
            )
    return out
