"""The `Policy` protocol: what a local `Gr00tPolicy` and a remote `PolicyClient` both offer.

Code that drives a robot or evaluates a policy takes a `Policy` and never needs to know where the
model runs. This module imports only the standard library and numpy, so a robot computer without
torch can use it (with `gr00t.policy.client`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Policy(Protocol):
    """Observation in, absolute action chunk out (see `gr00t.policy.observation` for the layout)."""

    def get_action(
        self, observation: Mapping[str, Any], options: Mapping[str, Any] | None = None
    ) -> dict[str, np.ndarray]:
        """``{action_key: float32 [B, horizon, D]}`` (no B axis for an unbatched observation).

        ``options``: ``seed``, ``denoising_steps``, ``rtc`` (see `gr00t.policy.options`).
        """
        ...

    def reset(self, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Start a new episode; returns an info dict."""
        ...

    def get_modality_config(self) -> dict[str, dict[str, Any]]:
        """``{modality: {"delta_indices": [...], "modality_keys": [...], ...}}`` as plain data."""
        ...


__all__ = ["Policy"]
