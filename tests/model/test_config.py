"""Model config defaults, presets and validation."""

import pytest

from gr00t.model.config import Gr00tN16Config
from gr00t.model.presets import available_presets, load_preset


def test_defaults_match_reference_code_defaults():
    c = Gr00tN16Config()
    assert (c.backbone_embedding_dim, c.select_layer, c.tune_top_llm_layers) == (2048, 16, 4)
    assert (c.tune_llm, c.tune_visual) == (False, False)
    assert (c.tune_projector, c.tune_diffusion_model, c.tune_vlln) == (True, True, True)
    assert (c.hidden_size, c.input_embedding_dim, c.max_seq_len) == (1024, 1536, 1024)
    assert (c.max_state_dim, c.max_action_dim, c.action_horizon) == (29, 29, 16)
    assert (c.dit_num_layers, c.dit_num_attention_heads, c.dit_attention_head_dim) == (32, 32, 48)
    assert (c.dit_output_dim, c.dit_dropout, c.attend_text_every_n_blocks) == (1024, 0.2, 2)
    assert (c.noise_beta_alpha, c.noise_beta_beta, c.noise_s) == (1.5, 1.0, 0.999)
    assert (c.num_inference_timesteps, c.num_timestep_buckets, c.max_num_embodiments) == (4, 1000, 32)
    assert (c.use_relative_action, c.apply_sincos_state_encoding) == (False, False)
    assert c.backbone_trainable_params_fp32 and c.model_dtype == "bfloat16"
    assert c.dit_inner_dim == 1536


def test_presets_exist_and_resolve():
    assert {"n16", "n16_release", "n16_tiny"} <= set(available_presets())
    n16 = load_preset("n16")
    assert n16.to_dict() == {
        **Gr00tN16Config().to_dict(),
        "transformers_version": n16.to_dict()["transformers_version"],
    }
    rel = load_preset("n16_release")
    assert (rel.action_horizon, rel.max_state_dim, rel.max_action_dim) == (50, 128, 128)
    assert rel.apply_sincos_state_encoding and rel.use_relative_action
    tiny = load_preset("n16_tiny")
    assert tiny.dit_inner_dim == tiny.input_embedding_dim
    assert tiny.text_config["hidden_size"] == tiny.backbone_embedding_dim
    # Same structure as n16: the switches that shape the network are inherited unchanged.
    for key in (
        "use_alternate_vl_dit",
        "attend_text_every_n_blocks",
        "use_vlln",
        "add_pos_embed",
        "num_inference_timesteps",
        "num_timestep_buckets",
        "backbone_type",
    ):
        assert getattr(tiny, key) == getattr(n16, key), key


def test_preset_overrides_and_round_trip(tmp_path):
    c = load_preset("n16_tiny", action_horizon=8, state_dropout_prob=0.5)
    assert c.action_horizon == 8 and c.state_dropout_prob == 0.5
    c.save_pretrained(tmp_path)
    again = Gr00tN16Config.from_pretrained(tmp_path)
    assert again.to_dict() == c.to_dict()


def test_unknown_preset_and_field_errors_are_helpful():
    with pytest.raises(FileNotFoundError, match=r"n16_tiny"):
        load_preset("n16_tinny")
    with pytest.raises(ValueError, match=r"action_horizon"):
        load_preset("n16_tiny", action_horizn=3)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"dit_num_attention_heads": 8}, "input_embedding_dim"),
        ({"backbone_type": "clip"}, "backbone_type"),
        ({"state_dropout_prob": 1.5}, "state_dropout_prob"),
        ({"tune_top_llm_layers": 17}, "tune_top_llm_layers"),
        ({"action_horizon": 2000}, "max_seq_len"),
        ({"model_dtype": "int8"}, "model_dtype"),
    ],
)
def test_invalid_configs_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        Gr00tN16Config(**kwargs)
