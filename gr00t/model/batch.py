"""The model batch: one typed object from the collator (training) or the policy (inference) to
`Gr00tN16Model`.

`Gr00tBatch` = ``backbone`` (the backbone's own inputs dataclass, declared beside each backbone:
`gr00t.model.backbones.eagle.EagleInputs`, `gr00t.model.backbones.qwen3_vl.Qwen3VLInputs`) +
``head`` (`HeadInputs`). Its tensors move together: ``batch.to(device)``, ``batch.pin_memory()``
(what a DataLoader with ``pin_memory=True`` and accelerate's ``send_to_device`` call) and
``len(batch)`` is the number of samples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

T = TypeVar("T", bound="TensorDataclass")


class TensorDataclass:
    """Mixin for dataclasses whose fields are tensors, None or nested `TensorDataclass` objects."""

    def map_tensors(self: T, fn: Callable[[torch.Tensor], torch.Tensor]) -> T:
        """A copy with `fn` applied to every tensor (recursively)."""
        changes: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                changes[f.name] = fn(value)
            elif isinstance(value, TensorDataclass):
                changes[f.name] = value.map_tensors(fn)
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def to(
        self: T,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        non_blocking: bool = False,
    ) -> T:
        """Every tensor to `device`; floating-point tensors also to `dtype` when given (integer and
        bool tensors keep theirs)."""

        def move(t: torch.Tensor) -> torch.Tensor:
            if dtype is not None and t.is_floating_point():
                return t.to(device=device, dtype=dtype, non_blocking=non_blocking)
            return t.to(device=device, non_blocking=non_blocking)

        return self.map_tensors(move)

    def pin_memory(self: T) -> T:
        """A copy in page-locked memory (called by `DataLoader(pin_memory=True)`)."""
        return self.map_tensors(lambda t: t.pin_memory())

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every tensor by dotted field name, e.g. ``{"backbone.input_ids": ..., "head.state": ...}``."""
        out: dict[str, torch.Tensor] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                out[f.name] = value
            elif isinstance(value, TensorDataclass):
                out.update({f"{f.name}.{k}": v for k, v in value.tensors().items()})
        return out


@dataclass
class BackboneInputs(TensorDataclass):
    """What every backbone reads; each backbone subclasses it with its image tensors.

    In a batch ``input_ids`` / ``attention_mask`` are long ``[B, L]`` (left padded, mask 1 on real
    tokens); in one processed sample, before collation, they are ``[L]``.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor

    @classmethod
    def collate(cls: type[T], samples: Sequence[T], pad_token_id: int) -> T:
        """One batch from per-sample inputs of this class (left padded text, concatenated images)."""
        raise NotImplementedError(f"{cls.__name__} does not define collate()")


def left_pad(rows: Sequence[torch.Tensor], value: int) -> torch.Tensor:
    """1-D tensors → ``[len(rows), max length]``, each row right-aligned after `value` padding."""
    length = max(r.shape[0] for r in rows)
    out = torch.full((len(rows), length), value, dtype=rows[0].dtype)
    for i, r in enumerate(rows):
        if r.shape[0]:
            out[i, length - r.shape[0] :] = r
    return out


def check_samples(cls: type[BackboneInputs], samples: Sequence[BackboneInputs]) -> None:
    """Raise unless `samples` is a non-empty list of `cls` objects that all set the same fields."""
    if not samples:
        raise ValueError(f"{cls.__name__}.collate: empty list of samples")
    for i, s in enumerate(samples):
        if not isinstance(s, cls):
            raise TypeError(f"sample {i}: expected {cls.__name__}, got {type(s).__name__}")
    first = sorted(samples[0].tensors())
    for i, s in enumerate(samples):
        if sorted(s.tensors()) != first:
            raise ValueError(f"sample {i} has keys {sorted(s.tensors())}, sample 0 has {first}")


@dataclass
class HeadInputs(TensorDataclass):
    """The action head's inputs (SPEC-N16 §2.3).

    state: float32 ``[B, T_state, max_state_dim]``, normalised, zero padded.
    embodiment_id: long ``[B]``, the projector index (SPEC §2.2).
    action: float32 ``[B, action_horizon, max_action_dim]``, normalised, zero padded; training only.
    action_mask: float32 like ``action``, 1 on real steps × real dims; training only.
    """

    state: torch.Tensor
    embodiment_id: torch.Tensor
    action: torch.Tensor | None = None
    action_mask: torch.Tensor | None = None


@dataclass
class Gr00tBatch(TensorDataclass):
    """A model batch: the backbone's inputs and the head's (see docs/ARCHITECTURE.md)."""

    backbone: BackboneInputs
    head: HeadInputs

    def __post_init__(self) -> None:
        if not isinstance(self.backbone, BackboneInputs):
            raise TypeError(
                f"Gr00tBatch.backbone must be a BackboneInputs (e.g. EagleInputs), got {type(self.backbone).__name__}"
            )
        if not isinstance(self.head, HeadInputs):
            raise TypeError(f"Gr00tBatch.head must be a HeadInputs, got {type(self.head).__name__}")

    def __len__(self) -> int:
        return int(self.head.state.shape[0])

    @property
    def batch_size(self) -> int:
        """Number of samples."""
        return len(self)

    @property
    def has_action(self) -> bool:
        """True for a training batch (with target actions)."""
        return self.head.action is not None

    def without_action(self) -> Gr00tBatch:
        """The same batch without ``action`` / ``action_mask`` (an inference batch)."""
        head = dataclasses.replace(self.head, action=None, action_mask=None)
        return dataclasses.replace(self, head=head)


__all__ = ["BackboneInputs", "Gr00tBatch", "HeadInputs", "TensorDataclass", "check_samples", "left_pad"]
