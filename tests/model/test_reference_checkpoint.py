"""Loading checkpoint folders written by NVIDIA's reference N1.6 code (config.json schema `Gr00tN1d6`).

The reference config names its backbone by hub id only, so it cannot express tiny backbone sizes:
conversion is checked on the released values (model built on the meta device), and loading real
weights is checked with a tiny reference-format folder plus `vision_config`/`text_config` overrides.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import Qwen3Config, Qwen3Model

from gr00t.model.config import Gr00tN16Config
from gr00t.model.gr00t_n16 import Gr00tN16Model
from gr00t.model.presets import load_preset, preset_dict
from gr00t.model.reference_checkpoint import (
    ReferenceCheckpointError,
    config_field_names,
    convert_reference_config,
    is_reference_checkpoint,
    load_model_config,
)

HEAD_KEYS = Path(__file__).resolve().parent / "data" / "n16_head_keys.json"


def reference_release_config() -> dict:
    """A config.json as the reference `Gr00tN1d6Config.save_pretrained` writes it, release values."""
    return {
        "architectures": ["Gr00tN1d6"],
        "model_type": "Gr00tN1d6",
        "transformers_version": "4.51.3",
        "torch_dtype": "bfloat16",
        "model_dtype": "bfloat16",
        "model_name": "nvidia/Eagle-Block2A-2B-v2",
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
        "eagle_collator": True,
        "backbone_trainable_params_fp32": True,
        "image_crop_size": None,
        "image_target_size": None,
        "shortest_image_edge": 256,
        "crop_fraction": 0.95,
        "random_rotation_angle": None,
        "color_jitter_params": {"brightness": 0.3, "contrast": 0.4, "saturation": 0.5, "hue": 0.08},
        "use_albumentations_transforms": True,
        "letter_box_transform": False,
        "extra_augmentation_config": None,
        "formalize_language": True,
        "apply_sincos_state_encoding": True,
        "use_relative_action": True,
        "max_state_dim": 128,
        "max_action_dim": 128,
        "action_horizon": 50,
        "hidden_size": 1024,
        "input_embedding_dim": 1536,
        "add_pos_embed": True,
        "attn_dropout": 0.2,
        "use_vlln": True,
        "max_seq_len": 1024,
        "use_alternate_vl_dit": True,
        "attend_text_every_n_blocks": 2,
        "diffusion_model_cfg": {
            "positional_embeddings": None,
            "num_layers": 32,
            "num_attention_heads": 32,
            "attention_head_dim": 48,
            "norm_type": "ada_norm",
            "dropout": 0.2,
            "final_dropout": True,
            "output_dim": 1024,
            "interleave_self_attention": True,
        },
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


def reference_tiny_config() -> dict:
    """Release schema with the n16_tiny numbers wherever the schema has a field for them."""
    cfg = reference_release_config()
    cfg.update(
        model_dtype="float32",
        backbone_embedding_dim=64,
        select_layer=2,
        tune_top_llm_layers=1,
        apply_sincos_state_encoding=False,
        use_relative_action=False,
        max_state_dim=32,
        max_action_dim=32,
        action_horizon=16,
        hidden_size=32,
        input_embedding_dim=64,
        max_seq_len=64,
    )
    cfg["diffusion_model_cfg"] = {
        **cfg["diffusion_model_cfg"],
        "num_layers": 4,
        "num_attention_heads": 4,
        "attention_head_dim": 16,
        "output_dim": 32,
    }
    return cfg


def tiny_backbone_overrides() -> dict:
    """What the reference schema cannot say: the tiny backbone's sizes and its tokenizer's ids."""
    tiny = preset_dict("n16_tiny")
    return {
        k: tiny[k]
        for k in ("vision_config", "text_config", "image_token_id", "img_start_token_id", "img_end_token_id")
    }


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


# ------------------------------------------------------------------------------------------------
# config conversion
# ------------------------------------------------------------------------------------------------


def test_release_config_converts_to_the_release_preset():
    conversion = convert_reference_config(reference_release_config())
    ours = conversion.config.to_dict()
    expected = load_preset("n16_release").to_dict()
    assert {k: (ours.get(k), v) for k, v in expected.items() if ours.get(k) != v} == {}
    cfg = conversion.config
    assert (cfg.dit_num_layers, cfg.dit_num_attention_heads, cfg.dit_attention_head_dim) == (32, 32, 48)
    assert (cfg.max_state_dim, cfg.max_action_dim, cfg.action_horizon) == (128, 128, 50)
    assert cfg.apply_sincos_state_encoding and cfg.use_relative_action
    assert cfg.vision_config["num_hidden_layers"] == 27 and cfg.text_config["hidden_size"] == 2048
    assert cfg.image_token_id == 151669
    # not model fields: handed back for the data pipeline / logs
    assert conversion.ignored["color_jitter_params"]["hue"] == 0.08
    assert conversion.ignored["shortest_image_edge"] == 256
    assert conversion.ignored["use_flash_attention"] is True
    assert "model_name" not in conversion.ignored


def test_release_model_built_from_converted_config_has_release_layout():
    cfg = convert_reference_config(reference_release_config()).config
    with torch.device("meta"):
        model = Gr00tN16Model(cfg)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    ref = json.loads(HEAD_KEYS.read_text())
    head = {k[len("action_head.") :]: s for k, s in shapes.items() if k.startswith("action_head.")}
    assert head == {k: tuple(s) for k, s in ref["state_dict"]}
    assert sum(torch.Size(s).numel() for s in head.values()) == ref["total_parameters"]
    assert shapes["backbone.model.language_model.model.embed_tokens.weight"] == (151680, 2048)
    assert shapes["backbone.model.mlp1.1.weight"] == (2048, 4608)


def test_missing_fields_take_reference_defaults():
    cfg = convert_reference_config({"model_type": "Gr00tN1d6"}).config
    assert cfg.to_dict() == load_preset("n16").to_dict()


def test_keys_missing_inside_diffusion_cfg_take_reference_dit_defaults():
    # The reference DiT defaults to sinusoidal positional embeddings, which this project lacks.
    data = reference_release_config()
    del data["diffusion_model_cfg"]["positional_embeddings"]
    with pytest.raises(
        ReferenceCheckpointError, match=r"diffusion_model_cfg\.positional_embeddings='sinusoidal'"
    ):
        convert_reference_config(data)
    data = reference_release_config()
    del data["diffusion_model_cfg"]["num_layers"]
    assert convert_reference_config(data).config.dit_num_layers == 12


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"reproject_vision": True}, "reproject_vision"),
        ({"backbone_model_type": "qwen"}, "backbone_model_type"),
        ({"model_name": "nvidia/Cosmos-Reason2-2B"}, "model_name"),
        (
            {"diffusion_model_cfg.positional_embeddings": "sinusoidal"},
            "diffusion_model_cfg.positional_embeddings",
        ),
        ({"diffusion_model_cfg.norm_eps": 1e-6}, "diffusion_model_cfg.norm_eps"),
        ({"diffusion_model_cfg.cross_attention_dim": 1024}, "diffusion_model_cfg.cross_attention_dim"),
        ({"diffusion_model_cfg.use_fancy_rope": True}, "diffusion_model_cfg.use_fancy_rope"),
        ({"state_history_length": 2}, "state_history_length"),
        ({"diffusion_model_cfg.norm_type": "layer_norm"}, "dit_norm_type"),
        ({"diffusion_model_cfg.attention_head_dim": 64}, "input_embedding_dim"),
        ({"model_dtype": "int8"}, "model_dtype"),
    ],
)
def test_unrepresentable_values_name_the_field(change, field):
    data = reference_release_config()
    for key, value in change.items():
        if key.startswith("diffusion_model_cfg."):
            data["diffusion_model_cfg"][key.split(".", 1)[1]] = value
        else:
            data[key] = value
    with pytest.raises(ReferenceCheckpointError) as err:
        convert_reference_config(data, source="ckpt/config.json")
    assert field in str(err.value) and "ckpt/config.json" in str(err.value)


def test_local_backbone_folder_of_the_release_name_is_accepted():
    data = {**reference_release_config(), "model_name": "/models/nvidia/Eagle-Block2A-2B-v2/"}
    assert convert_reference_config(data).config.backbone_type == "eagle"


def test_bool_fields_are_not_confused_with_numbers():
    data = {**reference_release_config(), "reproject_vision": 0}
    with pytest.raises(ReferenceCheckpointError, match="reproject_vision=0"):
        convert_reference_config(data)


def test_overrides_must_be_config_fields():
    with pytest.raises(ReferenceCheckpointError, match="not_a_field"):
        convert_reference_config(reference_release_config(), overrides={"not_a_field": 1})


def test_detection_and_load_model_config(tmp_path):
    ref_dir, own_dir, other_dir = tmp_path / "ref", tmp_path / "own", tmp_path / "other"
    write_json(ref_dir / "config.json", reference_release_config())
    load_preset("n16_tiny").save_pretrained(own_dir)
    write_json(other_dir / "config.json", {"model_type": "Gr00tN1d7", "architectures": ["Gr00tN1d7"]})
    assert is_reference_checkpoint(ref_dir)
    assert not is_reference_checkpoint(own_dir) and not is_reference_checkpoint(tmp_path)
    assert load_model_config(ref_dir, tune_visual=True).tune_visual is True
    assert load_model_config(ref_dir).action_horizon == 50
    assert load_model_config(own_dir).to_dict() == load_preset("n16_tiny").to_dict()
    with pytest.raises(ReferenceCheckpointError, match="model_type='Gr00tN1d7'"):
        load_model_config(other_dir)


# ------------------------------------------------------------------------------------------------
# loading weights through Gr00tN16Model.from_pretrained
# ------------------------------------------------------------------------------------------------


def _write_reference_checkpoint(folder: Path) -> dict[str, torch.Tensor]:
    """A tiny folder in the reference format: config.json, two safetensors shards + index, the
    released extras (LM head, upper LLM layer), and the reference's processor files."""
    cfg = load_preset("n16_tiny")
    torch.manual_seed(0)
    model = Gr00tN16Model(cfg)
    gen = torch.Generator().manual_seed(3)
    tensors: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        noisy = torch.randn(value.shape, generator=gen) * 0.37 + 0.11  # no initialiser makes these
        # the backbone is stored in bf16 and the head in fp32, as a mixed-precision save would be
        tensors[key] = noisy.to(torch.bfloat16 if key.startswith("backbone.") else torch.float32)
    text = Qwen3Config(**cfg.text_config)
    extras = {
        f"backbone.model.language_model.model.{k}": v.to(torch.bfloat16)
        for k, v in Qwen3Model(text).state_dict().items()
        if k.startswith(f"layers.{cfg.select_layer}.")
    }
    extras["backbone.model.language_model.lm_head.weight"] = torch.randn(text.vocab_size, text.hidden_size)
    assert extras
    everything = {**tensors, **extras}
    names = sorted(everything)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    folder.mkdir(parents=True)
    weight_map = {}
    for file, keys in shards.items():
        save_file(
            {k: everything[k].contiguous() for k in keys}, str(folder / file), metadata={"format": "pt"}
        )
        weight_map.update({k: file for k in keys})
    write_json(
        folder / "model.safetensors.index.json", {"metadata": {"total_size": 0}, "weight_map": weight_map}
    )
    write_json(folder / "config.json", reference_tiny_config())
    write_json(
        folder / "processor_config.json", {"processor_class": "Gr00tN1d6Processor", "processor_kwargs": {}}
    )
    write_json(folder / "statistics.json", {})
    write_json(folder / "embodiment_id.json", {"new_embodiment": 10})
    return tensors


def test_from_pretrained_of_reference_folder_is_exact(tmp_path):
    folder = tmp_path / "GR00T-N1.6-tiny"
    tensors = _write_reference_checkpoint(folder)
    loaded, info = Gr00tN16Model.from_pretrained(
        folder, output_loading_info=True, **tiny_backbone_overrides()
    )
    assert not info["missing_keys"], sorted(info["missing_keys"])[:10]
    assert not info["mismatched_keys"]
    state = loaded.state_dict()
    assert set(state) == set(tensors)
    # the precision policy of the converted config (model_dtype float32): bf16-stored tensors widen
    # losslessly, so every value is still exactly the stored one
    assert loaded.config.model_dtype == "float32"
    wrong_dtype = [k for k, v in state.items() if v.is_floating_point() and v.dtype != torch.float32]
    assert not wrong_dtype, wrong_dtype[:10]
    differing = [k for k, v in state.items() if not torch.equal(v, tensors[k].to(v.dtype))]
    assert not differing, differing[:10]
    # the converted config is the tiny preset's, field by field
    expected = load_preset("n16_tiny")
    assert {f: getattr(loaded.config, f) for f in config_field_names()} == {
        f: getattr(expected, f) for f in config_field_names()
    }
    assert isinstance(loaded.config, Gr00tN16Config)
    assert (loaded.config.dit_num_layers, loaded.config.dit_output_dim, loaded.config.select_layer) == (
        4,
        32,
        2,
    )
    # unfreezing flags of the reference config are applied
    assert not loaded.backbone.model.vision_model.vision_model.embeddings.patch_embedding.weight.requires_grad
    assert loaded.action_head.model.transformer_blocks[0].attn1.to_q.weight.requires_grad


def test_from_pretrained_overrides_reach_the_converted_config(tmp_path):
    folder = tmp_path / "ref"
    _write_reference_checkpoint(folder)
    loaded = Gr00tN16Model.from_pretrained(folder, tune_visual=True, **tiny_backbone_overrides())
    assert loaded.config.tune_visual is True
    assert loaded.backbone.model.mlp1[1].weight.requires_grad


def test_from_pretrained_without_backbone_overrides_names_the_mismatch(tmp_path):
    folder = tmp_path / "ref"
    _write_reference_checkpoint(folder)
    # tiny backbone_embedding_dim against the released Eagle text width: not a valid config
    with pytest.raises(ReferenceCheckpointError, match="backbone_embedding_dim"):
        Gr00tN16Model.from_pretrained(folder)


def test_from_pretrained_rejects_unknown_model_type(tmp_path):
    folder = tmp_path / "other"
    write_json(folder / "config.json", {"model_type": "gr00t_n1_5"})
    with pytest.raises(ReferenceCheckpointError, match=r"model_type='gr00t_n1_5'.*gr00t_n1_6.*Gr00tN1d6"):
        Gr00tN16Model.from_pretrained(folder)


def test_from_pretrained_rejects_unrepresentable_reference_field(tmp_path):
    folder = tmp_path / "ref"
    _write_reference_checkpoint(folder)
    data = reference_tiny_config()
    data["diffusion_model_cfg"]["upcast_attention"] = True
    write_json(folder / "config.json", data)
    with pytest.raises(ReferenceCheckpointError, match=r"diffusion_model_cfg\.upcast_attention=True"):
        Gr00tN16Model.from_pretrained(folder, **tiny_backbone_overrides())
