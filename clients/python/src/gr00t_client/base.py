"""The `Policy` protocol: what a local `Gr00tPolicy` and a remote `PolicyClient` both offer.

Code that drives a robot or evaluates a policy takes a `Policy` and never needs to know where the
model runs. This module imports only the standard library and numpy, so a robot computer without
torch can use it. `gr00t.policy.base` re-exports it.

Observation (batched; every array has the batch axis ``B`` first)::

    {"video":    {view: uint8 [B, T_v, H, W, 3]},      # T_v = len(video delta_indices), RGB
     "state":    {key: float32 [B, T_s, D_key]},       # T_s = len(state delta_indices)
     "language": {language_key: [[instruction], ...]}} # B lists of one string

or unbatched (no ``B`` axis; the language a ``str`` or ``[str]``), answered without ``B`` too.
The view, state and language keys are the embodiment's (`get_modality_config` lists them).

Answer: ``{action_key: float32 [B, horizon, D_key]}``, absolute actions in the dataset's units.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Policy(Protocol):
    """Observation in, absolute action chunk out (layouts in the module docstring)."""

    def get_action(
        self, observation: Mapping[str, Any], options: Mapping[str, Any] | None = None
    ) -> dict[str, np.ndarray]:
        """``{action_key: float32 [B, horizon, D]}`` (no B axis for an unbatched observation).

        ``options``: ``seed`` (int, fixes the noise), ``denoising_steps`` (int), ``rtc`` (real-time
        chunking: ``{"prev_actions": {key: [B, H_prev, D]}, "frozen_steps": int, "overlap_steps": int}``).
        """
        ...

    def reset(self, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Start a new episode; returns an info dict."""
        ...

    def get_modality_config(self) -> dict[str, dict[str, Any]]:
        """``{modality: {"delta_indices": [...], "modality_keys": [...], ...}}`` as plain data."""
        ...


__all__ = ["Policy"]
