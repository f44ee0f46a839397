"""The Eagle backbone of GR00T N1.6, rebuilt from transformers' stock classes (SPEC-N16 §1.5).

Module tree (and therefore state-dict names, relative to the backbone):

    model.vision_model.vision_model.*   Siglip2VisionModel (NaFlex ViT, per-image attention)
    model.mlp1.{0,1,3}.*                LayerNorm(4·Dv) → Linear(4·Dv→D) → GELU(erf) → Linear(D→D)
    model.language_model.model.*        Qwen3Model truncated to its first `select_layer` layers

which is the released checkpoint's layout under the `backbone.` prefix. The released file also
stores `language_model.lm_head.weight`, the vision attention-pooling `head` and the LLM layers
above `select_layer`; none of them is built here (see `ignored_checkpoint_keys`).
"""

from __future__ import annotations

import re

import torch
from torch import nn
from transformers import Qwen3Config, Qwen3Model, Siglip2VisionConfig, Siglip2VisionModel

from gr00t.model.backbones.base import (
    Backbone,
    BackboneOutput,
    layers_at_or_above,
    normalize_uint8_pixels,
    resolve_attn_implementation,
)
from gr00t.model.backbones.eagle_processing import EagleInputs
from gr00t.model.config import Gr00tN16Config


def pixel_unshuffle_tokens(features: torch.Tensor, height: int, width: int, factor: int = 2) -> torch.Tensor:
    """Merge each `factor`×`factor` block of an image's patch features into one token.

    `features` [height·width, C] in raster order → [(height/f)·(width/f), C·f²] in raster order,
    channel-major inside a token: output index = c·f² + row_offset·f + col_offset.
    """
    if height % factor or width % factor:
        raise ValueError(f"patch grid {height}x{width} is not divisible by the unshuffle factor {factor}")
    c = features.shape[-1]
    x = features.reshape(height // factor, factor, width // factor, factor, c)
    x = x.permute(0, 2, 4, 1, 3)  # [h/f, w/f, C, row_offset, col_offset]
    return x.reshape((height // factor) * (width // factor), c * factor * factor)


class _VisionHolder(nn.Module):
    """Adds the `vision_model.` level the released checkpoint has above the Siglip2 modules."""

    def __init__(self, config: Siglip2VisionConfig) -> None:
        super().__init__()
        self.vision_model = Siglip2VisionModel(config)


class _LanguageHolder(nn.Module):
    """Adds the `.model` level of a causal-LM wrapper (the LM head itself is never built)."""

    def __init__(self, config: Qwen3Config) -> None:
        super().__init__()
        self.model = Qwen3Model(config)


class EagleModel(nn.Module):
    """The three Eagle parts; attribute names fix the checkpoint key names."""

    def __init__(
        self, vision: Siglip2VisionConfig, text: Qwen3Config, downsample: int, mlp1_eps: float
    ) -> None:
        super().__init__()
        self.vision_model = _VisionHolder(vision)
        merged = vision.hidden_size * downsample * downsample
        self.mlp1 = nn.Sequential(
            nn.LayerNorm(merged, eps=mlp1_eps),
            nn.Linear(merged, text.hidden_size),
            nn.GELU(approximate="none"),
            nn.Linear(text.hidden_size, text.hidden_size),
        )
        self.language_model = _LanguageHolder(text)


def eagle_sub_configs(config: Gr00tN16Config) -> tuple[Siglip2VisionConfig, Qwen3Config]:
    """transformers configs of the vision tower and of the truncated LLM."""
    text_fields = dict(config.text_config)
    full_layers = int(text_fields.get("num_hidden_layers", config.select_layer))
    if config.select_layer > full_layers:
        raise ValueError(
            f"select_layer={config.select_layer} exceeds text_config.num_hidden_layers={full_layers}"
        )
    if int(text_fields.get("hidden_size", -1)) != config.backbone_embedding_dim:
        raise ValueError(
            f"backbone_embedding_dim={config.backbone_embedding_dim} must equal text_config.hidden_size="
            f"{text_fields.get('hidden_size')} (the Eagle backbone outputs LLM hidden states)"
        )
    text_fields["num_hidden_layers"] = config.select_layer
    text_fields.pop("layer_types", None)
    text_cfg = Qwen3Config(**text_fields)
    text_cfg._attn_implementation = resolve_attn_implementation(config.backbone_attn_implementation)

    vision_fields = dict(config.vision_config)
    vision_fields["vision_use_head"] = False
    vision_cfg = Siglip2VisionConfig(**vision_fields)
    # transformers' Siglip2 has no flash-attention path; its attention is per image anyway.
    vision_cfg._attn_implementation = "eager" if config.backbone_attn_implementation == "eager" else "sdpa"
    return vision_cfg, text_cfg


class EagleBackbone(Backbone):
    """Siglip2 ViT + pixel-unshuffle MLP + truncated Qwen3; outputs the LLM's last normed states."""

    inputs_class = EagleInputs

    def __init__(self, config: Gr00tN16Config) -> None:
        super().__init__()
        vision_cfg, text_cfg = eagle_sub_configs(config)
        self.image_token_id = int(config.image_token_id)
        self.downsample = int(config.downsample_factor)
        self.model = EagleModel(vision_cfg, text_cfg, self.downsample, config.mlp1_layer_norm_eps)

    @classmethod
    def ignored_checkpoint_keys(cls, config: Gr00tN16Config, prefix: str = "backbone.") -> list[str]:
        """The LM head, the unused vision attention-pooling head and the LLM layers at and above
        `select_layer`."""
        p = re.escape(prefix)
        total = int(config.text_config.get("num_hidden_layers", config.select_layer))
        return [
            rf"^{p}model\.language_model\.lm_head\.",
            rf"^{p}model\.vision_model\.vision_model\.head\.",
            rf"^{p}model\.language_model\.model\.layers\.({layers_at_or_above(config.select_layer, total)})\.",
        ]

    # ---- module groups for partial unfreezing ------------------------------------------------
    def llm_module(self) -> nn.Module:
        return self.model.language_model

    def llm_layers(self) -> nn.ModuleList:
        return self.model.language_model.model.layers

    def visual_modules(self) -> list[nn.Module]:
        return [self.model.vision_model, self.model.mlp1]

    # ---- forward ----------------------------------------------------------------------------
    def encode_images(
        self, pixel_values: torch.Tensor, pixel_attention_mask: torch.Tensor, spatial_shapes: torch.Tensor
    ) -> torch.Tensor:
        """Image tokens in the LLM width, images concatenated in order: [N_tokens, D]."""
        vit = self.model.vision_model.vision_model
        dtype = vit.embeddings.patch_embedding.weight.dtype
        hidden = vit(
            pixel_values=pixel_values.to(dtype),
            pixel_attention_mask=pixel_attention_mask,
            spatial_shapes=spatial_shapes,
        ).last_hidden_state
        tokens = []
        for i, (h, w) in enumerate(spatial_shapes.tolist()):
            tokens.append(pixel_unshuffle_tokens(hidden[i, : h * w], h, w, self.downsample))
        merged = torch.cat(tokens)
        # mlp1 may be kept in fp32 while the vision tower runs in bf16 (trainable params in fp32).
        return self.model.mlp1(merged.to(self.model.mlp1[1].weight.dtype))

    def forward(self, inputs: EagleInputs) -> BackboneOutput:
        if not isinstance(inputs, EagleInputs):
            raise TypeError(f"eagle backbone: expected EagleInputs, got {type(inputs).__name__}")
        input_ids, attention_mask = inputs.input_ids, inputs.attention_mask
        pixel_values = inputs.pixel_values
        pixel_attention_mask, spatial_shapes = inputs.pixel_attention_mask, inputs.spatial_shapes
        llm = self.model.language_model.model
        embeds = llm.embed_tokens(input_ids)
        image_mask = input_ids == self.image_token_id
        # Counting placeholders reads a tensor value (a torch.compile graph break), so the check runs
        # in eager mode only; compiled, masked_scatter itself needs enough image tokens.
        check = not torch.compiler.is_compiling()
        if pixel_values is not None and pixel_values.shape[0] > 0:
            if pixel_attention_mask is None or spatial_shapes is None:
                raise ValueError("eagle backbone: pixel_values need pixel_attention_mask and spatial_shapes")
            pixel_values = normalize_uint8_pixels(pixel_values, pixel_attention_mask)
            image_tokens = self.encode_images(pixel_values, pixel_attention_mask, spatial_shapes)
            if check and image_tokens.shape[0] != int(image_mask.sum()):
                raise ValueError(
                    f"eagle backbone: {int(image_mask.sum())} image placeholder tokens (id {self.image_token_id}) "
                    f"in input_ids but the images give {image_tokens.shape[0]} tokens"
                )
            embeds = embeds.masked_scatter(image_mask.unsqueeze(-1), image_tokens.to(embeds.dtype))
        elif check and bool(image_mask.any()):
            raise ValueError(
                f"eagle backbone: {int(image_mask.sum())} image placeholder tokens but no pixel_values"
            )
        # Positions count real tokens only; with RoPE this equals the reference's 0..L-1 up to a
        # shift, so left padding leaves the real tokens' features unchanged.
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        hidden = llm(
            inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        ).last_hidden_state
        return BackboneOutput(
            backbone_features=hidden,
            backbone_attention_mask=attention_mask == 1,
            image_mask=image_mask,
        )
