"""Qwen3-VL backbone: transformers' real Qwen3VLModel (tiny config), real tokenizer and input builder."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from transformers import Qwen3VLModel

from gr00t.data.tokenizer import build_tiny_tokenizer
from gr00t.model.backbones import build_backbone, build_input_builder
from gr00t.model.backbones.qwen3_vl import Qwen3VLBackbone, qwen3_vl_sub_config
from gr00t.model.backbones.qwen3_vl_processing import Qwen3VLInputs
from gr00t.model.presets import load_preset

MIN_PIXELS = 4 * 32 * 32  # keep the tiny test images small (the released default is 65536)


@pytest.fixture(scope="module")
def config():
    return load_preset("qwen3_vl_tiny")


@pytest.fixture(scope="module")
def backbone(config):
    torch.manual_seed(0)
    return build_backbone(config).eval()


@pytest.fixture(scope="module")
def builder(config):
    return build_input_builder(config, build_tiny_tokenizer(), min_pixels=MIN_PIXELS)


def _images(seed: int, n: int, hw=(96, 128)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*hw, 3), dtype=np.uint8) for _ in range(n)]


def test_outputs_shapes_and_masks(backbone, builder, config):
    assert isinstance(backbone, Qwen3VLBackbone)
    assert len(backbone.model.language_model.layers) == config.select_layer
    samples = [builder("Pick up the apple.", _images(0, 2)), builder("stack", _images(1, 1))]
    batch = builder.collate(samples)
    with torch.no_grad():
        out = backbone(batch)
    b, s = batch.input_ids.shape
    assert out.backbone_features.shape == (b, s, 64)
    assert torch.equal(out.backbone_attention_mask, batch.attention_mask == 1)
    assert torch.equal(out.image_mask, batch.input_ids == 1008)
    # 96x128 → factor-32 smart resize → 96x128 → patch grid 6x8 → (6/2)·(8/2) = 12 tokens per image.
    assert batch.image_grid_thw.tolist() == [[1, 6, 8]] * 3
    assert out.image_mask.sum(1).tolist() == [24, 12]
    assert int(batch.image_grid_thw.prod(-1).sum()) == batch.pixel_values.shape[0]
    assert torch.equal(batch.mm_token_type_ids.bool(), out.image_mask)
    assert torch.isfinite(out.backbone_features).all()


@torch.no_grad()
def test_truncation_equals_first_layers_of_full_model(backbone, config, builder):
    full_cfg = qwen3_vl_sub_config(config)
    full_cfg.text_config.num_hidden_layers = config.qwen3_vl_config["text_config"]["num_hidden_layers"]
    full = Qwen3VLModel(full_cfg).eval()
    missing, unexpected = full.load_state_dict(backbone.model.state_dict(), strict=False)
    assert unexpected == []
    assert missing and all(k.startswith(f"language_model.layers.{config.select_layer}.") for k in missing)

    batch = builder.collate([builder("open the drawer", _images(2, 1))])
    out = backbone(batch)
    ref = full(**vars(batch), use_cache=False, output_hidden_states=True)
    expected = full.language_model.norm(ref.hidden_states[config.select_layer])
    torch.testing.assert_close(out.backbone_features, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(out.backbone_features, ref.last_hidden_state, atol=1e-3)


@torch.no_grad()
def test_left_padding_keeps_real_token_features(backbone, builder):
    short = builder("put the cup in the sink", _images(3, 1))
    long = builder("put the red cup in the sink then close the cabinet door", _images(4, 2))
    alone = backbone(builder.collate([short]))
    both = backbone(builder.collate([short, long]))
    n = short.input_ids.shape[0]
    torch.testing.assert_close(
        both.backbone_features[0, -n:], alone.backbone_features[0], rtol=1e-4, atol=1e-5
    )


@torch.no_grad()
def test_no_cross_image_influence_in_vision_tower(backbone, builder):
    img1, img2 = _images(5, 2)
    other = _images(6, 1)[0]
    a = builder("look", [img1, img2])
    b = builder("look", [img1, other])
    feats_a = backbone.model.get_image_features(a.pixel_values, a.image_grid_thw).pooler_output
    feats_b = backbone.model.get_image_features(b.pixel_values, b.image_grid_thw).pooler_output
    torch.testing.assert_close(feats_a[0], feats_b[0], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(feats_a[1], feats_b[1])


def test_missing_inputs_are_reported(backbone, builder):
    batch = builder.collate([builder("go", _images(7, 1))])
    with pytest.raises(ValueError, match="mm_token_type_ids"):
        backbone(
            Qwen3VLInputs(
                input_ids=batch.input_ids,
                attention_mask=batch.attention_mask,
                pixel_values=batch.pixel_values,
                image_grid_thw=batch.image_grid_thw,
            )
        )
    with pytest.raises(ValueError, match="no pixel_values"):
        backbone(Qwen3VLInputs(input_ids=batch.input_ids, attention_mask=batch.attention_mask))


def test_partial_unfreezing(config):
    model = build_backbone(config)
    model.set_trainable(tune_llm=False, tune_visual=False, tune_projector=True, tune_top_llm_layers=1)
    top = f"model.language_model.layers.{config.select_layer - 1}."
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters() if n.startswith(top)}
    model.train()
    assert not model.model.visual.training and not model.model.language_model.training
    model.set_trainable(tune_llm=False, tune_visual=True, tune_projector=True, tune_top_llm_layers=0)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        n for n, _ in model.named_parameters() if n.startswith("model.visual.")
    }
    assert model.model.visual.training


def test_missing_or_inconsistent_qwen3_vl_config():
    cfg = load_preset("n16_tiny", backbone_type="qwen3_vl")
    with pytest.raises(ValueError, match="qwen3_vl_config"):
        build_backbone(cfg)
    good = load_preset("qwen3_vl_tiny").qwen3_vl_config
    bad = copy.deepcopy(good)
    bad["text_config"]["hidden_size"] = 32
    with pytest.raises(ValueError, match="backbone_embedding_dim"):
        build_backbone(load_preset("qwen3_vl_tiny", qwen3_vl_config=bad))


def test_cosmos_reason2_preset_builds_on_meta_device():
    cfg = load_preset("cosmos_reason2_2b")
    with torch.device("meta"):
        model = build_backbone(cfg)
    assert len(model.model.language_model.layers) == 16
    assert model.model.language_model.embed_tokens.weight.shape == (151936, 2048)
    assert len(model.model.visual.blocks) == 24
    assert model.image_token_id == 151655
