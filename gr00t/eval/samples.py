"""A recorded dataset sample as the policy observation a robot would send (open-loop replays)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def observation_from_sample(sample: Mapping[str, Any], language_key: str) -> dict[str, Any]:
    """A batched (B = 1) policy observation from a raw dataset sample (every language channel the
    sample carries, or its one instruction under `language_key`)."""
    text = sample["language"]
    channels = dict(text) if isinstance(text, Mapping) else {language_key: text}
    return {
        "video": {k: np.ascontiguousarray(v)[None] for k, v in sample["video"].items()},
        "state": {k: np.asarray(v, dtype=np.float32)[None] for k, v in sample["state"].items()},
        "language": {key: [[str(value)]] for key, value in channels.items()},
    }


def sample_task(sample: Mapping[str, Any]) -> str:
    """The sample's instruction for display (the first channel's text when it carries several)."""
    text = sample["language"]
    return str(next(iter(text.values()), "") if isinstance(text, Mapping) else text)
