"""A Qwen3-VL backbone (the Cosmos-Reason2-2B family) from transformers' own `Qwen3VLModel`.

State-dict names relative to the backbone: `model.visual.*` and `model.language_model.*`
(transformers' layout of `Qwen3VLModel`); the language model keeps its first `select_layer`
decoder layers. Inputs are Qwen3-VL's (`pixel_values`, `image_grid_thw`, `mm_token_type_ids`).
"""

from __future__ import annotations

import copy
import re

from torch import nn
from transformers import Qwen3VLConfig, Qwen3VLModel

from gr00t.model.backbones.base import (
    Backbone,
    BackboneOutput,
    layers_at_or_above,
    normalize_uint8_pixels,
    resolve_attn_implementation,
)
from gr00t.model.backbones.qwen3_vl_processing import Qwen3VLInputs
from gr00t.model.config import Gr00tN16Config


def qwen3_vl_sub_config(config: Gr00tN16Config) -> Qwen3VLConfig:
    """transformers config of the truncated Qwen3-VL model."""
    if not config.qwen3_vl_config:
        raise ValueError("backbone_type='qwen3_vl' needs qwen3_vl_config (a Qwen3VLConfig dict); got none")
    fields = copy.deepcopy(dict(config.qwen3_vl_config))
    text = dict(fields.get("text_config") or {})
    full_layers = int(text.get("num_hidden_layers", config.select_layer))
    if config.select_layer > full_layers:
        raise ValueError(
            f"select_layer={config.select_layer} exceeds qwen3_vl_config.text_config.num_hidden_layers={full_layers}"
        )
    if int(text.get("hidden_size", -1)) != config.backbone_embedding_dim:
        raise ValueError(
            f"backbone_embedding_dim={config.backbone_embedding_dim} must equal "
            f"qwen3_vl_config.text_config.hidden_size={text.get('hidden_size')}"
        )
    text["num_hidden_layers"] = config.select_layer
    fields["text_config"] = text
    cfg = Qwen3VLConfig(**fields)
    cfg._attn_implementation = resolve_attn_implementation(config.backbone_attn_implementation)
    return cfg


class Qwen3VLBackbone(Backbone):
    """transformers' Qwen3VLModel with a truncated LLM; outputs its last normed hidden states."""

    inputs_class = Qwen3VLInputs

    def __init__(self, config: Gr00tN16Config) -> None:
        super().__init__()
        cfg = qwen3_vl_sub_config(config)
        self.image_token_id = int(cfg.image_token_id)
        self.model = Qwen3VLModel(cfg)

    @classmethod
    def ignored_checkpoint_keys(cls, config: Gr00tN16Config, prefix: str = "backbone.") -> list[str]:
        """The LM head and the LLM layers at and above `select_layer`."""
        p = re.escape(prefix)
        text = (config.qwen3_vl_config or {}).get("text_config") or {}
        total = int(text.get("num_hidden_layers", config.select_layer))
        return [
            rf"^{p}lm_head\.",
            rf"^{p}model\.language_model\.layers\.({layers_at_or_above(config.select_layer, total)})\.",
        ]

    def llm_module(self) -> nn.Module:
        return self.model.language_model

    def llm_layers(self) -> nn.ModuleList:
        return self.model.language_model.layers

    def visual_modules(self) -> list[nn.Module]:
        return [self.model.visual]

    def forward(self, inputs: Qwen3VLInputs) -> BackboneOutput:
        if not isinstance(inputs, Qwen3VLInputs):
            raise TypeError(f"qwen3_vl backbone: expected Qwen3VLInputs, got {type(inputs).__name__}")
        input_ids, attention_mask = inputs.input_ids, inputs.attention_mask
        pixel_values, image_grid_thw = inputs.pixel_values, inputs.image_grid_thw
        mm_token_type_ids = inputs.mm_token_type_ids
        image_mask = input_ids == self.image_token_id
        if pixel_values is not None and pixel_values.shape[0] == 0:
            pixel_values, image_grid_thw = None, None
        if pixel_values is None and bool(image_mask.any()):
            raise ValueError(
                f"qwen3_vl backbone: {int(image_mask.sum())} image tokens (id {self.image_token_id}) but no pixel_values"
            )
        if pixel_values is not None and (image_grid_thw is None or mm_token_type_ids is None):
            raise ValueError("qwen3_vl backbone: pixel_values need image_grid_thw and mm_token_type_ids")
        if pixel_values is not None:
            pixel_values = normalize_uint8_pixels(pixel_values)
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            pixel_values=pixel_values,
            image_grid_thw=image_grid_thw,
            mm_token_type_ids=mm_token_type_ids,
            use_cache=False,
        )
        return BackboneOutput(
            backbone_features=out.last_hidden_state,
            backbone_attention_mask=attention_mask == 1,
            image_mask=image_mask,
        )
