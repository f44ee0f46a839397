"""`Gr00tCollator`: model-ready samples (from `Gr00tProcessor`) → a `Gr00tBatch` (gr00t.model.batch).

Each sample's ``"backbone"`` entry is its backbone's inputs dataclass, which collates itself (text
left padded, images concatenated sample-major; see e.g. `EagleInputs.collate`); state, action and
action_mask are stacked (each sample is already padded to the model widths); `embodiment_id`
becomes a long vector. Samples without `action` (inference) give a batch without
`action`/`action_mask`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from gr00t.model.batch import BackboneInputs, Gr00tBatch, HeadInputs

SAMPLE_KEYS = ("backbone", "state", "embodiment_id")


def _as_tensor(value: Any, key: str, index: int) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    raise TypeError(f"sample {index}: {key!r} must be a tensor or numpy array, got {type(value).__name__}")


def _stack(samples: Sequence[dict[str, Any]], key: str) -> torch.Tensor:
    rows = [_as_tensor(s[key], key, i).float() for i, s in enumerate(samples)]
    shapes = {tuple(r.shape) for r in rows}
    if len(shapes) != 1:
        raise ValueError(
            f"{key!r} shapes differ across the batch: {sorted(shapes)}; every sample must be padded to "
            "the model's max dims (max_state_dim / action_horizon × max_action_dim)"
        )
    return torch.stack(rows)


class Gr00tCollator:
    """Pads and stacks processor outputs into a `Gr00tBatch`. Picklable (holds the pad token id)."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = int(pad_token_id)

    def __call__(self, samples: Sequence[dict[str, Any]]) -> Gr00tBatch:
        if not samples:
            raise ValueError("Gr00tCollator: empty list of samples")
        has_action = ["action" in s for s in samples]
        if any(has_action) and not all(has_action):
            missing = [i for i, h in enumerate(has_action) if not h]
            raise ValueError(
                f"samples {missing} have no 'action' while others do; a batch is all-train or all-inference"
            )
        for i, s in enumerate(samples):
            for key in SAMPLE_KEYS:
                if key not in s:
                    raise KeyError(
                        f"sample {i} lacks {key!r} (got keys {sorted(s)}); was it made by Gr00tProcessor?"
                    )
        parts = [s["backbone"] for s in samples]
        if not isinstance(parts[0], BackboneInputs):
            raise TypeError(f"sample 0: 'backbone' must be a BackboneInputs, got {type(parts[0]).__name__}")
        head = HeadInputs(
            state=_stack(samples, "state"),
            embodiment_id=torch.tensor([int(s["embodiment_id"]) for s in samples], dtype=torch.long),
        )
        if has_action[0]:
            head.action = _stack(samples, "action")
            head.action_mask = _stack(samples, "action_mask")
        return Gr00tBatch(backbone=type(parts[0]).collate(parts, self.pad_token_id), head=head)
