"""Validation of a dataset's statistics files against an embodiment (used by `gr00t.data.stats`).

Every statistic of `meta/stats.json` must be a finite vector as wide as its column (the feature
shape in `meta/info.json`; without one, at least as wide as the `meta/modality.json` slices reach);
every statistic of `meta/relative_stats.json` a finite [horizon, group width] array computed with
the embodiment's horizon, delta indices and relative-action semantics. `check_stats` sorts what it
finds into `missing` (absent: may be computed and added) and `problems` (present but wrong: an
error unless the user asks to recompute), each one line naming the file, key and both shapes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gr00t.data.embodiment import EmbodimentConfig, load_embodiment
from gr00t.data.stats_compute import STAT_KEYS, GroupSlice, StatsError, group_slices, relative_signature

STATS_FILE = "meta/stats.json"
RELATIVE_STATS_FILE = "meta/relative_stats.json"


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise StatsError(f"{path}: not valid JSON: {exc}") from exc


# ---- validation -----------------------------------------------------------------------------------


@dataclass
class StatsCheck:
    """What `check_stats` found: absent statistics (computed and added) and wrong ones (errors)."""

    missing: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.problems


def column_widths(
    root: Path, slices: Mapping[str, Mapping[str, GroupSlice]]
) -> dict[str, tuple[int, bool, str]]:
    """Per sliced column: (width, exact, source). Exact from meta/info.json's feature shape; else the
    widest modality.json slice end, a lower bound."""
    info_path = root / "meta" / "info.json"
    try:
        features = json.loads(info_path.read_text()).get("features") or {}
    except (OSError, ValueError, AttributeError):
        features = {}
    out: dict[str, tuple[int, bool, str]] = {}
    for groups in slices.values():
        for sl in groups.values():
            feature = features.get(sl.column) if isinstance(features, dict) else None
            shape = feature.get("shape") if isinstance(feature, dict) else None
            if isinstance(shape, list) and len(shape) == 1 and isinstance(shape[0], int):
                out[sl.column] = (shape[0], True, f"the width of {sl.column!r} in {info_path}")
            elif not out.get(sl.column, (0, False))[1]:
                width = max(sl.end, out.get(sl.column, (0, False, ""))[0])
                out[sl.column] = (width, False, f"modality.json slices of {sl.column!r} reach {width}")
    return out


def _array_problem(value: Any, want: tuple[int, ...], exact: bool, where: str, source: str) -> str | None:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return f"{where} is not an array of numbers: {str(value)[:60]}"
    if exact and arr.shape != want:
        return f"{where} has shape {list(arr.shape)}, expected {list(want)} ({source})"
    if not exact and (arr.ndim != len(want) or arr.shape[-1] < want[-1]):
        return f"{where} has shape {list(arr.shape)}, expected [D] with D >= {want[-1]} ({source})"
    if not np.all(np.isfinite(arr)):
        return f"{where} holds NaN or infinity"
    return None


def _check_entry(
    entry: Any, where: str, want: tuple[int, ...], exact: bool, source: str, report: StatsCheck
) -> None:
    if not isinstance(entry, dict):
        report.problems.append(f"{where} is a {type(entry).__name__}, expected a mapping of statistics")
        return
    absent = [k for k in STAT_KEYS if k not in entry]
    if absent:
        report.missing.append(f"{where} lacks {absent}")
    for k in STAT_KEYS:
        problem = _array_problem(entry[k], want, exact, f"{where} {k!r}", source) if k in entry else None
        if problem:
            report.problems.append(problem)


def _check_columns(root: Path, slices: Mapping[str, Mapping[str, GroupSlice]], report: StatsCheck) -> None:
    path = root / STATS_FILE
    if not path.is_file():
        report.missing.append(f"{path} does not exist")
        return
    try:
        data = read_json(path)
    except StatsError as exc:
        report.problems.append(str(exc))
        return
    if not isinstance(data, dict):
        report.problems.append(
            f"{path}: expected a JSON object of per-column statistics, got {type(data).__name__}"
        )
        return
    for column, (width, exact, source) in column_widths(root, slices).items():
        if column not in data:
            report.missing.append(f"{path}: column {column!r} is absent")
        else:
            _check_entry(data[column], f"{path}: {column!r}", (width,), exact, source, report)


def _check_relative(
    root: Path, emb: EmbodimentConfig, slices: Mapping[str, Mapping[str, GroupSlice]], report: StatsCheck
) -> None:
    path = root / RELATIVE_STATS_FILE
    if not path.is_file():
        report.missing.append(f"{path} does not exist")
        return
    try:
        data = read_json(path)
    except StatsError as exc:
        report.problems.append(str(exc))
        return
    if not isinstance(data, dict) or not isinstance(data.get("stats", {}), dict):
        report.problems.append(f"{path}: expected a JSON object with a 'stats' mapping")
        return
    want, stats, groups = relative_signature(emb), data.get("stats", {}), data.get("groups") or {}
    horizon = want["action_horizon"]
    if data.get("action_horizon") != horizon:
        report.problems.append(
            f"{path} was computed for horizon {data.get('action_horizon')}, embodiment {emb.tag!r} uses {horizon}"
            f" (so its [H, D] statistics have H={data.get('action_horizon')}, expected {horizon})"
        )
        return
    for k in ("delta_indices", "state_delta_indices"):
        if data.get(k) != want[k]:
            report.problems.append(f"{path}: {k} {data.get(k)} differ from the embodiment's {want[k]}")
    for key, signature in want["groups"].items():
        where = f"{path}: group {key!r}"
        if key not in stats:
            report.missing.append(f"{where} is absent")
        elif isinstance(groups, dict) and groups.get(key) != signature:
            report.problems.append(
                f"{where} was computed as {groups.get(key)}, the embodiment has {signature}"
            )
        else:
            sl = slices["action"][key]
            shape = (horizon, sl.end - sl.start)
            _check_entry(
                stats[key], where, shape, True, f"horizon {horizon} x width of action group {key!r}", report
            )


def check_stats(root: str | Path, embodiment: EmbodimentConfig | str) -> StatsCheck:
    """Validate both files of one dataset against the embodiment (see the module docstring)."""
    root = Path(root)
    emb = load_embodiment(embodiment)
    slices = group_slices(root, emb)
    report = StatsCheck()
    _check_columns(root, slices, report)
    if any(g.is_relative for g in emb.action.groups):
        _check_relative(root, emb, slices, report)
    return report


def how_to_fix(root: Path, emb: EmbodimentConfig, report: StatsCheck) -> str:
    """The command that fixes what `report` found (one sentence)."""
    name = emb.name or emb.tag
    if report.problems:
        return (
            f"statistics are never replaced silently: recompute them with recompute_stats=true "
            f"or `gr00t-stats {root} embodiment={name} recompute=true`"
        )
    return f"run `gr00t-stats {root} embodiment={name}`"
