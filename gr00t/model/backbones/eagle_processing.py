"""What the Eagle backbone reads: `EagleInputs` (one sample or a batch) and its collation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from gr00t.model.batch import BackboneInputs, check_samples, left_pad


@dataclass
class EagleInputs(BackboneInputs):
    """Eagle's inputs (one sample: `input_ids`/`attention_mask` `[L]`; a batch: `[B, L]`, left padded).

    pixel_values: float `[N_img, P_max, 3·14·14]`, each image's 14×14 patches row-major, each patch
        flattened (row, col, channel; channel fastest), pixels `(u8 − 127.5)/127.5`, zero padded.
    pixel_attention_mask: bool `[N_img, P_max]`, True on real patches.
    spatial_shapes: long `[N_img, 2]`, each image's patch grid (rows, cols), both even.
    Images are ordered sample-major, then time-major, then view: the order of the placeholder runs
    in `input_ids`.
    """

    pixel_values: torch.Tensor | None = None
    pixel_attention_mask: torch.Tensor | None = None
    spatial_shapes: torch.Tensor | None = None

    @classmethod
    def collate(cls, samples: Sequence[EagleInputs], pad_token_id: int) -> EagleInputs:
        """Left-pad the text; concatenate the images and zero-pad them to the longest patch count."""
        check_samples(cls, samples)
        batch = cls(
            input_ids=left_pad([s.input_ids for s in samples], pad_token_id),
            attention_mask=left_pad([s.attention_mask for s in samples], 0),
        )
        if samples[0].pixel_values is None:
            return batch
        n = sum(s.pixel_values.shape[0] for s in samples)
        p_max = max(s.pixel_values.shape[1] for s in samples)
        dim = samples[0].pixel_values.shape[2]
        values = torch.zeros(n, p_max, dim, dtype=samples[0].pixel_values.dtype)
        mask = torch.zeros(n, p_max, dtype=torch.bool)
        row = 0
        for s in samples:
            k, p = s.pixel_values.shape[:2]
            values[row : row + k, :p] = s.pixel_values
            mask[row : row + k, :p] = s.pixel_attention_mask
            row += k
        batch.pixel_values, batch.pixel_attention_mask = values, mask
        batch.spatial_shapes = torch.cat([s.spatial_shapes for s in samples])
        return batch
