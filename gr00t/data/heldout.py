"""Episodes held out of training (recipe key ``val_episodes``) and their record in a checkpoint.

``val_episodes`` is null (nothing held out), a count (``2``), a fraction (``0.1``) or a list of
episode indices (``[3,7]``). A count or fraction is drawn for each dataset of the mixture with the
run's seed by the rule of ``gr00t-dataset split val=`` (a seeded permutation of the episode list,
its first ``count`` entries, sorted), so ``gr00t-dataset split <dir> val=2 seed=<seed>`` holds out
the same episodes; at least one episode always stays for training. A list names episodes of a
single-dataset run.

Every checkpoint records the choice in ``heldout_episodes.json``::

    {"format": 1, "seed": 42, "val_episodes": 2,
     "datasets": [{"path": "/abs/dataset", "name": "dataset", "embodiment": "new_embodiment",
                   "episodes": [3, 7]}]}

`gr00t-eval` evaluates those episodes by default (`episodes_for`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

HELDOUT_FILE = "heldout_episodes.json"
FORMAT = 1


class HeldoutError(ValueError):
    """``val_episodes`` cannot be applied to the data (the message names the key and the value)."""


def episode_count(spec: Any, n: int, key: str, where: str, error: type[Exception], expected: str) -> int:
    """How many of ``n`` episodes ``key=spec`` holds out: a fraction in (0, 1) (rounded, at least 1 and
    at most n − 1) or a count in 1..n − 1; anything else raises ``error`` naming ``key`` and ``where``.
    The one rule of `val_episodes=` and `gr00t-dataset split val=`."""
    text = str(spec).strip()
    try:
        number = float(text)
    except ValueError:
        raise error(f"{key}={spec!r}: expected {expected}") from None
    if any(c in text for c in ".eE"):
        if not 0.0 < number < 1.0:
            raise error(f"{key}={spec}: a fraction must lie strictly between 0 and 1")
        return int(np.clip(round(number * n), 1, n - 1))
    if not 1 <= int(number) <= n - 1:
        raise error(f"{key}={spec}: {where} has {n} episodes, so a count must be 1..{n - 1}")
    return int(number)


def draw_episodes(episodes: Sequence[int], count: int, seed: int) -> list[int]:
    """``count`` of ``episodes`` drawn with ``seed``, sorted."""
    order = np.random.default_rng(seed).permutation(len(episodes))
    return sorted(episodes[i] for i in order[:count])


def choose_heldout(episodes: Sequence[int], spec: Any, seed: int, where: str) -> list[int]:
    """The held-out episodes of one dataset (``where`` names it in errors); [] when ``spec`` is null."""
    episodes = list(episodes)
    if spec is None:
        return []
    if isinstance(spec, (list, tuple)):
        chosen = sorted({int(e) for e in spec})
        unknown = sorted(set(chosen) - set(episodes))
        if unknown:
            raise HeldoutError(f"val_episodes={list(spec)}: {where} has no episode(s) {unknown}")
        if len(chosen) >= len(episodes):
            raise HeldoutError(f"val_episodes={list(spec)}: no episode of {where} would be left for training")
        return chosen
    if len(episodes) < 2:
        raise HeldoutError(
            f"val_episodes={spec}: {where} has {len(episodes)} episode(s), nothing to hold out"
        )
    expected = "an episode count (2), a fraction (0.1) or a list of episodes ([3,7])"
    count = episode_count(spec, len(episodes), "val_episodes", where, HeldoutError, expected)
    return draw_episodes(episodes, count, seed)


def heldout_record(
    seed: int, spec: Any, entries: Sequence[tuple[Path, str, Sequence[int]]]
) -> dict[str, Any]:
    """The ``heldout_episodes.json`` content for (dataset path, embodiment tag, held-out episodes) entries."""
    return {
        "format": FORMAT,
        "seed": int(seed),
        "val_episodes": list(spec) if isinstance(spec, (list, tuple)) else spec,
        "datasets": [
            {
                "path": str(Path(p).resolve()),
                "name": Path(p).name,
                "embodiment": tag,
                "episodes": list(map(int, eps)),
            }
            for p, tag, eps in entries
        ],
    }


def read_heldout(checkpoint: str | Path) -> dict[str, Any] | None:
    """A checkpoint's record (None when it held nothing out)."""
    path = Path(checkpoint) / HELDOUT_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        datasets = record["datasets"]
        assert isinstance(datasets, list) and all(isinstance(d["episodes"], list) for d in datasets)
    except (json.JSONDecodeError, KeyError, TypeError, AssertionError) as exc:
        raise HeldoutError(
            f"{path}: expected {{'datasets': [{{'path', 'episodes': [...]}}]}} ({exc!r})"
        ) from None
    return record


def episodes_for(record: dict[str, Any] | None, dataset: str | Path) -> list[int] | None:
    """The episodes of ``dataset`` the record held out: matched by resolved path, else by folder name
    when that is unambiguous; None when the record does not mention the dataset."""
    if not record:
        return None
    target = Path(dataset).resolve()
    entries = record.get("datasets", [])
    for entry in entries:
        if Path(entry["path"]) == target:
            return list(entry["episodes"])
    by_name = [e for e in entries if e.get("name") == target.name]
    if len(by_name) == 1:
        logger.info(
            "%s: held-out episodes of the training dataset %s (same folder name)", target, by_name[0]["path"]
        )
        return list(by_name[0]["episodes"])
    return None


__all__ = [
    "HELDOUT_FILE",
    "HeldoutError",
    "choose_heldout",
    "episodes_for",
    "heldout_record",
    "read_heldout",
]
