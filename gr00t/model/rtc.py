"""Real-time chunking (RTC): a new action chunk continues the one the robot is still executing.

An asynchronous controller asks for chunk n+1 while chunk n runs; by the time the answer arrives,
the first ``frozen_steps`` actions of the new chunk's time span are already executed (they are
chunk n's). Two inference modes condition the new chunk on them:

* ``"guidance"`` (inference-time RTC, any model): every Euler step blends the model velocity with
  the velocity that lands on the previous chunk, with weight 1 on the frozen steps and an
  exponential ramp over the next ``overlap_steps`` (see `RealTimeChunking`).
* ``"prefix"`` (training-time RTC, models trained with ``rtc_training_max_delay`` = k > 0): the
  frozen steps are given to the network as clean actions at t = 1 in every Euler step, as in
  training, and the output keeps them exactly; ``overlap_steps`` is not used. Needs
  ``frozen_steps <= k``.

What "t = 1 for the prefix" means in this network: the flow time enters the head in two places,
the action encoder (one sinusoid per action token, concatenated to that token's features) and the
DiT's AdaLN modulation (one vector per sample, shared by all tokens — including the state token,
which is clean context already). A prefix step gets ``x = a`` (the executed action) and the t = 1
bucket ``τ = num_timestep_buckets`` in the action encoder; the AdaLN keeps the sample's flow time,
i.e. it stays "how far the chunk being generated is", while each token says through its own
timestep code whether it is a given action or a noisy one. This leaves the trunk as released
(no per-token AdaLN), costs nothing, and keeps a model trained without RTC bit-exact.

Which inference mode goes with which training: a model trained with ``rtc_training_max_delay = 0``
(the default, and every released checkpoint) serves ``"guidance"``; a model trained with k > 0
serves ``"prefix"`` for ``frozen_steps <= k`` (the default mode for such a model) and can still
use ``"guidance"``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

RTC_MODES = ("guidance", "prefix")


@dataclass
class RealTimeChunking:
    """The previous chunk and how the new one continues it.

    `prev_actions [B, H_prev, A]` (normalised space) is the previous chunk already shifted so that
    `prev_actions[:, j]` is the action planned for step j of the new chunk (H_prev ≤ H). `mode`
    is ``"guidance"``, ``"prefix"`` or None (the model's default: ``"prefix"`` when it was trained
    with ``rtc_training_max_delay > 0``, else ``"guidance"``).

    Guidance mode: per step j the weight is

        w_j = 1                              for j < frozen_steps
        w_j = c·(e^c − 1)/(e − 1),  c = 1 − (j − frozen_steps + 1)/(overlap_steps + 1)
                                             for frozen_steps ≤ j < frozen_steps + overlap_steps
        w_j = 0                              otherwise

    (an exponential ramp from ≈1 down to ≈0; missing steps get weight 0). Each Euler step at time
    t uses the velocity

        v' = (1 − w)·v(x, τ) + w·(prev − x)/(1 − t)

    i.e. the model velocity is scaled by (1 − w) and blended with the velocity that reaches `prev`
    exactly at t = 1. Frozen steps (w = 1) therefore end exactly on `prev`; steps past the overlap
    follow the model alone (they still see the guided steps through attention).

    Prefix mode: steps j < frozen_steps are `prev` itself, given as clean actions at t = 1 in every
    Euler step (as in training with ``rtc_training_max_delay``); the others follow the model.
    """

    prev_actions: torch.Tensor
    frozen_steps: int
    overlap_steps: int = 0
    mode: str | None = None

    @classmethod
    def from_any(cls, value: RealTimeChunking | Mapping[str, Any]) -> RealTimeChunking:
        """Accept an instance or a mapping with keys prev_actions, frozen_steps, overlap_steps
        (and optionally mode)."""
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            missing = {"prev_actions", "frozen_steps", "overlap_steps"} - set(value)
            if missing:
                raise ValueError(f"rtc options are missing key(s) {sorted(missing)}; got {sorted(value)}")
            return cls(
                prev_actions=torch.as_tensor(value["prev_actions"]),
                frozen_steps=int(value["frozen_steps"]),
                overlap_steps=int(value["overlap_steps"]),
                mode=value.get("mode"),
            )
        raise TypeError(f"rtc must be a RealTimeChunking or a mapping, got {type(value).__name__}")

    def resolved_mode(self, training_max_delay: int) -> str:
        """The mode to run: `mode`, or the default for a model trained with `training_max_delay`."""
        if self.mode is None:
            return "prefix" if training_max_delay > 0 else "guidance"
        if self.mode not in RTC_MODES:
            raise ValueError(f"rtc mode={self.mode!r}: expected one of {list(RTC_MODES)}")
        return self.mode

    def weights(self, horizon: int, device: torch.device) -> torch.Tensor:
        """Guidance weight per step of the new chunk, float32 `[horizon]`."""
        if self.frozen_steps < 0 or self.overlap_steps < 0:
            raise ValueError(
                f"rtc frozen_steps={self.frozen_steps}, overlap_steps={self.overlap_steps}: expected >= 0"
            )
        j = torch.arange(horizon, dtype=torch.float32, device=device)
        c = 1.0 - (j - self.frozen_steps + 1) / (self.overlap_steps + 1)
        ramp = c * torch.expm1(c) / math.expm1(1.0)
        w = torch.where(j < self.frozen_steps, torch.ones_like(j), ramp)
        w = torch.where(j >= self.frozen_steps + self.overlap_steps, torch.zeros_like(j), w)
        w[self.prev_actions.shape[1] :] = 0.0
        return w

    def check_prefix(self, horizon: int, training_max_delay: int) -> None:
        """Prefix mode's limits: a model trained with RTC, ``frozen_steps <= rtc_training_max_delay``,
        and as many previous steps as frozen ones."""
        d = self.frozen_steps
        if training_max_delay <= 0:
            raise ValueError(
                "rtc mode='prefix' needs a model trained with model.rtc_training_max_delay > 0; "
                "this one was not (use mode='guidance')"
            )
        if not 0 <= d <= training_max_delay:
            raise ValueError(
                f"rtc frozen_steps={d}: prefix mode takes 0..{training_max_delay} "
                f"(the model's rtc_training_max_delay); use mode='guidance' for longer prefixes"
            )
        if d > self.prev_actions.shape[1] or d >= horizon:
            raise ValueError(
                f"rtc frozen_steps={d}: prev_actions has {self.prev_actions.shape[1]} steps and the "
                f"chunk {horizon}; expected frozen_steps <= both and < {horizon}"
            )


def sample_delays(batch_size: int, max_delay: int, device: torch.device) -> torch.Tensor:
    """Training delays d ~ U{0 … max_delay} per sample, long `[B]`, from the global torch RNG (the
    stream the flow noise comes from, saved with every checkpoint, so a resumed run draws the same)."""
    return torch.randint(0, max_delay + 1, (batch_size,), device=device)


def prefix_mask(delays: torch.Tensor, horizon: int) -> torch.Tensor:
    """bool `[B, horizon]`: True on the executed prefix steps j < d of each sample."""
    return torch.arange(horizon, device=delays.device)[None, :] < delays[:, None]


__all__ = ["RTC_MODES", "RealTimeChunking", "prefix_mask", "sample_delays"]
