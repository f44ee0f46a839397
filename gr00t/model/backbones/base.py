"""What every vision-language backbone gives the action head, and the partial-unfreezing contract."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from transformers.utils import ModelOutput

from gr00t.model.batch import BackboneInputs


@dataclass
class BackboneOutput(ModelOutput):
    """Token features of the backbone (dict-like: `out["image_mask"]` works as well as `out.image_mask`).

    backbone_features: float [B, S, backbone_embedding_dim], after the LLM's final norm.
    backbone_attention_mask: bool [B, S], True on real (non-padding) tokens.
    image_mask: bool [B, S], True on image-placeholder tokens.
    """

    backbone_features: torch.Tensor | None = None
    backbone_attention_mask: torch.Tensor | None = None
    image_mask: torch.Tensor | None = None


def layers_at_or_above(first: int, total: int) -> str:
    """Regex alternation of the layer indices ``first .. total-1`` (at least ``first``)."""
    return "|".join(str(i) for i in range(first, max(total, first + 1)))


def resolve_attn_implementation(requested: str) -> str:
    """Attention kernel for the LLM: "auto" → flash_attention_2 when flash_attn and CUDA exist, else sdpa."""
    if requested == "auto":
        if importlib.util.find_spec("flash_attn") is not None and torch.cuda.is_available():
            return "flash_attention_2"
        return "sdpa"
    if requested not in ("sdpa", "eager", "flash_attention_2"):
        raise ValueError(
            f"backbone_attn_implementation={requested!r}: expected auto, sdpa, eager or flash_attention_2"
        )
    return requested


class Backbone(nn.Module):
    """Interface of a backbone: `forward(inputs) -> BackboneOutput` plus partial unfreezing.

    Subclasses name their inputs dataclass (`inputs_class`, a `BackboneInputs`), provide the three
    module groups (`llm_layers()`, `llm_module()`, `visual_modules()`) and the forward pass. Modules
    frozen by `set_trainable` stay in eval mode whatever `train()` is called with (SPEC-N16 §1.5).
    """

    inputs_class: ClassVar[type[BackboneInputs]] = BackboneInputs

    def __init__(self) -> None:
        super().__init__()
        self._frozen: list[nn.Module] = []

    # ---- provided by each backbone ----------------------------------------------------------
    @classmethod
    def ignored_checkpoint_keys(cls, config: Any, prefix: str = "backbone.") -> list[str]:
        """Regexes of released-checkpoint keys this backbone deliberately does not build."""
        return []

    def llm_module(self) -> nn.Module:
        """The (truncated) language model."""
        raise NotImplementedError

    def llm_layers(self) -> nn.ModuleList:
        """The kept decoder layers of the language model, bottom to top."""
        raise NotImplementedError

    def visual_modules(self) -> list[nn.Module]:
        """Vision encoder and its projector into the LLM width."""
        raise NotImplementedError

    # ---- shared behaviour -------------------------------------------------------------------
    def set_trainable(
        self,
        tune_llm: bool,
        tune_visual: bool,
        tune_projector: bool = True,
        tune_top_llm_layers: int = 0,
    ) -> None:
        """SPEC-N16 §1.5 partial unfreezing.

        The LLM trains only if `tune_llm`; the vision model and its projector (Eagle's `mlp1`,
        Qwen3-VL's mergers) only if `tune_visual`; then the top `tune_top_llm_layers` kept LLM
        layers train regardless. `tune_projector` is accepted for symmetry with the model config:
        in the reference it governs the action head's projectors, not the backbone's `mlp1`.
        """
        del tune_projector
        layers = self.llm_layers()
        if not 0 <= tune_top_llm_layers <= len(layers):
            raise ValueError(
                f"tune_top_llm_layers={tune_top_llm_layers}: expected 0..{len(layers)} (kept LLM layers)"
            )
        self.llm_module().requires_grad_(tune_llm)
        for module in self.visual_modules():
            module.requires_grad_(tune_visual)
        if tune_top_llm_layers > 0:
            for layer in layers[len(layers) - tune_top_llm_layers :]:
                layer.requires_grad_(True)
        self._frozen = []
        if not tune_llm:
            self._frozen.append(self.llm_module())
        if not tune_visual:
            self._frozen.extend(self.visual_modules())
        self.train(self.training)

    def frozen_modules(self) -> list[nn.Module]:
        """Modules to keep in eval mode during training (set by `set_trainable`)."""
        return list(self._frozen)

    def train(self, mode: bool = True) -> Backbone:
        super().train(mode)
        for module in self._frozen:
            module.eval()
        return self


def normalize_uint8_pixels(values: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Pixels as the vision tower takes them: uint8-transported ones (``vlm.pixel_transport=uint8``)
    become float32 ``(u8 − 127.5) / 127.5``, the processor's own normalisation bit for bit, with
    padding (``mask`` False) kept at 0; floating-point pixels are returned as they are."""
    if values.dtype != torch.uint8:
        return values
    out = values.float().sub_(127.5).div_(127.5)
    if mask is not None and not bool(mask.all()):
        out.masked_fill_(~mask[..., None].bool(), 0.0)
    return out
