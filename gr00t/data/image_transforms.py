"""GR00T image transforms (SPEC §2.4), torch/numpy only.

Train: shortest edge -> S (area interpolation), random crop of `crop_fraction` of each side,
shortest edge -> S again, optional rotation and colour jitter. Eval: the same with a centre crop
and no augmentation. The native aspect ratio is kept (no square padding).

One random draw serves every frame and every view of a sample: the crop position is drawn as a
fraction of the free range, so views of different sizes are cropped at the same relative place.
Inputs and outputs are uint8 [T, H, W, 3] per view.

Precision: a draw without rotation or colour jitter (eval, and train with only the crop) runs on
uint8: the crop is a view, an enlarging resize is torch's separable uint8 bilinear kernel (rounds
between its two passes), a shrinking one sums each area bin in integers and divides in float32 the
way torch's adaptive average pooling does, which equals the float resize rounded once, bit for bit
(the processor costs 9.6 instead of 14.4 ms per sample of two 480x640 cameras). Compared with the
all-float reference path (`apply(..., exact=True)`, which draws with rotation or colour jitter
always take), each output value is within ±1 when one resampling is rounded (input shortest edge
already `size`, or a shrinking first resize) and within ±2 when both are (a small input enlarged
twice; values off by 2 are ~0.02 %). Mean absolute difference ~0.06–0.25.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ImageTransformConfig:
    """Knobs of the transform. Jitter strengths follow the usual convention: a factor drawn from
    [1 - s, 1 + s] (brightness / contrast / saturation) or a hue shift in [-s, s] turns (s <= 0.5)."""

    size: int = 256
    crop_fraction: float = 0.95
    rotation_degrees: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"image size must be positive, got {self.size}")
        if not 0.0 < self.crop_fraction <= 1.0:
            raise ValueError(f"crop_fraction must be in (0, 1], got {self.crop_fraction}")
        for name in ("rotation_degrees", "brightness", "contrast", "saturation", "hue"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.hue > 0.5:
            raise ValueError(f"hue must be <= 0.5, got {self.hue}")


@dataclass(frozen=True)
class AugmentDraw:
    """The random choices of one sample (shared by all its frames and views)."""

    crop_y: float = 0.5  # position of the crop in the free range, 0 = top/left, 1 = bottom/right
    crop_x: float = 0.5
    angle: float = 0.0  # degrees, counter-clockwise
    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    hue: float = 0.0
    order: tuple[int, ...] = (0, 1, 2, 3)  # order of the colour operations


def shortest_edge_size(height: int, width: int, size: int) -> tuple[int, int]:
    """(H, W) scaled so that the shorter side is `size`, aspect ratio kept."""
    scale = size / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """float [N, C, H, W] -> [N, C, height, width]. Area averaging when shrinking (like OpenCV's
    INTER_AREA); bilinear when enlarging, where area averaging would degenerate to pixel repeats."""
    h, w = frames.shape[-2:]
    if (h, w) == (height, width):
        return frames
    if height <= h and width <= w:
        return F.interpolate(frames, size=(height, width), mode="area")
    return F.interpolate(frames, size=(height, width), mode="bilinear", align_corners=False)


def _resize_uint8(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """uint8 [N, C, H, W] -> uint8 [N, C, height, width]: `resize` semantics, within ±1 of it.

    Enlarging uses torch's uint8 bilinear kernel (antialias=True, which equals plain bilinear when
    no side shrinks); shrinking is `_area_uint8` (equal to `resize` rounded); a resize that
    enlarges one side and shrinks the other runs `resize` in float, rounded once.
    """
    h, w = frames.shape[-2:]
    if (h, w) == (height, width):
        return frames
    if height >= h and width >= w:
        return F.interpolate(
            frames, size=(height, width), mode="bilinear", align_corners=False, antialias=True
        )
    if height <= h and width <= w:
        nhwc = frames.permute(0, 2, 3, 1).numpy()
        return torch.from_numpy(_area_uint8(nhwc, height, width)).permute(0, 3, 1, 2)
    out = resize(frames.float(), height, width)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def _area_bins(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """Adaptive average pooling's bins [floor(i·size/out), ceil((i+1)·size/out)): the source index of
    tap k of output i (``size``, one past the end, where the bin has fewer taps) and each bin's width."""
    i = np.arange(out)
    start, end = (i * size) // out, -((-(i + 1) * size) // out)
    widths = end - start
    k = np.arange(int(widths.max()))[:, None]
    return np.where(k < widths, start + k, size), widths


def _area_uint8(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 [T, H, W, C] -> uint8 [T, height, width, C] (height <= H, width <= W): area averaging
    (`resize`'s ``mode="area"``, adaptive average pooling) rounded half to even, bit for bit.

    Each bin is summed exactly in integers (rows, then columns, as gathers of whole rows and pixels)
    and divided in float32 first by its height, then by its width: the order torch's pooling kernel
    divides its (equally exact) float sum in.
    """
    t, h, w, c = frames.shape
    rows, row_n = _area_bins(h, height)
    cols, col_n = _area_bins(w, width)
    acc = np.uint16 if int(row_n.max()) * int(col_n.max()) * 255 < 2**16 else np.uint32
    flat = np.ascontiguousarray(frames).reshape(t, h, w * c)
    sums = np.zeros((t, height, w + 1, c), acc)  # a zero column past the end for the missing taps
    row_sums = sums[:, :, :w].reshape(t, height, w * c)  # a view
    gathered = np.empty((t, height, w * c), np.uint8)
    for taps in rows:
        inside = np.flatnonzero(taps < h)
        if len(inside) == height:
            np.take(flat, taps, axis=1, out=gathered)
            row_sums += gathered
        else:
            row_sums[:, inside] += flat[:, taps[inside]]
    out = np.take(sums, cols[0], axis=2)
    part = np.empty_like(out)
    for taps in cols[1:]:
        out += np.take(sums, taps, axis=2, out=part)
    mean = out.astype(np.float32)
    mean /= row_n.astype(np.float32)[:, None, None]
    mean /= col_n.astype(np.float32)[:, None]
    return np.rint(mean, out=mean).astype(np.uint8)


def _colour_is_identity(d: AugmentDraw) -> bool:
    return d.brightness == 1.0 and d.contrast == 1.0 and d.saturation == 1.0 and d.hue == 0.0


def _crop(frames: torch.Tensor, fraction: float, fy: float, fx: float) -> torch.Tensor:
    h, w = frames.shape[-2:]
    ch, cw = max(1, round(h * fraction)), max(1, round(w * fraction))
    top, left = round(fy * (h - ch)), round(fx * (w - cw))
    return frames[..., top : top + ch, left : left + cw]


def _rotate(frames: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate about the centre, bilinear, zeros outside, same size (pixel-aspect correct)."""
    if degrees == 0.0:
        return frames
    n, _, h, w = frames.shape
    a = -math.radians(degrees)  # positive = counter-clockwise on screen (y points down)
    cos, sin = math.cos(a), math.sin(a)
    # grid_sample works in normalised coordinates; rescale so the rotation is isotropic in pixels
    theta = torch.tensor([[cos, sin * h / w, 0.0], [-sin * w / h, cos, 0.0]], dtype=frames.dtype)
    grid = F.affine_grid(theta.expand(n, 2, 3), list(frames.shape), align_corners=False)
    return F.grid_sample(frames, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _gray(x: torch.Tensor) -> torch.Tensor:
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def _shift_hue(x: torch.Tensor, shift: float) -> torch.Tensor:
    """Rotate hue by `shift` turns (x in [0, 1], [N, 3, H, W]) through HSV."""
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    maxc, _ = x.max(dim=1)
    minc, _ = x.min(dim=1)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    hr = ((g - b) / safe) % 6
    hg = (b - r) / safe + 2
    hb = (r - g) / safe + 4
    h = torch.where(maxc == r, hr, torch.where(maxc == g, hg, hb)) / 6
    h = torch.where(delta > 0, h, torch.zeros_like(h))
    s = torch.where(
        maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc)
    )
    v = maxc
    h = (h + shift) % 1.0
    i = torch.floor(h * 6)
    f = h * 6 - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = i.long() % 6
    r2 = torch.stack([v, q, p, p, t, v], 0).gather(0, i[None])[0]
    g2 = torch.stack([t, v, v, q, p, p], 0).gather(0, i[None])[0]
    b2 = torch.stack([p, p, t, v, v, q], 0).gather(0, i[None])[0]
    return torch.stack([r2, g2, b2], 1)


def _colour(x: torch.Tensor, d: AugmentDraw) -> torch.Tensor:
    """x float in [0, 1], [N, 3, H, W]."""
    for op in d.order:
        if op == 0 and d.brightness != 1.0:
            x = (x * d.brightness).clamp(0, 1)
        elif op == 1 and d.contrast != 1.0:
            mean = _gray(x).mean(dim=(1, 2, 3), keepdim=True)
            x = ((x - mean) * d.contrast + mean).clamp(0, 1)
        elif op == 2 and d.saturation != 1.0:
            g = _gray(x)
            x = ((x - g) * d.saturation + g).clamp(0, 1)
        elif op == 3 and d.hue != 0.0:
            x = _shift_hue(x, d.hue)
    return x


class ImageTransform:
    """Train (`train=True`) or eval transform for a dict view -> uint8 [T, H, W, 3]."""

    def __init__(self, config: ImageTransformConfig | None = None, train: bool = True):
        self.config = config or ImageTransformConfig()
        self.train = train

    def draw(self, rng: np.random.Generator | int | None) -> AugmentDraw:
        """The random choices for one sample (fixed centre crop, no augmentation in eval)."""
        c = self.config
        if not self.train:
            return AugmentDraw()
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)

        def factor(s: float) -> float:
            return float(rng.uniform(max(0.0, 1 - s), 1 + s)) if s > 0 else 1.0

        return AugmentDraw(
            crop_y=float(rng.uniform()),
            crop_x=float(rng.uniform()),
            angle=float(rng.uniform(-c.rotation_degrees, c.rotation_degrees))
            if c.rotation_degrees > 0
            else 0.0,
            brightness=factor(c.brightness),
            contrast=factor(c.contrast),
            saturation=factor(c.saturation),
            hue=float(rng.uniform(-c.hue, c.hue)) if c.hue > 0 else 0.0,
            order=tuple(int(i) for i in rng.permutation(4)),
        )

    def apply(
        self, frames: np.ndarray, draw: AugmentDraw, view: str = "image", exact: bool = False
    ) -> np.ndarray:
        """uint8 [T, H, W, 3] -> uint8 [T, H', W', 3] with the given draw.

        ``exact=True`` forces the all-float path (no intermediate rounding); otherwise draws without
        rotation or colour jitter take the uint8 path, within ±1 or ±2 of it (module docstring).
        """
        arr = np.asarray(frames)
        if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
            raise ValueError(f"view {view!r}: expected uint8 [T, H, W, 3], got {arr.dtype} {arr.shape}")
        if not exact and draw.angle == 0.0 and _colour_is_identity(draw):
            return self._apply_uint8(arr, draw)
        c = self.config
        x = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float()
        x = resize(x, *shortest_edge_size(*x.shape[-2:], c.size))
        x = _crop(x, c.crop_fraction, draw.crop_y, draw.crop_x)
        x = resize(x, *shortest_edge_size(*x.shape[-2:], c.size))
        x = _rotate(x, draw.angle)
        x = _colour(x / 255.0, draw) * 255.0
        return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()

    def _apply_uint8(self, arr: np.ndarray, draw: AugmentDraw) -> np.ndarray:
        c = self.config
        x = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2)  # channels-last view
        x = _resize_uint8(x, *shortest_edge_size(*x.shape[-2:], c.size))
        x = _crop(x, c.crop_fraction, draw.crop_y, draw.crop_x)
        x = _resize_uint8(x, *shortest_edge_size(*x.shape[-2:], c.size))
        out = x.permute(0, 2, 3, 1)
        return out.numpy() if out.is_contiguous() else np.ascontiguousarray(out.numpy())

    def __call__(
        self, videos: Mapping[str, np.ndarray], rng: np.random.Generator | int | None = None
    ) -> dict[str, np.ndarray]:
        """Transform every view of one sample with a single random draw."""
        d = self.draw(rng)
        return {view: self.apply(frames, d, view) for view, frames in videos.items()}
