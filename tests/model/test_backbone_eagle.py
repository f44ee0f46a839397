"""Eagle backbone: real Siglip2 + Qwen3 (tiny configs) fed by the real tiny tokenizer and input builder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import Qwen3Config, Qwen3Model

from gr00t.data.tokenizer import build_tiny_tokenizer
from gr00t.model.backbones import BackboneOutput, build_backbone, build_input_builder, ignored_checkpoint_keys
from gr00t.model.backbones.base import resolve_attn_implementation
from gr00t.model.backbones.eagle import EagleBackbone, pixel_unshuffle_tokens
from gr00t.model.backbones.eagle_processing import EagleInputs
from gr00t.model.presets import load_preset


@pytest.fixture(scope="module")
def config():
    return load_preset("n16_tiny")


@pytest.fixture(scope="module")
def backbone(config):
    torch.manual_seed(0)
    model = build_backbone(config)
    model.eval()
    return model


@pytest.fixture(scope="module")
def builder(config):
    return build_input_builder(config, build_tiny_tokenizer())


def _images(seed: int, n: int, hw=(96, 128)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*hw, 3), dtype=np.uint8) for _ in range(n)]


def test_build_dispatches_on_backbone_type(backbone, config):
    assert isinstance(backbone, EagleBackbone)
    names = {n for n, _ in backbone.named_parameters()}
    assert "model.vision_model.vision_model.embeddings.patch_embedding.weight" in names
    assert {"model.mlp1.0.weight", "model.mlp1.1.weight", "model.mlp1.3.weight"} <= names
    assert "model.language_model.model.embed_tokens.weight" in names
    assert not any(".head." in n for n in names)  # vision pooling head is not built
    assert len(backbone.model.language_model.model.layers) == config.select_layer
    assert isinstance(backbone.model.mlp1[2], torch.nn.GELU) and backbone.model.mlp1[2].approximate == "none"
    assert backbone.model.mlp1[0].eps == pytest.approx(config.mlp1_layer_norm_eps)


def test_outputs_shapes_and_masks(backbone, builder):
    # 96x128 camera → smart resize to 84x140 (multiples of 28) → (84/28)·(140/28) = 3·5 = 15 tokens.
    samples = [builder("Pick up the apple.", _images(0, 2)), builder("stack", _images(1, 1))]
    batch = builder.collate(samples)
    out = backbone(batch)
    assert isinstance(out, BackboneOutput)
    b, s = batch.input_ids.shape
    assert out.backbone_features.shape == (b, s, 64)
    assert out.backbone_attention_mask.dtype == torch.bool and out.image_mask.dtype == torch.bool
    assert torch.equal(out.backbone_attention_mask, batch.attention_mask == 1)
    assert torch.equal(out.image_mask, batch.input_ids == 1000)
    assert out.image_mask.sum(1).tolist() == [30, 15]
    assert batch.spatial_shapes.tolist() == [[6, 10]] * 3
    assert torch.isfinite(out.backbone_features).all()


def test_pixel_unshuffle_is_channel_major_raster_order():
    # A 2x4 patch grid with 2 channels; feature value = 100·row + 10·col + channel.
    h, w, c = 2, 4, 2
    feats = torch.tensor([[100.0 * r + 10 * q + ch for ch in range(c)] for r in range(h) for q in range(w)])
    out = pixel_unshuffle_tokens(feats, h, w, 2)
    # index = ch·4 + row_offset·2 + col_offset; token 0 covers cols 0-1, token 1 covers cols 2-3.
    expected = torch.tensor(
        [
            [0.0, 10.0, 100.0, 110.0, 1.0, 11.0, 101.0, 111.0],
            [20.0, 30.0, 120.0, 130.0, 21.0, 31.0, 121.0, 131.0],
        ]
    )
    assert torch.equal(out, expected)
    with pytest.raises(ValueError, match="not divisible"):
        pixel_unshuffle_tokens(torch.zeros(6, 2), 2, 3, 2)


@torch.no_grad()
def test_no_cross_image_attention(backbone, builder):
    img1, img2 = _images(2, 2)
    other = _images(3, 1, hw=(140, 84))[0]  # different size → padding in the ViT batch
    a = builder("look", [img1, img2])
    b = builder("look", [img1, other])
    tok_a = backbone.encode_images(a.pixel_values, a.pixel_attention_mask, a.spatial_shapes)
    tok_b = backbone.encode_images(b.pixel_values, b.pixel_attention_mask, b.spatial_shapes)
    alone = builder("look", [img1])
    tok_alone = backbone.encode_images(alone.pixel_values, alone.pixel_attention_mask, alone.spatial_shapes)
    n1 = 15
    torch.testing.assert_close(tok_a[:n1], tok_b[:n1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(tok_a[:n1], tok_alone, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(tok_a[n1:], tok_b[n1:])


@torch.no_grad()
def test_truncation_equals_first_layers_of_full_qwen3(backbone, config, builder):
    full_cfg = Qwen3Config(**config.text_config)
    full_cfg._attn_implementation = "sdpa"
    assert full_cfg.num_hidden_layers > config.select_layer
    full = Qwen3Model(full_cfg).eval()
    missing, unexpected = full.load_state_dict(backbone.model.language_model.model.state_dict(), strict=False)
    assert unexpected == []
    assert all(k.startswith(f"layers.{config.select_layer}.") for k in missing)

    batch = builder.collate([builder("open the drawer", [])])
    out = backbone(batch)
    ref = full(input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=True)
    expected = full.norm(ref.hidden_states[config.select_layer])
    torch.testing.assert_close(out.backbone_features, expected, rtol=1e-5, atol=1e-5)
    # and it is not simply the full model's output
    assert not torch.allclose(out.backbone_features, ref.last_hidden_state, atol=1e-3)


@torch.no_grad()
def test_left_padding_keeps_real_token_features(backbone, builder):
    short = builder("put the cup in the sink", _images(4, 1))
    long = builder("put the red cup in the sink and then close the cabinet door please", _images(5, 2))
    alone = backbone(builder.collate([short]))
    both_batch = builder.collate([short, long])
    both = backbone(both_batch)
    n = short.input_ids.shape[0]
    assert both_batch.attention_mask[0, :-n].sum() == 0  # left padded
    torch.testing.assert_close(
        both.backbone_features[0, -n:], alone.backbone_features[0], rtol=1e-4, atol=1e-5
    )
    assert not both.backbone_attention_mask[0, :-n].any()


def test_placeholder_count_mismatch_is_reported(backbone, builder):
    s = builder.collate([builder("go", _images(6, 2))])
    with pytest.raises(ValueError, match="image placeholder tokens"):
        backbone(
            EagleInputs(
                input_ids=s.input_ids,
                attention_mask=s.attention_mask,
                pixel_values=s.pixel_values[:1],
                pixel_attention_mask=s.pixel_attention_mask[:1],
                spatial_shapes=s.spatial_shapes[:1],
            )
        )


def test_partial_unfreezing_and_frozen_eval_mode(config, builder):
    torch.manual_seed(0)
    model = build_backbone(config)
    model.set_trainable(tune_llm=False, tune_visual=False, tune_projector=True, tune_top_llm_layers=1)
    top = f"model.language_model.model.layers.{config.select_layer - 1}."
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(top) for n in trainable)
    assert {n for n, _ in model.named_parameters() if n.startswith(top)} == trainable

    model.train()
    assert model.training
    assert not model.model.vision_model.training and not model.model.mlp1.training
    assert not model.model.language_model.training
    assert set(map(id, model.frozen_modules())) == {
        id(model.model.language_model),
        id(model.model.vision_model),
        id(model.model.mlp1),
    }

    batch = builder.collate([builder("wipe the table", _images(7, 1))])
    model(batch).backbone_features.sum().backward()
    for name, p in model.named_parameters():
        assert (p.grad is not None) == (name in trainable), name

    model.set_trainable(tune_llm=False, tune_visual=True, tune_projector=True, tune_top_llm_layers=0)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {
        n for n, _ in model.named_parameters() if n.startswith(("model.vision_model.", "model.mlp1."))
    }
    assert model.model.vision_model.training and not model.model.language_model.training

    model.set_trainable(tune_llm=True, tune_visual=True, tune_projector=True, tune_top_llm_layers=0)
    assert all(p.requires_grad for p in model.parameters())
    assert all(m.training for m in model.modules())
    with pytest.raises(ValueError, match="tune_top_llm_layers"):
        model.set_trainable(False, False, True, config.select_layer + 1)


def test_attention_implementation_resolution(backbone):
    assert resolve_attn_implementation("sdpa") == "sdpa"
    if not torch.cuda.is_available():
        assert resolve_attn_implementation("auto") == "sdpa"
    with pytest.raises(ValueError, match="backbone_attn_implementation"):
        resolve_attn_implementation("flash3")
    assert backbone.model.language_model.model.config._attn_implementation in ("sdpa", "flash_attention_2")
    assert backbone.model.vision_model.vision_model.config._attn_implementation == "sdpa"
    eager = EagleBackbone(load_preset("n16_tiny", backbone_attn_implementation="eager"))
    assert eager.model.language_model.model.config._attn_implementation == "eager"


def test_bad_configs_are_rejected():
    with pytest.raises(ValueError, match="select_layer"):
        build_backbone(
            load_preset(
                "n16_tiny",
                select_layer=3,
                tune_top_llm_layers=1,
                text_config={**load_preset("n16_tiny").text_config, "num_hidden_layers": 2},
            )
        )
    with pytest.raises(ValueError, match="backbone_embedding_dim"):
        build_backbone(load_preset("n16_tiny", backbone_embedding_dim=32))


def test_ignored_checkpoint_keys_cover_dropped_parts(config):
    import re

    patterns = [re.compile(p) for p in ignored_checkpoint_keys(config)]
    dropped = [
        "backbone.model.language_model.lm_head.weight",
        "backbone.model.vision_model.vision_model.head.probe",
        f"backbone.model.language_model.model.layers.{config.select_layer}.mlp.up_proj.weight",
    ]
    kept = [
        f"backbone.model.language_model.model.layers.{config.select_layer - 1}.mlp.up_proj.weight",
        "backbone.model.mlp1.0.weight",
        "backbone.model.vision_model.vision_model.post_layernorm.weight",
    ]
    assert all(any(p.search(k) for p in patterns) for k in dropped)
    assert not any(any(p.search(k) for p in patterns) for k in kept)


@torch.no_grad()
def test_bf16_backbone_with_fp32_trainable_parts(config, builder):
    # backbone_trainable_params_fp32: frozen parts in bf16, mlp1 and the top LLM layer in fp32.
    torch.manual_seed(0)
    model = build_backbone(config)
    model.set_trainable(tune_llm=False, tune_visual=False, tune_projector=True, tune_top_llm_layers=1)
    model.to(torch.bfloat16)
    model.model.mlp1.float()
    model.llm_layers()[-1].float()
    batch = builder.collate([builder("fold the towel", _images(8, 1))])
    out = model(batch)
    assert out.backbone_features.shape[:2] == batch.input_ids.shape
    assert torch.isfinite(out.backbone_features.float()).all()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(model(batch).backbone_features.float()).all()


def test_placeholder_check_causes_no_compile_graph_break(backbone, builder):
    # Text-only input: the LLM path must trace as one graph (the eager-only placeholder check used to
    # read a tensor value and break it). The image path's remaining breaks are inside Siglip2.
    s = builder.collate([builder("go", [])])
    assert not (s.input_ids == backbone.image_token_id).any()
    torch._dynamo.reset()
    text_only = EagleInputs(input_ids=s.input_ids, attention_mask=s.attention_mask)
    explained = torch._dynamo.explain(backbone.forward)(text_only)
    assert explained.graph_break_count == 0, [r.reason.splitlines()[0] for r in explained.break_reasons]
    assert explained.graph_count == 1
    eager = backbone(text_only)
    assert torch.isfinite(eager.backbone_features).all()
