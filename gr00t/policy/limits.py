"""Bounds on what one request may cost the policy server, checked before any image work.

The server decodes a request (msgpack, arrays parsed without unpickling) and then, before the
policy sees it, `RequestLimits.check_get_action` looks at shapes and option values only: no pixel
is touched, so a hostile request is answered with ``{"error": ...}`` in about a millisecond.

What is bounded (defaults in brackets; ``gr00t-serve <key>=<value>`` changes them):

* ``max_batch_size`` [64] — the leading B axis of batched arrays and the number of instructions;
* ``max_frames`` [16] — frames per camera view (T of ``[B, T, H, W, C]``);
* ``max_image_pixels`` [4 194 304, 2048²] — H x W of one frame;
* ``max_aspect_ratio`` [8] — longer side / shorter side of a frame. The processor scales the shorter
  side to its image size, so a 1 x 65 536 frame would become 256 x 16.8 M pixels;
* ``max_request_pixels`` [16 777 216] — all frames of all views and rows together;
* ``max_channels`` [4] — C of a frame;
* ``max_array_values`` [1 048 576] — elements of any other array (state, RTC actions);
* ``max_instruction_chars`` [4096] — characters of one language instruction;
* ``max_denoising_steps`` [64] — ``options.denoising_steps`` (each step runs the DiT once);
* ``max_rtc_steps`` [1024] — ``options.rtc.frozen_steps`` / ``overlap_steps`` and the length of
  ``prev_actions``;
* ``max_keys`` [256] — entries of one mapping of the observation.

Everything else (which keys, dtypes, exact widths) is the policy's business; these limits only
make sure that what reaches it is cheap to reject or cheap to serve.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

_LIST_TYPES = (list, tuple)


class RequestRejected(ValueError):
    """A request exceeds the server's limits; the message names the entry, the value and the limit."""


@dataclass(frozen=True)
class RequestLimits:
    """Per-request bounds of the policy server (see the module docstring)."""

    max_batch_size: int = 64
    max_frames: int = 16
    max_image_pixels: int = 2048 * 2048
    max_aspect_ratio: float = 8.0
    max_request_pixels: int = 16 * 1024 * 1024
    max_channels: int = 4
    max_array_values: int = 1024 * 1024
    max_instruction_chars: int = 4096
    max_denoising_steps: int = 64
    max_rtc_steps: int = 1024
    max_keys: int = 256

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 1:
                raise ValueError(f"{f.name}={value!r}: expected a number >= 1")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RequestLimits:
        """Limits from any mapping; keys that are not limit names are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names and v is not None})

    # ---- checks ----------------------------------------------------------------------------------

    def check_get_action(self, observation: Any, options: Any) -> None:
        """Raise `RequestRejected` when a ``get_action`` request would cost more than allowed."""
        if isinstance(observation, Mapping):
            self._check_observation(observation)
        if isinstance(options, Mapping):
            self._check_options(options)

    def _reject(self, where: str, what: str, limit: str) -> None:
        raise RequestRejected(
            f"request exceeds the server's limits: {where}: {what} > {limit}={_number(getattr(self, limit))} "
            "(gr00t-serve setting)"
        )

    def _check_observation(self, observation: Mapping[Any, Any]) -> None:
        pixels = 0
        for where, value, is_video in _entries(observation, self):
            if isinstance(value, np.ndarray):
                pixels += self._check_array(where, value, is_video)
                if pixels > self.max_request_pixels:
                    self._reject("observation", f"{pixels} pixels in all frames", "max_request_pixels")
            elif isinstance(value, str):
                if len(value) > self.max_instruction_chars:
                    self._reject(where, f"an instruction of {len(value)} characters", "max_instruction_chars")
            elif isinstance(value, _LIST_TYPES) and len(value) > self.max_batch_size:
                self._reject(where, f"a list of {len(value)} entries", "max_batch_size")

    def _check_array(self, where: str, array: np.ndarray, is_video: bool) -> int:
        """Check one array; returns the pixels it adds (0 for non-video arrays)."""
        shape = array.shape
        if not is_video or array.ndim < 3:
            if array.size > self.max_array_values:
                self._reject(
                    where, f"an array of shape {list(shape)} ({array.size} values)", "max_array_values"
                )
            if array.ndim >= 3 and shape[0] > self.max_batch_size:
                self._reject(where, f"batch size {shape[0]} (shape {list(shape)})", "max_batch_size")
            return 0
        height, width, channels = shape[-3:]
        frames = int(np.prod(shape[:-3], dtype=np.int64)) if array.ndim > 3 else 1
        if array.ndim >= 5 and shape[0] > self.max_batch_size:
            self._reject(where, f"batch size {shape[0]} (shape {list(shape)})", "max_batch_size")
        if array.ndim >= 4 and shape[-4] > self.max_frames:
            self._reject(where, f"{shape[-4]} frames (shape {list(shape)})", "max_frames")
        if channels > self.max_channels:
            self._reject(where, f"{channels} channels (shape {list(shape)})", "max_channels")
        if height * width > self.max_image_pixels:
            self._reject(where, f"frames of {height}x{width} = {height * width} pixels", "max_image_pixels")
        if min(height, width) == 0 or max(height, width) / min(height, width) > self.max_aspect_ratio:
            ratio = (
                "an empty side" if min(height, width) == 0 else f"{max(height, width) / min(height, width):g}"
            )
            self._reject(where, f"frames of {height}x{width}, aspect ratio {ratio}", "max_aspect_ratio")
        return frames * height * width

    def _check_options(self, options: Mapping[Any, Any]) -> None:
        steps = options.get("denoising_steps")
        if _is_int(steps) and steps > self.max_denoising_steps:
            self._reject("options.denoising_steps", str(steps), "max_denoising_steps")
        rtc = options.get("rtc")
        if not isinstance(rtc, Mapping):
            return
        for key in ("frozen_steps", "overlap_steps"):
            value = rtc.get(key)
            if _is_int(value) and not 0 <= value <= self.max_rtc_steps:
                self._reject(f"options.rtc.{key}", str(value), "max_rtc_steps")
        prev = rtc.get("prev_actions")
        arrays = prev.items() if isinstance(prev, Mapping) else [("", prev)]
        if isinstance(prev, Mapping) and len(prev) > self.max_keys:
            self._reject("options.rtc.prev_actions", f"{len(prev)} keys", "max_keys")
        for key, value in arrays:
            where = f"options.rtc.prev_actions{f'[{key!r}]' if key else ''}"
            if isinstance(value, np.ndarray):
                if value.size > self.max_array_values:
                    self._reject(where, f"an array of {value.size} values", "max_array_values")
                if value.ndim >= 2 and value.shape[-2] > self.max_rtc_steps:
                    self._reject(
                        where, f"{value.shape[-2]} steps (shape {list(value.shape)})", "max_rtc_steps"
                    )
            elif isinstance(value, _LIST_TYPES) and len(value) > self.max_batch_size:
                self._reject(where, f"a list of {len(value)} entries", "max_batch_size")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _entries(observation: Mapping[Any, Any], limits: RequestLimits) -> Iterator[tuple[str, Any, bool]]:
    """(where, value, is_video) for the values of a nested or flat observation, two levels deep.

    Video entries are those under ``"video"`` (nested layout) or keys ``"video.<view>"`` (flat).
    Language lists are walked one level further (``[[str], ...]``).
    """
    if len(observation) > limits.max_keys:
        limits._reject("observation", f"{len(observation)} keys", "max_keys")
    for key, value in observation.items():
        name = str(key)
        if isinstance(value, Mapping):
            if len(value) > limits.max_keys:
                limits._reject(f"observation[{name!r}]", f"{len(value)} keys", "max_keys")
            for sub, item in value.items():
                yield from _leaf(f"{name}[{str(sub)!r}]", item, name == "video")
        else:
            yield from _leaf(name, value, name.startswith("video."))


def _leaf(where: str, value: Any, is_video: bool) -> Iterator[tuple[str, Any, bool]]:
    yield where, value, is_video
    if isinstance(value, _LIST_TYPES):
        for i, item in enumerate(value):
            if isinstance(item, str):
                yield f"{where}[{i}]", item, False
            elif isinstance(item, _LIST_TYPES):
                for text in item:
                    if isinstance(text, str):
                        yield f"{where}[{i}]", text, False


__all__ = ["RequestLimits", "RequestRejected"]
