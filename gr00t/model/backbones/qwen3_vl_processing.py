"""What the Qwen3-VL backbone reads: `Qwen3VLInputs` (one sample or a batch) and its collation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from gr00t.model.batch import BackboneInputs, check_samples, left_pad


@dataclass
class Qwen3VLInputs(BackboneInputs):
    """Qwen3-VL's inputs (one sample: `input_ids`/`attention_mask`/`mm_token_type_ids` `[L]`; a
    batch: `[B, L]`, left padded).

    pixel_values: float `[N_patches, C·T·p·p]`, all images' patches concatenated in Qwen3-VL's order.
    image_grid_thw: long `[N_img, 3]`, `[1, H/p, W/p]` per image.
    mm_token_type_ids: long like `input_ids`, 1 on image tokens.
    """

    pixel_values: torch.Tensor | None = None
    image_grid_thw: torch.Tensor | None = None
    mm_token_type_ids: torch.Tensor | None = None

    @classmethod
    def collate(cls, samples: Sequence[Qwen3VLInputs], pad_token_id: int) -> Qwen3VLInputs:
        """Left-pad the text and token types; concatenate patches and grids."""
        check_samples(cls, samples)
        batch = cls(
            input_ids=left_pad([s.input_ids for s in samples], pad_token_id),
            attention_mask=left_pad([s.attention_mask for s in samples], 0),
        )
        if samples[0].mm_token_type_ids is not None:
            batch.mm_token_type_ids = left_pad([s.mm_token_type_ids for s in samples], 0)
        if samples[0].image_grid_thw is not None:
            batch.pixel_values = torch.cat([s.pixel_values for s in samples])
            batch.image_grid_thw = torch.cat([s.image_grid_thw for s in samples])
        return batch
