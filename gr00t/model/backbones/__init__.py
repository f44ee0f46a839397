"""Vision-language backbones: `build_backbone(config)` picks one by `config.backbone_type`."""

from __future__ import annotations

import re

from gr00t.model.backbones.base import Backbone, BackboneOutput, resolve_attn_implementation
from gr00t.model.config import Gr00tN16Config

__all__ = [
    "Backbone",
    "BackboneOutput",
    "build_backbone",
    "ignored_checkpoint_keys",
    "resolve_attn_implementation",
]


def build_backbone(config: Gr00tN16Config) -> Backbone:
    """The backbone described by `config` ("eagle" or "qwen3_vl"), freshly initialised."""
    if config.backbone_type == "eagle":
        from gr00t.model.backbones.eagle import EagleBackbone

        return EagleBackbone(config)
    if config.backbone_type == "qwen3_vl":
        from gr00t.model.backbones.qwen3_vl import Qwen3VLBackbone

        return Qwen3VLBackbone(config)
    raise ValueError(f"backbone_type={config.backbone_type!r}: expected 'eagle' or 'qwen3_vl'")


def _layers_at_or_above(first: int, total: int) -> str:
    return "|".join(str(i) for i in range(first, max(total, first + 1)))


def ignored_checkpoint_keys(config: Gr00tN16Config, prefix: str = "backbone.") -> list[str]:
    """Regexes of checkpoint keys the backbone deliberately does not build.

    For `_keys_to_ignore_on_load_unexpected` of the top model: the LM head, the unused vision
    attention-pooling head (Eagle), and the LLM layers at and above `select_layer`.
    """
    p = re.escape(prefix)
    if config.backbone_type == "eagle":
        total = int(config.text_config.get("num_hidden_layers", config.select_layer))
        return [
            rf"^{p}model\.language_model\.lm_head\.",
            rf"^{p}model\.vision_model\.vision_model\.head\.",
            rf"^{p}model\.language_model\.model\.layers\.({_layers_at_or_above(config.select_layer, total)})\.",
        ]
    text = (config.qwen3_vl_config or {}).get("text_config") or {}
    total = int(text.get("num_hidden_layers", config.select_layer))
    return [
        rf"^{p}lm_head\.",
        rf"^{p}model\.language_model\.layers\.({_layers_at_or_above(config.select_layer, total)})\.",
    ]
