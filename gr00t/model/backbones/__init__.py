"""Vision-language backbones, each one folder entry: `<name>.py` (the model) beside
`<name>_processing.py` (its inputs dataclass and input builder), registered in `BACKBONES`.

`build_backbone(config)` and `build_input_builder(config, tokenizer)` pick by `config.backbone_type`;
`input_builder_from_dict` rebuilds a saved builder. Processing modules import no modeling code, so
data loading does not pay for it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedTokenizerBase

from gr00t.model.backbones.base import Backbone, BackboneOutput, resolve_attn_implementation
from gr00t.model.backbones.eagle_processing import EagleInputBuilder
from gr00t.model.backbones.processing import InputBuilder
from gr00t.model.backbones.qwen3_vl_processing import Qwen3VLInputBuilder
from gr00t.model.config import Gr00tN16Config

__all__ = [
    "BACKBONES",
    "Backbone",
    "BackboneOutput",
    "InputBuilder",
    "build_backbone",
    "build_input_builder",
    "ignored_checkpoint_keys",
    "input_builder_from_dict",
    "resolve_attn_implementation",
]


@dataclass(frozen=True)
class BackboneEntry:
    """A registered backbone: its model class (``"module:Class"``, imported on first use) and its
    input builder."""

    model: str
    input_builder: type[InputBuilder]

    def model_class(self) -> type[Backbone]:
        module, name = self.model.split(":")
        return getattr(importlib.import_module(module), name)


BACKBONES: dict[str, BackboneEntry] = {
    "eagle": BackboneEntry("gr00t.model.backbones.eagle:EagleBackbone", EagleInputBuilder),
    "qwen3_vl": BackboneEntry("gr00t.model.backbones.qwen3_vl:Qwen3VLBackbone", Qwen3VLInputBuilder),
}


def _entry(backbone_type: Any) -> BackboneEntry:
    if backbone_type not in BACKBONES:
        raise ValueError(f"backbone_type={backbone_type!r}: expected one of {sorted(BACKBONES)}")
    return BACKBONES[backbone_type]


def build_backbone(config: Gr00tN16Config) -> Backbone:
    """The backbone described by `config`, freshly initialised."""
    return _entry(config.backbone_type).model_class()(config)


def build_input_builder(
    config: Gr00tN16Config, tokenizer: PreTrainedTokenizerBase, **overrides: Any
) -> InputBuilder:
    """The input builder of `config`'s backbone, with its patch sizes and token ids; ``overrides``
    adjust builder fields (e.g. ``min_pixels``, ``resize_backend``)."""
    return _entry(config.backbone_type).input_builder.from_config(config, tokenizer, **overrides)


def input_builder_from_dict(tokenizer: PreTrainedTokenizerBase, fields: Mapping[str, Any]) -> InputBuilder:
    """Rebuild a builder from `InputBuilder.to_dict()` output (``backbone_type`` picks the class)."""
    fields = dict(fields)
    cls = _entry(fields.pop("backbone_type", "eagle")).input_builder
    return cls(tokenizer=tokenizer, **fields)


def ignored_checkpoint_keys(config: Gr00tN16Config, prefix: str = "backbone.") -> list[str]:
    """Regexes of checkpoint keys the backbone deliberately does not build (see each backbone's
    `ignored_checkpoint_keys`), for `_keys_to_ignore_on_load_unexpected` of the top model."""
    return _entry(config.backbone_type).model_class().ignored_checkpoint_keys(config, prefix)
