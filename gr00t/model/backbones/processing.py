"""Instruction + camera images → a backbone's inputs: the part every backbone shares (SPEC-N16 §1.5).

An `InputBuilder` turns one sample (an instruction string and its images, uint8 `[H, W, 3]`,
time-major: t0 view0, t0 view1, t1 view0, ...) into the backbone's inputs dataclass; `collate` pads
a list of such samples into a batch. Each backbone subclasses it beside its model
(`eagle_processing.EagleInputBuilder`, `qwen3_vl_processing.Qwen3VLInputBuilder`) with its resize
rule, prompt template, image placeholders and pixel layout; `gr00t.model.backbones` picks the
subclass by `backbone_type`.

Shared here: the instruction is lower-cased with punctuation removed and written as one user turn
with the text first and the images after it, without a generation prompt; token ids are cached per
(instruction, image-token layout); the bicubic resize backends.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import PreTrainedTokenizerBase

from gr00t.model.batch import BackboneInputs

RESIZE_BACKENDS = ("pil", "torch")
PIXEL_TRANSPORTS = ("float32", "uint8")
MAX_ASPECT_RATIO = 200
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


@dataclass
class InputBuilder:
    """Per-sample input builder of one backbone; picklable (runs in DataLoader workers).

    Subclasses set the class attributes below and implement `from_config`, `target_size`,
    `render_prompt`, `image_text` and `build_inputs`. ``resize_backend`` picks the bicubic resize to
    the layout's side multiple: "torch" (default, antialiased bicubic on uint8) or "pil".

    ``pixel_transport`` "uint8" keeps ``pixel_values`` as the resized uint8 values, patchified but not
    normalised (4x fewer bytes from DataLoader workers and to the GPU); the trainer finishes them on the
    device to the float32 ``(u8 − 127.5) / 127.5`` of the default "float32", bit for bit
    (`gr00t.train.loader.finish_pixel_values`). A transport choice of the training loader, never saved.
    """

    backbone_type: ClassVar[str]
    inputs_class: ClassVar[type[BackboneInputs]]
    image_token: ClassVar[str]  # one placeholder per image token
    image_start: ClassVar[str]  # opens an image's placeholder run
    image_end: ClassVar[str]

    tokenizer: PreTrainedTokenizerBase
    patch_size: int = 14
    merge_size: int = 2
    temporal_patch_size: int = 2
    min_pixels: int = 0
    max_pixels: int = 0
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
        for token in (self.image_token, self.image_start, self.image_end):
            if self.tokenizer.convert_tokens_to_ids(token) in (None, self.tokenizer.unk_token_id):
                raise ValueError(
                    f"tokenizer has no token {token!r}, needed by the {self.backbone_type} layout"
                )
        tid = self.tokenizer.convert_tokens_to_ids(self.image_token)
        if self.image_token_id is None:
            self.image_token_id = tid
        elif tid != self.image_token_id:
            raise ValueError(
                f"tokenizer maps {self.image_token!r} to id {tid} but the model config expects "
                f"image_token_id={self.image_token_id}; use the tokenizer that matches the model"
            )
        if self.resize_backend is None:
            self.resize_backend = "torch"
        if self.resize_backend not in RESIZE_BACKENDS:
            raise ValueError(f"resize_backend={self.resize_backend!r}: expected one of {RESIZE_BACKENDS}")
        if self.pixel_transport not in PIXEL_TRANSPORTS:
            raise ValueError(f"pixel_transport={self.pixel_transport!r}: expected one of {PIXEL_TRANSPORTS}")
        if self.tokenizer.pad_token_id is None:
            raise ValueError("tokenizer has no pad_token; batches are left padded and need one")

    # ---- provided by each backbone -----------------------------------------------------------
    @classmethod
    def from_config(cls, config: Any, tokenizer: PreTrainedTokenizerBase, **overrides: Any) -> InputBuilder:
        """The builder with the patch sizes and token ids of a `Gr00tN16Config`."""
        raise NotImplementedError

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        """Size an image of this (original) size is resized to, by the layout's own rule."""
        raise NotImplementedError

    def render_prompt(self, content: str) -> str:
        """The full prompt text of one user turn holding `content` (no generation prompt)."""
        raise NotImplementedError

    def image_text(self, index: int, n_tokens: int) -> str:
        """The placeholder text of image `index` (from 1) with `n_tokens` image tokens."""
        raise NotImplementedError

    def build_inputs(
        self,
        ids: torch.Tensor,
        images: list[np.ndarray],
        sizes: list[tuple[int, int]],
        grids: list[tuple[int, int]],
    ) -> BackboneInputs:
        """The sample's inputs from its token ids and its images, their resized sizes and patch grids."""
        raise NotImplementedError

    # ---- shared ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The settings a processor saves (`from_dict` in `gr00t.model.backbones` reads them back)."""
        return {
            "backbone_type": self.backbone_type,
            "patch_size": self.patch_size,
            "merge_size": self.merge_size,
            "temporal_patch_size": self.temporal_patch_size,
            "min_pixels": self.min_pixels,
            "max_pixels": self.max_pixels,
            "image_token_id": self.image_token_id,
            "formalize_language": self.formalize_language,
            "resize_backend": self.resize_backend,
        }

    @property
    def factor(self) -> int:
        """Side multiple of a resized image (patch × merge)."""
        return self.patch_size * self.merge_size

    def num_image_tokens(self, height: int, width: int) -> int:
        """Placeholder tokens written for an image of this (original) size."""
        h, w = self.target_size(height, width)
        return (h // self.factor) * (w // self.factor)

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
        pieces = [text] + [self.image_text(k + 1, n) for k, n in enumerate(tokens_per_image)]
        rendered = self.render_prompt("".join(pieces))
        ids = torch.tensor(self.tokenizer(rendered, add_special_tokens=False)["input_ids"], dtype=torch.long)
        expected = sum(tokens_per_image)
        found = int((ids == self.image_token_id).sum())
        if found != expected:
            raise ValueError(
                f"prompt text {text!r} produced {found} image tokens, expected {expected}; the "
                f"instruction must not contain the image token {self.image_token!r}"
            )
        return ids

    def __call__(self, instruction: str, images: Sequence[np.ndarray]) -> BackboneInputs:
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
        return self.build_inputs(ids, arrays, sizes, grids)

    def collate(self, samples: Sequence[BackboneInputs]) -> BackboneInputs:
        """Batch samples made by this builder (left padding with the tokenizer's pad id)."""
        return self.inputs_class.collate(samples, pad_token_id=int(self.tokenizer.pad_token_id))
