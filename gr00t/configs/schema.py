"""Hydra structured configs: the schema (types, choices, defaults) of every recipe key.

`RecipeConfig` is the shared base of all recipes (`recipes/*.yaml` start with
``defaults: [recipe_base, ...]``). Its nodes are typed by the dataclasses below (and by
`gr00t.train.settings.TrainerConfig` for ``trainer``), so Hydra rejects an unknown key or a value
of the wrong type or outside an enum's choices while composing, before anything runs.
The ``embodiment`` node is the robot's YAML file, validated by `gr00t.data.embodiment`.

Adding a config group: a dataclass here, a field on `RecipeConfig`, an entry in its defaults list,
and a folder of YAML files under `gr00t/configs/`. The ``memory`` group is the exception that
needs no node of its own: its files (``# @package trainer``) set `TrainerConfig` keys (memory
profile name, optimiser, activation checkpointing, DeepSpeed config), composed after the
``trainer`` group so a profile applies to any trainer.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from gr00t.train.settings import PREEMPTION_SIGNALS, TrainerConfig


class BackboneType(str, enum.Enum):
    eagle = "eagle"
    qwen3_vl = "qwen3_vl"


class ModelDtype(str, enum.Enum):
    bfloat16 = "bfloat16"
    float16 = "float16"
    float32 = "float32"


class AttnImplementation(str, enum.Enum):
    auto = "auto"
    sdpa = "sdpa"
    eager = "eager"
    flash_attention_2 = "flash_attention_2"


class DitNormType(str, enum.Enum):
    ada_norm = "ada_norm"


class ResizeBackend(str, enum.Enum):
    torch = "torch"
    pil = "pil"


class PixelTransport(str, enum.Enum):
    uint8 = "uint8"
    float32 = "float32"


@dataclass
class ModelConfig:
    """``model``: the fields of `gr00t.model.config.Gr00tN16Config` with its defaults (SPEC §1.1),
    plus the preset's ``name``. tests/cli/test_schema.py keeps the two in step."""

    name: str = MISSING
    # backbone
    backbone_type: BackboneType = BackboneType.eagle
    backbone_embedding_dim: int = 2048
    select_layer: int = 16
    vision_config: dict[str, Any] | None = None  # None: the released Eagle SigLIP2 shape
    text_config: dict[str, Any] | None = None  # None: the released Qwen3 shape
    qwen3_vl_config: dict[str, Any] | None = None
    mlp1_layer_norm_eps: float = 1e-5
    downsample_factor: int = 2
    image_token_id: int = 151669
    img_start_token_id: int = 151670
    img_end_token_id: int = 151671
    backbone_attn_implementation: AttnImplementation = AttnImplementation.auto
    # partial unfreezing (SPEC §1.5)
    tune_llm: bool = False
    tune_visual: bool = False
    tune_top_llm_layers: int = 4
    tune_projector: bool = True
    tune_diffusion_model: bool = True
    tune_vlln: bool = True
    backbone_trainable_params_fp32: bool = True
    model_dtype: ModelDtype = ModelDtype.bfloat16
    # action head
    hidden_size: int = 1024
    input_embedding_dim: int = 1536
    max_seq_len: int = 1024
    max_num_embodiments: int = 32
    max_state_dim: int = 29
    max_action_dim: int = 29
    action_horizon: int = 16
    state_horizon: int = 1
    # DiT trunk
    use_alternate_vl_dit: bool = True
    dit_num_layers: int = 32
    dit_num_attention_heads: int = 32
    dit_attention_head_dim: int = 48
    dit_output_dim: int = 1024
    dit_dropout: float = 0.2
    dit_final_dropout: bool = True
    dit_norm_type: DitNormType = DitNormType.ada_norm
    interleave_self_attention: bool = True
    attend_text_every_n_blocks: int = 2
    timestep_embedding_channels: int = 256
    use_vlln: bool = True
    add_pos_embed: bool = True
    # flow matching
    num_inference_timesteps: int = 4
    noise_beta_alpha: float = 1.5
    noise_beta_beta: float = 1.0
    noise_s: float = 0.999
    num_timestep_buckets: int = 1000
    state_dropout_prob: float = 0.0
    state_additive_noise_scale: float = 0.0
    use_relative_action: bool = False
    apply_sincos_state_encoding: bool = False
    # training-time real-time chunking: each sample's first d ~ U{0..k} actions are given as executed
    # (clean, t = 1) and left out of the loss; 0 = off (gr00t.model.rtc)
    rtc_training_max_delay: int = 0


@dataclass
class ImageConfig:
    """``image``: GR00T image transforms (SPEC §2.4), `gr00t.data.image_transforms.ImageTransformConfig`."""

    size: int = 256
    crop_fraction: float = 0.95
    rotation_degrees: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0


@dataclass
class VlmConfig:
    """``vlm``: backbone image-input overrides (None: the backbone's defaults)."""

    min_pixels: int | None = None
    max_pixels: int | None = None
    # torch (default; within 2 grey levels of PIL) | pil (bit-exact reference Eagle resize)
    resize_backend: ResizeBackend | None = None
    # uint8: DataLoader workers ship raw patches (4x fewer bytes), the trainer normalises them on the
    # device, bit for bit the float32 values (gr00t.train.loader.finish_pixel_values) | float32
    pixel_transport: PixelTransport = PixelTransport.uint8


@dataclass
class CotrainConfig:
    """``cotrain``: mix a named mixture into the data with this share of the draws."""

    mixture: str | None = None
    ratio: float = 0.0


@dataclass
class LauncherConfig:
    """``launcher``: how the processes were started (see `gr00t/configs/launcher/*.yaml`)."""

    name: str = "local"
    preemption_signals: list[str] = field(default_factory=lambda: list(PREEMPTION_SIGNALS))
    requeue_exit_code: int = 75


def _recipe_defaults() -> list[Any]:
    # `_self_` first: the schema supplies defaults, the groups and the recipe file override them.
    return [
        "_self_",
        {"model": "n16"},
        {"embodiment": "new_embodiment"},
        {"trainer": "finetune"},
        {"memory": "default"},
        {"launcher": "local"},
    ]


@dataclass
class RecipeConfig:
    """The keys of every recipe, with the finetune defaults (SPEC-N16 §3)."""

    defaults: list[Any] = field(default_factory=_recipe_defaults)
    recipe: str = MISSING
    # Dataset directory (LeRobot v2.x/v3.0 + meta/modality.json), a Hugging Face dataset id
    # (org/name[@revision]), a mixture name, a mixture .yaml path, or `demo`.
    data: str = MISSING
    data_root: str | None = None  # base directory of a mixture's relative dataset paths
    demo_dir: str = "demo_data"  # where `data=demo` writes / finds the demo dataset
    # Checkpoint folder, run folder (its newest complete checkpoint) or Hugging Face model id
    # (org/name[@revision]) to start from. None: the `model` preset's random initialisation.
    base: str | None = None
    tokenizer: str = "auto"  # auto: the base checkpoint's, or the tiny one for tiny models
    cotrain: CotrainConfig = field(default_factory=CotrainConfig)
    # None: runs/<recipe>/<trainer.run_name or embodiment-dataset name>, so re-running resumes.
    run_dir: str | None = None
    resume: bool = True  # false: start over (earlier checkpoints are moved aside, never deleted)
    # Dataset statistics that do not fit the embodiment (widths, horizon) are an error naming file, key
    # and shapes; true recomputes and replaces them (absent statistics are always computed).
    recompute_stats: bool = False
    # Episodes held out of training for the validation loss (trainer.eval_steps) and gr00t-eval's
    # default: a count (2), a fraction (0.1) or a list of episode indices ([3,7]); null: none.
    val_episodes: Any | None = None
    # A released (NVIDIA) base checkpoint's statistics normalise the embodiments it was trained on,
    # as the reference processor does; false: the dataset's statistics.
    base_statistics: bool = True
    seed: int = 42
    image: ImageConfig = field(default_factory=ImageConfig)
    vlm: VlmConfig = field(default_factory=VlmConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    embodiment: Any | None = None  # the robot's YAML (validated by gr00t.data.embodiment)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    launcher: LauncherConfig = field(default_factory=LauncherConfig)


@dataclass
class PresetConfig:
    """Primary config that composes one model preset alone (`gr00t.model.presets.load_preset`)."""

    defaults: list[Any] = field(default_factory=lambda: ["_self_", {"model": MISSING}])
    model: ModelConfig = field(default_factory=ModelConfig)
