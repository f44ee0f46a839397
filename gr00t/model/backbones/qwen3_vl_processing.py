"""What the Qwen3-VL backbone reads (`Qwen3VLInputs`) and how a sample is made (`Qwen3VLInputBuilder`).

Qwen3-VL's own format: Qwen2-VL smart resize to factor 32 (patch 16 × merge 2), antialiased
bicubic resize, each patch flattened (channel, temporal copy, row, col), patches grouped by 2×2
merge block, ``image_grid_thw`` rows ``[1, H/16, W/16]`` and ``<|vision_start|>`` + n ×
``<|image_pad|>`` + ``<|vision_end|>`` with n = (H/32)·(W/32), plus ``mm_token_type_ids`` (1 on
image tokens); the tokenizer's chat template renders the turn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from gr00t.model.backbones.processing import InputBuilder, _check_size, resize_image
from gr00t.model.batch import BackboneInputs, check_samples, left_pad

# Qwen3-VL's released image processor: size {shortest_edge: 65536, longest_edge: 16777216}.
QWEN3_VL_MIN_PIXELS = 65536
QWEN3_VL_MAX_PIXELS = 16777216


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


@dataclass
class Qwen3VLInputBuilder(InputBuilder):
    """`InputBuilder` of the Qwen3-VL layout (see the module docstring)."""

    backbone_type = "qwen3_vl"
    inputs_class = Qwen3VLInputs
    image_token, image_start, image_end = "<|image_pad|>", "<|vision_start|>", "<|vision_end|>"

    patch_size: int = 16
    min_pixels: int = QWEN3_VL_MIN_PIXELS
    max_pixels: int = QWEN3_VL_MAX_PIXELS

    @classmethod
    def from_config(
        cls, config: Any, tokenizer: PreTrainedTokenizerBase, **overrides: Any
    ) -> Qwen3VLInputBuilder:
        qcfg = config.qwen3_vl_config or {}
        vis = qcfg.get("vision_config", {}) or {}
        fields: dict[str, Any] = dict(
            patch_size=int(vis.get("patch_size", 16)),
            merge_size=int(vis.get("spatial_merge_size", 2)),
            temporal_patch_size=int(vis.get("temporal_patch_size", 2)),
            min_pixels=QWEN3_VL_MIN_PIXELS,
            max_pixels=QWEN3_VL_MAX_PIXELS,
            image_token_id=int(qcfg.get("image_token_id", 151655)),
        )
        fields.update(overrides)
        return cls(tokenizer=tokenizer, **fields)

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        return smart_resize(height, width, self.factor, self.min_pixels, self.max_pixels)

    def render_prompt(self, content: str) -> str:
        """The tokenizer's chat template with one user turn."""
        conversation = [{"role": "user", "content": content}]
        return self.tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=False)

    def image_text(self, index: int, n_tokens: int) -> str:
        return f"{self.image_start}{self.image_token * n_tokens}{self.image_end}"

    def build_inputs(
        self,
        ids: torch.Tensor,
        images: list[np.ndarray],
        sizes: list[tuple[int, int]],
        grids: list[tuple[int, int]],
    ) -> Qwen3VLInputs:
        pixels = []
        for image, size in zip(images, sizes):
            if self.pixel_transport == "uint8":  # resized values are whole numbers: nothing is lost
                chw = resize_image(image, size, self.resize_backend).to(torch.uint8)
            else:
                chw = resize_image(image, size, self.resize_backend).sub_(127.5).div_(127.5)  # fresh tensor
            pixels.append(patchify_qwen3_vl(chw, self.patch_size, self.merge_size, self.temporal_patch_size))
        return Qwen3VLInputs(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            pixel_values=(
                torch.cat(pixels)
                if pixels
                else torch.zeros(0, 3 * self.temporal_patch_size * self.patch_size**2)
            ),
            image_grid_thw=torch.tensor([[1, gh, gw] for gh, gw in grids], dtype=torch.long).reshape(-1, 3),
            mm_token_type_ids=(ids == self.image_token_id).long(),
        )


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen2-VL's rule (used by Qwen3-VL): sides multiple of `factor`, area in [min, max], aspect kept.

    Round each side to the nearest multiple; if the area is too large scale the original sides
    down by sqrt(area/max) and floor, if too small scale them up by sqrt(min/area) and ceil.
    """
    _check_size(height, width)
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def patchify_qwen3_vl(chw: torch.Tensor, patch: int, merge: int, temporal: int) -> torch.Tensor:
    """`[C, H, W]` → `[H/p · W/p, C·T·p·p]` in Qwen3-VL's order.

    Patches are grouped by merge block (block row, block col, row in block, col in block); each
    patch is flattened (channel, temporal copy, row, col), the single frame repeated T times.
    """
    c, h, w = chw.shape
    gh, gw = h // patch, w // patch
    x = chw.reshape(c, gh // merge, merge, patch, gw // merge, merge, patch)
    x = x.permute(1, 4, 2, 5, 0, 3, 6)  # [bh, bw, mh, mw, C, p, p]
    x = x.unsqueeze(5).expand(-1, -1, -1, -1, -1, temporal, -1, -1)
    return x.reshape(gh * gw, c * temporal * patch * patch)
