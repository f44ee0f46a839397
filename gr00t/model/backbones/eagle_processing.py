"""What the Eagle backbone reads (`EagleInputs`) and how a sample is made (`EagleInputBuilder`).

Each image is resized with Eagle's own smart-resize rule to multiples of 28 (patch 14 ×
pixel-unshuffle 2) by a bicubic resize (PIL's with ``resize_backend="pil"``, what the reference
processor does, bit-exact; torch's antialiased bicubic by default, within 2 grey levels and ~5x
cheaper), normalised ``(u8 − 127.5) / 127.5`` and cut into 14×14 patches flattened (row, col,
channel; channel fastest) for transformers' Siglip2 NaFlex vision model. The text holds
``<image k><img>`` + n × ``<IMG_CONTEXT>`` + ``</img>`` per image (k from 1), n = (H/28)·(W/28).
The prompt is Eagle's chat template written out here (system turn "You are a helpful assistant.",
then the user turn), independent of the tokenizer's own chat template.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import PreTrainedTokenizerBase

from gr00t.model.backbones.processing import InputBuilder, _check_size
from gr00t.model.batch import BackboneInputs, check_samples, left_pad

# Eagle (SPEC §1.5): factor 28, between 4·28² and 4096·28² pixels, each side at most 500·14.
EAGLE_MIN_PIXELS = 4 * 28 * 28
EAGLE_MAX_PIXELS = 4096 * 28 * 28
EAGLE_MAX_SIDE = 500 * 14
# Eagle's chat template for one user turn (the reference processor's, not the tokenizer's).
EAGLE_SYSTEM_TURN = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"


@dataclass
class EagleInputs(BackboneInputs):
    """Eagle's inputs (one sample: `input_ids`/`attention_mask` `[L]`; a batch: `[B, L]`, left padded).

    pixel_values: float `[N_img, P_max, 3·14·14]`, each image's 14×14 patches row-major, each patch
        flattened (row, col, channel; channel fastest), pixels `(u8 − 127.5)/127.5`, zero padded
        (uint8 values before normalisation with ``pixel_transport="uint8"``).
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
        if all(s.pixel_values.shape[1] == p_max for s in samples):  # no padding: one copy, no zeroing
            batch.pixel_values = _cat_shared([s.pixel_values for s in samples], (n, p_max, dim))
            batch.pixel_attention_mask = torch.cat([s.pixel_attention_mask for s in samples])
        else:
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


def _cat_shared(rows: list[torch.Tensor], shape: tuple[int, int, int]) -> torch.Tensor:
    """``torch.cat(rows)``; in a DataLoader worker straight into shared memory, which saves the copy
    the worker makes when it sends the batch."""
    out = None
    if torch.utils.data.get_worker_info() is not None:
        storage = rows[0]._typed_storage()._new_shared(math.prod(shape), device=rows[0].device)
        out = rows[0].new(storage).resize_(*shape)
    return torch.cat(rows, out=out)


@dataclass
class EagleInputBuilder(InputBuilder):
    """`InputBuilder` of the Eagle layout (see the module docstring)."""

    backbone_type = "eagle"
    inputs_class = EagleInputs
    image_token, image_start, image_end = "<IMG_CONTEXT>", "<img>", "</img>"

    min_pixels: int = EAGLE_MIN_PIXELS
    max_pixels: int = EAGLE_MAX_PIXELS

    @classmethod
    def from_config(
        cls, config: Any, tokenizer: PreTrainedTokenizerBase, **overrides: Any
    ) -> EagleInputBuilder:
        fields: dict[str, Any] = dict(
            patch_size=int(config.vision_config.get("patch_size", 14)),
            merge_size=int(config.downsample_factor),
            min_pixels=EAGLE_MIN_PIXELS,
            max_pixels=EAGLE_MAX_PIXELS,
            image_token_id=int(config.image_token_id),
        )
        fields.update(overrides)
        return cls(tokenizer=tokenizer, **fields)

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        return eagle_smart_resize(height, width, self.factor, self.min_pixels, self.max_pixels)

    def render_prompt(self, content: str) -> str:
        """The reference processor's chat template, written out: a default system turn, then the user
        turn; it does not depend on the tokenizer's chat template."""
        return f"{EAGLE_SYSTEM_TURN}<|im_start|>user\n{content}<|im_end|>\n"

    def image_text(self, index: int, n_tokens: int) -> str:
        return f"<image {index}>{self.image_start}{self.image_token * n_tokens}{self.image_end}"

    def build_inputs(
        self,
        ids: torch.Tensor,
        images: list[np.ndarray],
        sizes: list[tuple[int, int]],
        grids: list[tuple[int, int]],
    ) -> EagleInputs:
        normalize = self.pixel_transport == "float32"
        pixels = _siglip2_inputs(images, sizes, grids, self.patch_size, self.resize_backend, normalize)
        return EagleInputs(input_ids=ids, attention_mask=torch.ones_like(ids), **pixels)


def eagle_smart_resize(
    height: int,
    width: int,
    factor: int = 28,
    min_pixels: int = EAGLE_MIN_PIXELS,
    max_pixels: int = EAGLE_MAX_PIXELS,
) -> tuple[int, int]:
    """Eagle's variant of smart resize (its processor's rule, which differs from Qwen's).

    Each side is rounded to the nearest multiple of `factor` and kept in [factor, 7000]; if the
    area is then too large, the *rounded* sides are scaled down by sqrt(area/max) and floored;
    if too small, the original sides are scaled up by sqrt(min/area) and ceiled.
    """
    _check_size(height, width)
    h_bar = min(max(factor, round(height / factor) * factor), EAGLE_MAX_SIDE)
    w_bar = min(max(factor, round(width / factor) * factor), EAGLE_MAX_SIDE)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(h_bar * w_bar / max_pixels)
        h_bar = math.floor(h_bar / beta / factor) * factor
        w_bar = math.floor(w_bar / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def patchify_siglip2(chw: torch.Tensor, patch: int) -> torch.Tensor:
    """`[C, H, W]` → `[H/p · W/p, p·p·C]`: patches row-major, each flattened (row, col, channel)."""
    c, h, w = chw.shape
    gh, gw = h // patch, w // patch
    x = chw.reshape(c, gh, patch, gw, patch).permute(1, 3, 2, 4, 0)
    return x.reshape(gh * gw, patch * patch * c)


def _resize_uint8_hwc(image: np.ndarray, size: tuple[int, int], backend: str = "pil") -> np.ndarray:
    """uint8 `[H, W, 3]` → uint8 `[h, w, 3]` bicubic (`resize_image`'s backends); may be read-only."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"image of shape {tuple(image.shape)} and dtype {image.dtype}: expected uint8 [H, W, 3]"
        )
    h, w = size
    if tuple(image.shape[:2]) == (h, w):
        return image
    if backend == "torch":
        chw = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]  # channels-last view
        out = torch.empty(1, h, w, 3, dtype=torch.uint8)
        # F.interpolate's kernel with a channels-last output: its default NCHW output costs a
        # planar repack (more than half the resize time here); values are identical.
        torch._C._nn._upsample_bicubic2d_aa(chw, [h, w], False, None, None, out=out.permute(0, 3, 1, 2))
        return out[0].numpy()
    resized = Image.fromarray(np.ascontiguousarray(image)).resize((w, h), resample=Image.Resampling.BICUBIC)
    return np.asarray(resized)  # read-only; copied into the float output by the caller


def _siglip2_inputs(
    images: list[np.ndarray],
    sizes: list[tuple[int, int]],
    grids: list[tuple[int, int]],
    patch: int,
    backend: str = "pil",
    normalize: bool = True,
) -> dict[str, torch.Tensor]:
    """Eagle pixels in one pass per image: bicubic resize (PIL unless ``backend="torch"``),
    patchify on uint8 straight into the float output (row, col, channel; channel fastest),
    normalise in place; zero padding after. ``normalize=False`` returns the uint8 patches.

    Equal to `resize_image(·, backend)` → `normalize_pixels` → `patchify_siglip2` → padding.
    """
    dim = 3 * patch * patch
    counts = [gh * gw for gh, gw in grids]
    p_max = max(counts, default=0)
    uniform = all(n == p_max for n in counts)
    dtype = torch.float32 if normalize else torch.uint8
    values = (torch.empty if uniform else torch.zeros)(len(images), p_max, dim, dtype=dtype)
    mask = torch.zeros(len(images), p_max, dtype=torch.bool)
    out = values.numpy()  # shares memory with `values`
    for i, (image, size, (gh, gw)) in enumerate(zip(images, sizes, grids)):
        u8 = _resize_uint8_hwc(image, size, backend)
        src = u8.reshape(gh, patch, gw, patch, 3).transpose(0, 2, 1, 3, 4)
        np.copyto(out[i, : gh * gw].reshape(gh, gw, patch, patch, 3), src, casting="unsafe")
        mask[i, : gh * gw] = True
    if not normalize:
        pass
    elif uniform:
        values.sub_(127.5).div_(127.5)
    else:
        for i, n in enumerate(counts):
            values[i, :n].sub_(127.5).div_(127.5)
    shapes = torch.tensor(grids, dtype=torch.long).reshape(-1, 2)
    return {"pixel_values": values, "pixel_attention_mask": mask, "spatial_shapes": shapes}
