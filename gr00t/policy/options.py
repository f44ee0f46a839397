"""The ``options`` of a policy call, checked once: ``seed``, ``denoising_steps`` and ``rtc``.

``seed`` (int) fixes the initial noise, ``denoising_steps`` (int >= 1) the Euler steps, ``rtc``
(real-time chunking) continues a previous chunk: ``{"prev_actions": {key: [B, H_prev, D]} absolute
(flat ``"action.<key>"`` keys too), or normalised [B, H_prev, max_action_dim], "frozen_steps": int,
"overlap_steps": int, "mode": "guidance" | "prefix" (optional)}``. Absolute chunks are encoded like
training targets (relative to the observed state where the embodiment says so). Without ``mode``,
a model trained with ``rtc_training_max_delay > 0`` uses ``"prefix"`` (the executed steps given as
clean actions, as in its training), any other model ``"guidance"`` (`gr00t.model.rtc`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gr00t.data.state_action import StateActionProcessor
from gr00t.model.rtc import RTC_MODES, RealTimeChunking
from gr00t.policy.observation import Observation

OPTION_KEYS = ("seed", "denoising_steps", "rtc")
RTC_KEYS = ("prev_actions", "frozen_steps", "overlap_steps")


@dataclass
class CallOptions:
    """Checked options of one `get_action` call (None: the policy's default)."""

    seed: int | None = None
    denoising_steps: int | None = None
    rtc: Mapping[str, Any] | None = None


def parse_options(options: Any) -> CallOptions:
    """Check ``options`` (a mapping or None); unknown keys and non-integers raise ValueError."""
    if options is None:
        return CallOptions()
    if not isinstance(options, Mapping):
        raise ValueError(f"options must be a mapping or None, got {type(options).__name__}")
    unknown = sorted(set(options) - set(OPTION_KEYS))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown}; supported: {list(OPTION_KEYS)}")
    opts = {k: v for k, v in options.items() if v is not None}
    for key in ("seed", "denoising_steps"):
        value = opts.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))):
            raise ValueError(f"option {key!r} must be an integer, got {value!r}")
    if "denoising_steps" in opts and int(opts["denoising_steps"]) < 1:
        raise ValueError(f"option 'denoising_steps' must be >= 1, got {opts['denoising_steps']}")
    rtc = opts.get("rtc")
    if rtc is not None:
        if not isinstance(rtc, Mapping):
            raise ValueError(f"option 'rtc' must be a mapping, got {type(rtc).__name__}")
        missing = sorted(set(RTC_KEYS) - set(rtc))
        if missing:
            raise ValueError(f"option 'rtc' is missing {missing}")
        mode = rtc.get("mode")
        if mode is not None and mode not in RTC_MODES:
            raise ValueError(f"option 'rtc.mode' must be one of {list(RTC_MODES)}, got {mode!r}")
    return CallOptions(
        seed=None if "seed" not in opts else int(opts["seed"]),
        denoising_steps=None if "denoising_steps" not in opts else int(opts["denoising_steps"]),
        rtc=rtc,
    )


def real_time_chunking(
    rtc: Mapping[str, Any], observation: Observation, state_action: StateActionProcessor, device: torch.device
) -> RealTimeChunking:
    """The model's `RealTimeChunking` for a checked ``rtc`` option (see the module docstring)."""
    prev = rtc["prev_actions"]
    if isinstance(prev, Mapping):
        prev = _encode_prev_actions(prev, observation, state_action)
    prev_arr = np.asarray(prev, dtype=np.float32)
    if not observation.batched and prev_arr.ndim == 2:
        prev_arr = prev_arr[None]
    return RealTimeChunking(
        prev_actions=torch.from_numpy(prev_arr).to(device),
        frozen_steps=int(rtc["frozen_steps"]),
        overlap_steps=int(rtc["overlap_steps"]),
        mode=rtc.get("mode"),
    )


def _encode_prev_actions(
    prev: Mapping[str, Any], observation: Observation, state_action: StateActionProcessor
) -> np.ndarray:
    """Absolute per-key chunk [B, H_prev, D] -> normalised [B, H_prev, max_action_dim]."""
    horizon = state_action.action_horizon
    padded = {}
    lengths = set()
    for key in state_action.embodiment.action.keys:
        name = f"action.{key}" if observation.flat and f"action.{key}" in prev else key
        if name not in prev:
            raise ValueError(f"rtc prev_actions is missing action key {key!r}; got {sorted(prev)}")
        arr = np.asarray(prev[name], dtype=np.float32)
        if not observation.batched:
            arr = arr[None]
        if arr.ndim != 3 or not 1 <= arr.shape[1] <= horizon:
            raise ValueError(f"rtc prev_actions[{key!r}]: expected [B, 1..{horizon}, D], got {arr.shape}")
        lengths.add(arr.shape[1])
        reps = horizon - arr.shape[1]
        padded[key] = np.concatenate([arr, np.repeat(arr[:, -1:], reps, axis=1)], axis=1) if reps else arr
    if len(lengths) != 1:
        raise ValueError(f"rtc prev_actions keys have different lengths {sorted(lengths)}")
    encoded, _ = state_action.encode_action(padded, observation.state)
    return encoded[:, : lengths.pop()]
