"""Names of the action dimensions: the dataset's joint names where `meta/info.json` has them.

LeRobot lists a vector feature's element names under ``features[<column>]["names"]``: a list
(``["shoulder_pan", ...]``), a dict of lists (``{"motors": [...]}``; several lists are
concatenated in order), or nested lists. `meta/modality.json` cuts each action key out of a column
with ``start``/``end``, so the key's names are the same slice. Where a column has no usable names
(absent, ``null``, wrong count, not strings), the key's dimensions are called ``key[d]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def feature_names(feature: Mapping[str, Any]) -> list[str] | None:
    """The per-element names of one info.json feature, or None if it has no usable list of them."""
    width = int(np.prod(feature.get("shape") or [1]))
    flat: list[Any] = []

    def collect(node: Any) -> None:
        if isinstance(node, Mapping):
            for value in node.values():
                collect(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                collect(value)
        else:
            flat.append(node)

    collect(feature.get("names"))
    if len(flat) != width or not all(isinstance(n, str) and n.strip() for n in flat):
        return None
    return [n.strip() for n in flat]


def action_dim_names(features: Mapping[str, Any], modality: Any) -> dict[str, list[str]]:
    """``{action_key: [name per dimension]}`` for every action key of a parsed `Modality`."""
    out: dict[str, list[str]] = {}
    for key, piece in modality.action.items():
        names = feature_names(features.get(piece.original_key) or {})
        if names is not None and piece.end <= len(names):
            out[key] = names[piece.start : piece.end]
        else:
            out[key] = [f"{key}[{d}]" for d in range(piece.width)]
    return out


def dataset_dim_names(dataset: Any) -> dict[str, list[str]]:
    """Action dimension names of a `Gr00tDataset` (its reader's info.json and its modality.json)."""
    return action_dim_names(dataset.reader.features, dataset.modality)
