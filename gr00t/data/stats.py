"""Statistics files of a dataset (SPEC §2.3): reading, validating and writing them.

Files (written atomically with ordinary modes, merged into what is already there):
- `meta/stats.json` — LeRobot layout, one entry per parquet column (`observation.state`, `action`,
  ...) with `mean`, `std`, `min`, `max`, `q01`, `q99` (lists over the column's dims) and `count`.
  Other entries (e.g. LeRobot's image statistics) and other stats of the same entry (e.g. LeRobot's
  q10/q50/q90) are kept. Group statistics are slices of these through `meta/modality.json`.
- `meta/relative_stats.json` — for the relative action groups of one embodiment: per group, arrays
  [H, D] over every valid chunk (a[t + delta] relative to the reference state at t), plus the
  horizon, delta indices and reference semantics they were computed with, so a mismatch is caught.

Validation (`check_stats`): every statistic's shape is checked against the column's width
(`meta/info.json`, else `meta/modality.json`) and, for relative statistics, against the
embodiment's horizon and group width; values must be finite. What is absent is computed and added;
what is present but wrong is an error naming the file, key and both shapes unless the caller asks
to recompute (`recompute_stats=true`, `gr00t-stats --recompute`). Nothing is overwritten silently.

Grouped form used by the StateActionProcessor:
`{"state": {key: {stat: np.ndarray [D]}}, "action": {...}}` and `{key: {stat: np.ndarray [H, D]}}`.
Computation lives in `gr00t.data.stats_compute` (re-exported here).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gr00t import atomic
from gr00t.data.embodiment import EmbodimentConfig, load_embodiment
from gr00t.data.stats_check import (
    RELATIVE_STATS_FILE,
    STATS_FILE,
    StatsCheck,
    check_stats,
    how_to_fix,
    read_json,
)
from gr00t.data.stats_compute import (
    MAX_QUANTILE_ROWS,
    STAT_KEYS,
    GroupSlice,
    Stats,
    StatsAccumulator,
    StatsError,
    array_stats,
    compute_stats,
    group_slices,
    iter_episode_columns,
    merge_stats,
    modality_groups,
    relative_signature,
    valid_starts,
)

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------


def _to_json(stats: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: (np.asarray(v).tolist() if k != "count" else [int(np.asarray(v).sum())]) for k, v in stats.items()
    }


def _from_json(entry: Mapping[str, Any], where: str) -> Stats:
    missing = [k for k in STAT_KEYS if k not in entry]
    if missing:
        raise StatsError(f"{where}: missing statistics {missing}")
    out = {k: np.asarray(entry[k], dtype=np.float64) for k in STAT_KEYS}
    if "count" in entry:
        out["count"] = np.array(int(np.asarray(entry["count"]).sum()))
    return out


def write_stats(
    root: str | Path,
    column_stats: Mapping[str, Stats],
    relative: Mapping[str, Stats],
    embodiment: EmbodimentConfig,
    replace: bool = True,
) -> tuple[Path, Path]:
    """Write both files atomically; a file whose content would not change is left untouched.

    stats.json is merged stat by stat: entries for other columns, and stats of our columns that we do
    not compute (e.g. LeRobot's q10/q50/q90), are kept. ``replace`` decides between our values and
    values already in the files: True (an explicit recompute) writes ours, False only adds what is
    absent. With ``replace`` an unreadable stats.json is replaced as a whole.
    """
    root = Path(root)
    stats_path, rel_path = root / STATS_FILE, root / RELATIVE_STATS_FILE
    old = _read_json_or(stats_path, {}, tolerate=replace)
    if not isinstance(old, dict):
        if not replace:
            raise StatsError(
                f"{stats_path}: expected a JSON object of per-column statistics, got {type(old).__name__}"
            )
        old = {}
    data = dict(old)
    for column, stats in column_stats.items():
        entry = data.get(column) if isinstance(data.get(column), dict) else {}
        data[column] = {**entry, **_to_json(stats)} if replace else {**_to_json(stats), **entry}
    if data != old or not stats_path.is_file():
        atomic.write_json(stats_path, data)
    old_rel = _read_json_or(rel_path, None, tolerate=True)
    rel = {"embodiment": embodiment.tag, **relative_signature(embodiment), "stats": {}}
    if not replace and isinstance(old_rel, dict) and isinstance(old_rel.get("stats"), dict):
        rel["stats"] = dict(old_rel["stats"])  # check_stats found them fitting: keep them
    for key, stats in relative.items():
        entry = rel["stats"].get(key) if isinstance(rel["stats"].get(key), dict) else {}
        rel["stats"][key] = {**entry, **_to_json(stats)} if replace else {**_to_json(stats), **entry}
    if rel != old_rel:
        atomic.write_json(rel_path, rel)
    return stats_path, rel_path


def _read_json_or(path: Path, default: Any, tolerate: bool) -> Any:
    if not path.is_file():
        return default
    try:
        return read_json(path)
    except StatsError:
        if tolerate:
            return default
        raise


# ---- loading ---------------------------------------------------------------------------------------


def load_stats(
    root: str | Path, embodiment: EmbodimentConfig | str
) -> tuple[dict[str, dict[str, Stats]], dict[str, Stats]]:
    """Grouped statistics of one dataset for the StateActionProcessor: ({"state": {key: stats},
    "action": {key: stats}}, {relative key: stats [H, D]}). Raises StatsError naming the file."""
    root = Path(root)
    emb = load_embodiment(embodiment)
    report = check_stats(root, emb)
    if not report.ok:
        raise StatsError(f"{(report.problems or report.missing)[0]}; {how_to_fix(root, emb, report)}")
    slices = group_slices(root, emb)
    path = root / STATS_FILE
    data = read_json(path)
    grouped: dict[str, dict[str, Stats]] = {"state": {}, "action": {}}
    for section, groups in slices.items():
        for key, sl in groups.items():
            col = _from_json(data[sl.column], f"{path}: column {sl.column!r}")
            grouped[section][key] = {
                k: (v[..., sl.start : sl.end] if k != "count" else v) for k, v in col.items()
            }
    relative: dict[str, Stats] = {}
    if any(g.is_relative for g in emb.action.groups):
        rel_path = root / RELATIVE_STATS_FILE
        rel = read_json(rel_path)["stats"]
        relative = {
            g.key: _from_json(rel[g.key], f"{rel_path}: group {g.key!r}")
            for g in emb.action.groups
            if g.is_relative
        }
    return grouped, relative


def merge_grouped(
    per_dataset: Sequence[tuple[dict[str, dict[str, Stats]], dict[str, Stats]]],
    weights: Sequence[float] | None = None,
) -> tuple[dict[str, dict[str, Stats]], dict[str, Stats]]:
    """Merge `load_stats` results of several datasets of one embodiment, key by key."""
    first, first_rel = per_dataset[0]
    grouped = {
        sec: {k: merge_stats([d[0][sec][k] for d in per_dataset], weights) for k in first[sec]}
        for sec in first
    }
    relative = {k: merge_stats([d[1][k] for d in per_dataset], weights) for k in first_rel}
    return grouped, relative


def stats_ready(root: str | Path, embodiment: EmbodimentConfig | str) -> bool:
    """Whether both files exist, are complete and fit the embodiment."""
    return check_stats(root, embodiment).ok


def compute_and_write(
    root: str | Path, embodiment: EmbodimentConfig | str, replace: bool = True
) -> tuple[Path, Path]:
    """Compute both statistics files of one dataset (no video decoding) and write them (`write_stats`)."""
    emb = load_embodiment(embodiment)
    columns, relative = compute_stats(root, emb)
    return write_stats(root, columns, relative, emb, replace=replace)


def _to_write(root: Path, emb: EmbodimentConfig, recompute: bool) -> StatsCheck | None:
    """What needs writing (None: nothing); raises when present statistics do not fit and no recompute."""
    report = check_stats(root, emb)
    if report.problems and not recompute:
        raise StatsError(f"{'; '.join(report.problems)}. {how_to_fix(root, emb, report)}")
    return report if recompute or report.missing else None


def _ensure_one(root: Path, emb: EmbodimentConfig, recompute: bool, lock_timeout_s: float) -> None:
    from filelock import FileLock

    if _to_write(root, emb, recompute) is None:
        return
    with FileLock(str(root / "meta" / ".gr00t_stats.lock"), timeout=lock_timeout_s):
        report = _to_write(root, emb, recompute)  # another job may have written them meanwhile
        if report is None:
            return
        if recompute:
            found = "; ".join(report.problems + report.missing) or "they fitted"
            logger.warning(
                "recompute_stats: recomputing and replacing the statistics of %s (%s)", root, found
            )
        else:
            logger.warning("%s: computing missing statistics: %s", root, "; ".join(report.missing))
        compute_and_write(root, emb, replace=recompute)


def ensure_stats(
    roots: Sequence[str | Path],
    embodiment: EmbodimentConfig | str,
    is_main_process: bool = True,
    barrier: Callable[[], None] | None = None,
    lock_timeout_s: float = 3600.0,
    recompute: bool = False,
) -> tuple[dict[str, dict[str, Stats]], dict[str, Stats]]:
    """Make sure every dataset has statistics that fit the embodiment, then return them merged
    (weighted by frame count).

    Absent statistics are computed and added; statistics that are present but do not fit (shapes,
    horizon, NaN) raise `StatsError` naming file, key and shapes, unless ``recompute`` (then every
    dataset's statistics are recomputed and replaced, with a warning). Only the main process
    computes (under a per-dataset file lock, so concurrent jobs on a shared file system do not
    clobber each other); every process then waits on `barrier` (e.g. `torch.distributed.barrier`)
    and loads. On clusters without a shared file system pass `is_main_process=(local_rank == 0)`.
    """
    emb = load_embodiment(embodiment)
    paths = [Path(r) for r in roots]
    if not paths:
        raise StatsError("ensure_stats: no datasets given")
    if is_main_process:
        for root in paths:
            _ensure_one(root, emb, recompute, lock_timeout_s)
    if barrier is not None:
        barrier()
    loaded = [load_stats(root, emb) for root in paths]
    return loaded[0] if len(loaded) == 1 else merge_grouped(loaded)


__all__ = [
    "MAX_QUANTILE_ROWS",
    "RELATIVE_STATS_FILE",
    "STATS_FILE",
    "STAT_KEYS",
    "GroupSlice",
    "Stats",
    "StatsAccumulator",
    "StatsCheck",
    "StatsError",
    "array_stats",
    "check_stats",
    "compute_and_write",
    "compute_stats",
    "ensure_stats",
    "group_slices",
    "iter_episode_columns",
    "load_stats",
    "merge_grouped",
    "merge_stats",
    "modality_groups",
    "relative_signature",
    "stats_ready",
    "valid_starts",
    "write_stats",
]
