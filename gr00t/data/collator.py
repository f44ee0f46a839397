"""`Gr00tCollator`: model-ready samples (from `Gr00tProcessor`) → the model batch of ARCHITECTURE.md.

Text is left padded, images are concatenated sample-major (each sample's images already time-major,
then view) by the VLM input collation of `gr00t.data.vlm_inputs`; state, action and action_mask are
stacked (each sample is already padded to the model widths); `embodiment_id` becomes a long vector.
Samples without `action` (inference) give a batch without `action`/`action_mask`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from gr00t.data.vlm_inputs import collate_vlm_inputs

VLM_KEYS = (
    "input_ids",
    "attention_mask",
    "pixel_values",
    "pixel_attention_mask",
    "spatial_shapes",
    "image_grid_thw",
    "mm_token_type_ids",
)
FLOAT_KEYS = ("state", "action", "action_mask")


def _as_tensor(value: Any, key: str, index: int) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    raise TypeError(f"sample {index}: {key!r} must be a tensor or numpy array, got {type(value).__name__}")


class Gr00tCollator:
    """Pads and stacks processor outputs. Picklable (a plain object holding the pad token id)."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = int(pad_token_id)

    def __call__(self, samples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not samples:
            raise ValueError("Gr00tCollator: empty list of samples")
        has_action = ["action" in s for s in samples]
        if any(has_action) and not all(has_action):
            missing = [i for i, h in enumerate(has_action) if not h]
            raise ValueError(
                f"samples {missing} have no 'action' while others do; a batch is all-train or all-inference"
            )
        for i, s in enumerate(samples):
            for key in ("input_ids", "state", "embodiment_id"):
                if key not in s:
                    raise KeyError(
                        f"sample {i} lacks {key!r} (got keys {sorted(s)}); was it made by Gr00tProcessor?"
                    )
        vlm = [{k: _as_tensor(s[k], k, i) for k in VLM_KEYS if k in s} for i, s in enumerate(samples)]
        batch = collate_vlm_inputs(vlm, pad_token_id=self.pad_token_id)
        for key in FLOAT_KEYS:
            if key not in samples[0]:
                continue
            rows = [_as_tensor(s[key], key, i).float() for i, s in enumerate(samples)]
            shapes = {tuple(r.shape) for r in rows}
            if len(shapes) != 1:
                raise ValueError(
                    f"{key!r} shapes differ across the batch: {sorted(shapes)}; every sample must be padded to "
                    "the model's max dims (max_state_dim / action_horizon × max_action_dim)"
                )
            batch[key] = torch.stack(rows)
        batch["embodiment_id"] = torch.tensor([int(s["embodiment_id"]) for s in samples], dtype=torch.long)
        return batch
