"""NVIDIA's reference N1.6 config schema as data: defaults, and how each field maps onto ours.

Read by `gr00t.model.reference_checkpoint`, which explains each table's role.
"""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

REFERENCE_MODEL_TYPE = "Gr00tN1d6"
REFERENCE_BACKBONE = "nvidia/Eagle-Block2A-2B-v2"
CONFIG_FILE = "config.json"

# Defaults of the reference config class (used for keys missing from a config.json).
REFERENCE_DIFFUSION_DEFAULTS: dict[str, Any] = {
    "positional_embeddings": None,
    "num_layers": 32,
    "num_attention_heads": 32,
    "attention_head_dim": 48,
    "norm_type": "ada_norm",
    "dropout": 0.2,
    "final_dropout": True,
    "output_dim": 1024,
    "interleave_self_attention": True,
}
# Defaults of the reference DiT constructor: what a key missing *inside* diffusion_model_cfg means.
REFERENCE_DIT_CONSTRUCTOR_DEFAULTS: dict[str, Any] = {
    "num_attention_heads": 8,
    "attention_head_dim": 64,
    "output_dim": 26,
    "num_layers": 12,
    "dropout": 0.1,
    "attention_bias": True,
    "activation_fn": "gelu-approximate",
    "upcast_attention": False,
    "norm_type": "ada_norm",
    "norm_elementwise_affine": False,
    "norm_eps": 1e-5,
    "final_dropout": True,
    "positional_embeddings": "sinusoidal",
    "interleave_self_attention": False,
}
REFERENCE_DEFAULTS: dict[str, Any] = {
    "model_dtype": "bfloat16",
    "model_name": REFERENCE_BACKBONE,
    "backbone_model_type": "eagle",
    "model_revision": None,
    "tune_top_llm_layers": 4,
    "backbone_embedding_dim": 2048,
    "tune_llm": False,
    "tune_visual": False,
    "select_layer": 16,
    "reproject_vision": False,
    "use_flash_attention": True,
    "load_bf16": True,
    "collator_overwrite_image_inputs": False,
    "eagle_collator": False,
    "backbone_trainable_params_fp32": True,
    "image_crop_size": None,
    "image_target_size": None,
    "shortest_image_edge": 256,
    "crop_fraction": 0.95,
    "random_rotation_angle": None,
    "color_jitter_params": None,
    "use_albumentations_transforms": True,
    "letter_box_transform": False,
    "extra_augmentation_config": None,
    "formalize_language": True,
    "apply_sincos_state_encoding": False,
    "use_relative_action": False,
    "max_state_dim": 29,
    "max_action_dim": 29,
    "action_horizon": 16,
    "hidden_size": 1024,
    "input_embedding_dim": 1536,
    "add_pos_embed": True,
    "attn_dropout": 0.2,
    "use_vlln": True,
    "max_seq_len": 1024,
    "use_alternate_vl_dit": True,
    "attend_text_every_n_blocks": 2,
    "diffusion_model_cfg": REFERENCE_DIFFUSION_DEFAULTS,
    "num_inference_timesteps": 4,
    "noise_beta_alpha": 1.5,
    "noise_beta_beta": 1.0,
    "noise_s": 0.999,
    "num_timestep_buckets": 1000,
    "tune_projector": True,
    "tune_diffusion_model": True,
    "tune_vlln": True,
    "state_dropout_prob": 0.0,
    "state_additive_noise_scale": 0.0,
    "max_num_embodiments": 32,
}

REFERENCE_COPIED_FIELDS: tuple[str, ...] = (
    "model_dtype",
    "tune_top_llm_layers",
    "backbone_embedding_dim",
    "tune_llm",
    "tune_visual",
    "select_layer",
    "backbone_trainable_params_fp32",
    "apply_sincos_state_encoding",
    "use_relative_action",
    "max_state_dim",
    "max_action_dim",
    "action_horizon",
    "hidden_size",
    "input_embedding_dim",
    "add_pos_embed",
    "use_vlln",
    "max_seq_len",
    "use_alternate_vl_dit",
    "attend_text_every_n_blocks",
    "num_inference_timesteps",
    "noise_beta_alpha",
    "noise_beta_beta",
    "noise_s",
    "num_timestep_buckets",
    "tune_projector",
    "tune_diffusion_model",
    "tune_vlln",
    "state_dropout_prob",
    "state_additive_noise_scale",
    "max_num_embodiments",
)
DIFFUSION_FIELD_MAP: dict[str, str] = {
    "num_layers": "dit_num_layers",
    "num_attention_heads": "dit_num_attention_heads",
    "attention_head_dim": "dit_attention_head_dim",
    "output_dim": "dit_output_dim",
    "dropout": "dit_dropout",
    "final_dropout": "dit_final_dropout",
    "norm_type": "dit_norm_type",
    "interleave_self_attention": "interleave_self_attention",
}
# Reference switches for behaviour this project implements one way only: the value it must have.
REFERENCE_REQUIRED_VALUES: dict[str, Any] = {
    "backbone_model_type": "eagle",
    "reproject_vision": False,
    "diffusion_model_cfg.positional_embeddings": None,
    "diffusion_model_cfg.attention_bias": True,
    "diffusion_model_cfg.activation_fn": "gelu-approximate",
    "diffusion_model_cfg.upcast_attention": False,
    "diffusion_model_cfg.norm_elementwise_affine": False,
    "diffusion_model_cfg.norm_eps": 1e-5,
}
# Not model architecture: runtime switches, data-pipeline / image-augmentation settings, and values
# the reference stores but never reads (attn_dropout; DiT keys only used with positional embeddings).
REFERENCE_IGNORED_FIELDS: tuple[str, ...] = (
    "model_revision",
    "use_flash_attention",
    "load_bf16",
    "collator_overwrite_image_inputs",
    "eagle_collator",
    "image_crop_size",
    "image_target_size",
    "shortest_image_edge",
    "crop_fraction",
    "random_rotation_angle",
    "color_jitter_params",
    "use_albumentations_transforms",
    "letter_box_transform",
    "extra_augmentation_config",
    "formalize_language",
    "attn_dropout",
    "diffusion_model_cfg.num_embeds_ada_norm",
    "diffusion_model_cfg.max_num_positional_embeddings",
    "diffusion_model_cfg.compute_dtype",
)
# Keys every transformers config may carry (plus older spellings); they say nothing about the model.
GENERIC_CONFIG_KEYS = frozenset(PretrainedConfig().to_dict()) | {
    "model_type",
    "architectures",
    "transformers_version",
    "torch_dtype",
    "dtype",
    "_name_or_path",
    "auto_map",
    "_attn_implementation_autoset",
    "_commit_hash",
}
