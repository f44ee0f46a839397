"""LoRA adapters on the backbone's language model (peft), switched on by ``trainer.lora_rank > 0``.

Adapters go into the attention/MLP projections of the LLM (the sub-module whose name ends in
``language_model``) and, with ``trainer.lora_dit``, into the DiT's attention (``to_q/k/v``,
``to_out.0``) and feed-forward (``ff.net.0.proj``, ``ff.net.2``) projections; the base matrices of
adapted layers freeze and every other parameter keeps its ``requires_grad``. A model with a
precision policy (``apply_precision``) re-applies it: adapters are float32, frozen bases
``model_dtype``. Checkpoints then hold base + adapter tensors (``*.base_layer.*``,
``*.lora_A/B.*``): load them into a model prepared with :func:`apply_lora` and the same settings,
or merge with peft for deployment.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import torch

from gr00t.train.settings import LORA_DEFAULT_TARGETS

if TYPE_CHECKING:
    from gr00t.train.settings import TrainingSettings

__all__ = [
    "LORA_DEFAULT_TARGETS",
    "LORA_DIT_TARGETS",
    "apply_lora",
    "dit_lora_pattern",
    "lora_module_pattern",
]

# DiT projections LoRA adapts with `trainer.lora_dit` (attention and feed-forward of every block).
LORA_DIT_TARGETS: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2")


def dit_lora_pattern(model: torch.nn.Module, targets: tuple[str, ...] = LORA_DIT_TARGETS) -> str:
    """Regex for peft matching ``targets`` inside the action head's DiT (``*action_head.model``)."""
    dit = [n for n, _ in model.named_modules() if n.endswith("action_head.model")]
    if not dit:
        raise ValueError(
            f"lora_dit=true but {type(model).__name__} has no '*action_head.model' (DiT) sub-module"
        )
    alternatives = "|".join(re.escape(t) for t in targets)
    return "^" + re.escape(min(dit, key=len)) + r"\..*\.(" + alternatives + ")$"


def lora_module_pattern(model: torch.nn.Module, targets: tuple[str, ...]) -> str:
    """Regex for peft matching ``targets`` inside the backbone's language model only."""
    names = [n for n, _ in model.named_modules()]
    llm = [n for n in names if n.endswith("language_model")]
    if not llm:
        raise ValueError(f"lora_rank > 0 but {type(model).__name__} has no '*language_model' sub-module")
    prefix = min(llm, key=len)
    alternatives = "|".join(re.escape(t) for t in targets)
    return "^" + re.escape(prefix) + r"\..*\.(" + alternatives + ")$"


def apply_lora(model: torch.nn.Module, settings: TrainingSettings) -> int:
    """Inject LoRA adapters into the LLM layers in place (peft); returns the number of adapted modules.

    Uses ``settings.lora_rank``, ``lora_alpha``, ``lora_dropout`` and ``lora_target_modules``.
    The base weights of adapted layers are frozen; everything else keeps its ``requires_grad``.
    """
    from peft import LoraConfig, inject_adapter_in_model

    pattern = lora_module_pattern(model, settings.lora_target_modules)
    if getattr(settings, "lora_dit", False):
        pattern = f"(?:{pattern})|(?:{dit_lora_pattern(model)})"
    trainable_before = {n for n, p in model.named_parameters() if p.requires_grad}
    config = LoraConfig(
        r=settings.lora_rank,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=pattern,
        bias="none",
    )
    inject_adapter_in_model(config, model)
    adapted = 0
    for name, param in model.named_parameters():
        if "lora_" in name:
            param.requires_grad_(True)
            adapted += 1
        elif ".base_layer." in name:
            param.requires_grad_(False)
        else:
            param.requires_grad_(name in trainable_before)
    if adapted == 0:
        raise ValueError(
            f"LoRA matched no module for targets {settings.lora_target_modules} (pattern {pattern})"
        )
    if hasattr(model, "apply_precision"):
        model.apply_precision()
    return adapted // 2
