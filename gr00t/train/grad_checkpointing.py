"""Gradient (activation) checkpointing of the trainable transformer blocks (``trainer.gradient_checkpointing``).

Every trainable element of a ``ModuleList`` named ``layers`` / ``blocks`` / ``transformer_blocks``
/ ``layer`` (DiT blocks, the tuned top LLM layers) recomputes its activations during backward.
This works whatever the module's train/eval mode (the frozen-module handling keeps the LLM in eval
mode, where transformers' own switch would do nothing); dropout masks are replayed exactly because
torch restores the RNG state for the recomputation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.utils.checkpoint

_BLOCK_LIST_NAMES = ("layers", "blocks", "transformer_blocks", "layer")


def _checkpointed_forward(forward: Callable[..., Any]) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        if not torch.is_grad_enabled():
            return forward(*args, **kwargs)
        return torch.utils.checkpoint.checkpoint(forward, *args, use_reentrant=False, **kwargs)

    run.__gr00t_checkpointed__ = True  # type: ignore[attr-defined]
    return run


def enable_gradient_checkpointing(model: torch.nn.Module) -> list[str]:
    """Recompute the activations of every trainable transformer block during backward.

    Idempotent (an already wrapped block is left alone). Returns the names of the wrapped blocks;
    raises ValueError when the model has no trainable block list.
    """
    wrapped = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.ModuleList) or name.rsplit(".", 1)[-1] not in _BLOCK_LIST_NAMES:
            continue
        for index, block in enumerate(module):
            if not any(p.requires_grad for p in block.parameters()):
                continue
            if getattr(block.forward, "__gr00t_checkpointed__", False):
                continue
            block.forward = _checkpointed_forward(block.forward)
            wrapped.append(f"{name}.{index}")
    if not wrapped:
        raise ValueError(
            f"gradient_checkpointing=True but {type(model).__name__} has no trainable block list"
        )
    return wrapped
