"""Instruction + camera images → the vision-language backbone's inputs (SPEC-N16 §1.5).

`VLMInputBuilder` turns one sample (an instruction string and its images, uint8 `[H, W, 3]`,
time-major: t0 view0, t0 view1, t1 view0, ...) into token ids and pixel tensors in the layout
of the configured backbone; `VLMInputBuilder.collate` (or `collate_vlm_inputs`) pads a list of
such samples into a batch. Two layouts:

* ``eagle`` — each image is resized with Eagle's own smart-resize rule to multiples of 28
  (patch 14 × pixel-unshuffle 2) by a PIL bicubic resize (what the reference processor does),
  normalised ``(u8 − 127.5) / 127.5`` and cut into 14×14 patches flattened (row, col, channel;
  channel fastest) for transformers' Siglip2 NaFlex vision model; the text holds
  ``<image k><img>`` + n × ``<IMG_CONTEXT>`` + ``</img>`` per image (k from 1), n = (H/28)·(W/28).
  The prompt is Eagle's chat template written out here (system turn "You are a helpful
  assistant.", then the user turn), independent of the tokenizer's own chat template.
* ``qwen3_vl`` — Qwen3-VL's own format: Qwen2-VL smart resize to factor 32 (patch 16 × merge 2),
  antialiased bicubic resize, each patch flattened (channel, temporal copy, row, col), patches
  grouped by 2×2 merge block, ``image_grid_thw`` rows ``[1, H/16, W/16]`` and
  ``<|vision_start|>`` + n × ``<|image_pad|>`` + ``<|vision_end|>`` with n = (H/32)·(W/32), plus
  ``mm_token_type_ids`` (1 on image tokens); the tokenizer's chat template renders the turn.

In both, the instruction is lower-cased with punctuation removed, written as one user turn with
the text first and the images after it, without a generation prompt.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import PreTrainedTokenizerBase

from gr00t.model.config import Gr00tN16Config

BACKBONE_LAYOUTS = ("eagle", "qwen3_vl")
RESIZE_BACKENDS = ("pil", "torch")
MAX_ASPECT_RATIO = 200

# Eagle (SPEC §1.5): factor 28, between 4·28² and 4096·28² pixels, each side at most 500·14.
EAGLE_MIN_PIXELS = 4 * 28 * 28
EAGLE_MAX_PIXELS = 4096 * 28 * 28
EAGLE_MAX_SIDE = 500 * 14
# Eagle's chat template for one user turn (the reference processor's, not the tokenizer's).
EAGLE_SYSTEM_TURN = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
# Qwen3-VL's released image processor: size {shortest_edge: 65536, longest_edge: 16777216}.
QWEN3_VL_MIN_PIXELS = 65536
QWEN3_VL_MAX_PIXELS = 16777216
# Token ids cached per (instruction, image-token layout); a dataset has few distinct instructions.
PROMPT_CACHE_SIZE = 4096


def normalize_instruction(text: str) -> str:
    """Lower-case and strip punctuation (every character that is neither a word char nor space)."""
    return re.sub(r"[^\w\s]", "", text.lower())


def _check_size(height: int, width: int) -> None:
    if height <= 0 or width <= 0:
        raise ValueError(f"image size {height}x{width}: both sides must be positive")
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(f"image size {height}x{width}: aspect ratio must be below {MAX_ASPECT_RATIO}")


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


def resize_image(image: np.ndarray, size: tuple[int, int], backend: str = "pil") -> torch.Tensor:
    """uint8 `[H, W, 3]` → float `[3, h, w]` holding uint8 values (0..255), bicubic.

    backend "pil": PIL's `Image.resize` with BICUBIC (Eagle's processor resizes PIL images
    this way). backend "torch": torch's antialiased bicubic on the uint8 image (what
    torchvision-based image processors such as Qwen3-VL's do). Same size: no resampling.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"image of shape {tuple(image.shape)} and dtype {image.dtype}: expected uint8 [H, W, 3]"
        )
    if backend not in RESIZE_BACKENDS:
        raise ValueError(f"resize backend {backend!r}: expected 'pil' or 'torch'")
    if tuple(image.shape[:2]) == tuple(size):
        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
    if backend == "pil":
        resized = Image.fromarray(np.ascontiguousarray(image)).resize(
            (size[1], size[0]), resample=Image.Resampling.BICUBIC
        )
        return torch.from_numpy(np.asarray(resized).copy()).permute(2, 0, 1).float()
    chw = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)  # channels-last view
    out = F.interpolate(chw[None], size=size, mode="bicubic", align_corners=False, antialias=True)[0]
    return out.float()


def normalize_pixels(chw: torch.Tensor) -> torch.Tensor:
    """0..255 → [-1, 1] as `(x − 127.5) / 127.5`."""
    return (chw - 127.5) / 127.5


def patchify_siglip2(chw: torch.Tensor, patch: int) -> torch.Tensor:
    """`[C, H, W]` → `[H/p · W/p, p·p·C]`: patches row-major, each flattened (row, col, channel)."""
    c, h, w = chw.shape
    gh, gw = h // patch, w // patch
    x = chw.reshape(c, gh, patch, gw, patch).permute(1, 3, 2, 4, 0)
    return x.reshape(gh * gw, patch * patch * c)


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


@dataclass
class VLMInputBuilder:
    """Per-sample VLM input builder for one backbone layout; picklable (runs in DataLoader workers).

    Build it with `VLMInputBuilder.from_config(config, tokenizer)` to take the layout, patch sizes
    and token ids from the model config.

    ``resize_backend`` picks the bicubic resize to the layout's side multiple. The default "torch"
    (antialiased bicubic on uint8) is ~5x cheaper than PIL on one core; for eagle each value is within
    ±2 grey levels of the released processor's PIL bicubic (mean difference below 0.01, see
    tests/data/test_vlm_inputs.py), which keeps data loading near the decode limit. "pil" reproduces
    the reference Eagle processor bit-exactly, at the cost of ~2 ms per image.

    ``pixel_transport`` "uint8" keeps ``pixel_values`` as the resized uint8 values, patchified but
    not normalised (4x fewer bytes from DataLoader workers and to the GPU); the trainer finishes them
    on the device to the float32 ``(u8 − 127.5) / 127.5`` of the default "float32", bit for bit
    (`gr00t.train.loader.finish_pixel_values`). A transport choice of the training loader, never saved.
    """

    tokenizer: PreTrainedTokenizerBase
    backbone_type: str = "eagle"
    patch_size: int = 14
    merge_size: int = 2
    temporal_patch_size: int = 2
    min_pixels: int = EAGLE_MIN_PIXELS
    max_pixels: int = EAGLE_MAX_PIXELS
    image_token_id: int | None = None
    formalize_language: bool = True
    resize_backend: str | None = None
    pixel_transport: str = "float32"
    _prompt_cache: OrderedDict = field(default_factory=OrderedDict, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_prompt_cache"] = OrderedDict()  # workers rebuild it; keeps pickles small
        return state

    def __post_init__(self) -> None:
        if self.backbone_type not in BACKBONE_LAYOUTS:
            raise ValueError(f"backbone_type={self.backbone_type!r}: expected one of {BACKBONE_LAYOUTS}")
        if self.backbone_type == "eagle":
            self._image_token, self._open, self._close = "<IMG_CONTEXT>", "<img>", "</img>"
        else:
            self._image_token, self._open, self._close = "<|image_pad|>", "<|vision_start|>", "<|vision_end|>"
        for token in (self._image_token, self._open, self._close):
            if self.tokenizer.convert_tokens_to_ids(token) in (None, self.tokenizer.unk_token_id):
                raise ValueError(
                    f"tokenizer has no token {token!r}, needed by the {self.backbone_type} layout"
                )
        tid = self.tokenizer.convert_tokens_to_ids(self._image_token)
        if self.image_token_id is None:
            self.image_token_id = tid
        elif tid != self.image_token_id:
            raise ValueError(
                f"tokenizer maps {self._image_token!r} to id {tid} but the model config expects "
                f"image_token_id={self.image_token_id}; use the tokenizer that matches the model"
            )
        if self.resize_backend is None:
            self.resize_backend = "torch"
        if self.resize_backend not in RESIZE_BACKENDS:
            raise ValueError(f"resize_backend={self.resize_backend!r}: expected one of {RESIZE_BACKENDS}")
        if self.pixel_transport not in ("float32", "uint8"):
            raise ValueError(f"pixel_transport={self.pixel_transport!r}: expected 'float32' or 'uint8'")
        if self.tokenizer.pad_token_id is None:
            raise ValueError("tokenizer has no pad_token; batches are left padded and need one")

    @classmethod
    def from_config(
        cls, config: Gr00tN16Config, tokenizer: PreTrainedTokenizerBase, **overrides: Any
    ) -> VLMInputBuilder:
        """The builder matching `config.backbone_type` and its vision settings."""
        if config.backbone_type == "eagle":
            fields: dict[str, Any] = dict(
                backbone_type="eagle",
                patch_size=int(config.vision_config.get("patch_size", 14)),
                merge_size=int(config.downsample_factor),
                min_pixels=EAGLE_MIN_PIXELS,
                max_pixels=EAGLE_MAX_PIXELS,
                image_token_id=int(config.image_token_id),
            )
        else:
            qcfg = config.qwen3_vl_config or {}
            vis = qcfg.get("vision_config", {}) or {}
            fields = dict(
                backbone_type="qwen3_vl",
                patch_size=int(vis.get("patch_size", 16)),
                merge_size=int(vis.get("spatial_merge_size", 2)),
                temporal_patch_size=int(vis.get("temporal_patch_size", 2)),
                min_pixels=QWEN3_VL_MIN_PIXELS,
                max_pixels=QWEN3_VL_MAX_PIXELS,
                image_token_id=int(qcfg.get("image_token_id", 151655)),
            )
        fields.update(overrides)
        return cls(tokenizer=tokenizer, **fields)

    @property
    def factor(self) -> int:
        """Side multiple of a resized image (patch × merge)."""
        return self.patch_size * self.merge_size

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        """Size an image of this (original) size is resized to, by the layout's own rule."""
        rule = eagle_smart_resize if self.backbone_type == "eagle" else smart_resize
        return rule(height, width, self.factor, self.min_pixels, self.max_pixels)

    def num_image_tokens(self, height: int, width: int) -> int:
        """Placeholder tokens written for an image of this (original) size."""
        h, w = self.target_size(height, width)
        return (h // self.factor) * (w // self.factor)

    def render_prompt(self, content: str) -> str:
        """The full prompt text of one user turn holding `content` (no generation prompt).

        Eagle: the reference processor's chat template, written out (a default system turn,
        then the user turn); it does not depend on the tokenizer's chat template. Qwen3-VL: the
        tokenizer's chat template.
        """
        if self.backbone_type == "eagle":
            return f"{EAGLE_SYSTEM_TURN}<|im_start|>user\n{content}<|im_end|>\n"
        conversation = [{"role": "user", "content": content}]
        return self.tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=False)

    def _image_text(self, index: int, n_tokens: int) -> str:
        body = self._open + self._image_token * n_tokens + self._close
        return f"<image {index}>{body}" if self.backbone_type == "eagle" else body

    def prompt_ids(self, text: str, tokens_per_image: Sequence[int]) -> torch.Tensor:
        """Token ids of the prompt holding the (already normalised) `text` and one placeholder run of
        `tokens_per_image[k]` image tokens per image; cached per (text, layout), a fresh tensor each call.

        Identical to `prompt_ids_uncached`: the key determines the rendered prompt completely.
        """
        key = (text, tuple(int(n) for n in tokens_per_image))
        ids = self._prompt_cache.get(key)
        if ids is None:
            ids = self.prompt_ids_uncached(*key)
            self._prompt_cache[key] = ids
            if len(self._prompt_cache) > PROMPT_CACHE_SIZE:
                self._prompt_cache.popitem(last=False)
        else:
            self._prompt_cache.move_to_end(key)
        return ids.clone()

    def prompt_ids_uncached(self, text: str, tokens_per_image: Sequence[int]) -> torch.Tensor:
        """Render the prompt and tokenise it (the reference path `prompt_ids` caches)."""
        pieces = [text] + [self._image_text(k + 1, n) for k, n in enumerate(tokens_per_image)]
        rendered = self.render_prompt("".join(pieces))
        ids = torch.tensor(self.tokenizer(rendered, add_special_tokens=False)["input_ids"], dtype=torch.long)
        expected = sum(tokens_per_image)
        found = int((ids == self.image_token_id).sum())
        if found != expected:
            raise ValueError(
                f"prompt text {text!r} produced {found} image tokens, expected {expected}; the "
                f"instruction must not contain the image token {self._image_token!r}"
            )
        return ids

    def __call__(self, instruction: str, images: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
        """One sample's inputs: `input_ids`, `attention_mask` (1-D) and the layout's pixel tensors."""
        if not isinstance(instruction, str):
            raise TypeError(f"instruction must be a str, got {type(instruction).__name__}")
        text = normalize_instruction(instruction) if self.formalize_language else instruction
        arrays = []
        for k, image in enumerate(images):
            image = np.asarray(image)
            if image.ndim != 3:
                raise ValueError(f"image {k} has shape {tuple(image.shape)}: expected uint8 [H, W, 3]")
            arrays.append(image)
        sizes = [self.target_size(a.shape[0], a.shape[1]) for a in arrays]
        grids = [(h // self.patch_size, w // self.patch_size) for h, w in sizes]
        counts = [(gh // self.merge_size) * (gw // self.merge_size) for gh, gw in grids]
        try:
            ids = self.prompt_ids(text, counts)
        except ValueError as exc:
            raise ValueError(f"instruction {instruction!r}: {exc}") from None
        out: dict[str, torch.Tensor] = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        if self.backbone_type == "eagle":
            normalize = self.pixel_transport == "float32"
            out.update(_siglip2_inputs(arrays, sizes, grids, self.patch_size, self.resize_backend, normalize))
            return out
        pixels = []
        for image, size in zip(arrays, sizes):
            if self.pixel_transport == "uint8":  # resized values are whole numbers: nothing is lost
                chw = resize_image(image, size, self.resize_backend).to(torch.uint8)
            else:
                chw = resize_image(image, size, self.resize_backend).sub_(127.5).div_(127.5)  # fresh tensor
            pixels.append(patchify_qwen3_vl(chw, self.patch_size, self.merge_size, self.temporal_patch_size))
        out["pixel_values"] = (
            torch.cat(pixels) if pixels else torch.zeros(0, 3 * self.temporal_patch_size * self.patch_size**2)
        )
        out["image_grid_thw"] = torch.tensor([[1, gh, gw] for gh, gw in grids], dtype=torch.long).reshape(
            -1, 3
        )
        out["mm_token_type_ids"] = (ids == self.image_token_id).long()
        return out

    def collate(self, samples: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Batch samples made by this builder (left padding with the tokenizer's pad id)."""
        return collate_vlm_inputs(samples, pad_token_id=int(self.tokenizer.pad_token_id))


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


def _left_pad(rows: list[torch.Tensor], value: int) -> torch.Tensor:
    length = max(r.shape[0] for r in rows)
    out = torch.full((len(rows), length), value, dtype=rows[0].dtype)
    for i, r in enumerate(rows):
        if r.shape[0]:
            out[i, length - r.shape[0] :] = r
    return out


def collate_vlm_inputs(
    samples: Sequence[dict[str, torch.Tensor]], pad_token_id: int
) -> dict[str, torch.Tensor]:
    """Pad per-sample VLM inputs into a batch.

    `input_ids` / `attention_mask` / `mm_token_type_ids` are left padded (pad id, 0, 0). Eagle
    images are concatenated sample-major and zero-padded to the longest patch count (with
    `pixel_attention_mask` False on padding); Qwen3-VL patches and grids are concatenated.
    """
    if not samples:
        raise ValueError("collate_vlm_inputs: empty list of samples")
    keys = set(samples[0])
    for i, s in enumerate(samples):
        if set(s) != keys:
            raise ValueError(f"sample {i} has keys {sorted(s)}, sample 0 has {sorted(keys)}")
    batch = {
        "input_ids": _left_pad([s["input_ids"] for s in samples], pad_token_id),
        "attention_mask": _left_pad([s["attention_mask"] for s in samples], 0),
    }
    if "mm_token_type_ids" in keys:
        batch["mm_token_type_ids"] = _left_pad([s["mm_token_type_ids"] for s in samples], 0)
    if "spatial_shapes" in keys:
        n = sum(s["pixel_values"].shape[0] for s in samples)
        p_max = max(s["pixel_values"].shape[1] for s in samples)
        dim = samples[0]["pixel_values"].shape[2]
        if all(s["pixel_values"].shape[1] == p_max for s in samples):  # no padding: one copy, no zeroing
            rows = [s["pixel_values"] for s in samples]
            out = None
            if torch.utils.data.get_worker_info() is not None:  # a DataLoader worker: straight into shared
                storage = rows[0]._typed_storage()._new_shared(n * p_max * dim, device=rows[0].device)
                out = rows[0].new(storage).resize_(n, p_max, dim)  # memory, saving the copy on sending
            batch["pixel_values"] = torch.cat(rows, out=out)
            batch["pixel_attention_mask"] = torch.cat([s["pixel_attention_mask"] for s in samples])
        else:
            values = torch.zeros(n, p_max, dim, dtype=samples[0]["pixel_values"].dtype)
            mask = torch.zeros(n, p_max, dtype=torch.bool)
            row = 0
            for s in samples:
                k, p = s["pixel_values"].shape[:2]
                values[row : row + k, :p] = s["pixel_values"]
                mask[row : row + k, :p] = s["pixel_attention_mask"]
                row += k
            batch["pixel_values"] = values
            batch["pixel_attention_mask"] = mask
        batch["spatial_shapes"] = torch.cat([s["spatial_shapes"] for s in samples])
    elif "image_grid_thw" in keys:
        batch["pixel_values"] = torch.cat([s["pixel_values"] for s in samples])
        batch["image_grid_thw"] = torch.cat([s["image_grid_thw"] for s in samples])
    return batch
