"""`gr00t-stats <dataset> embodiment=<name | robot.yaml>`: write meta/stats.json and meta/relative_stats.json.

Reads only the parquet columns (never the videos), so it runs in seconds even on large datasets.
`gr00t-stats <dataset> write_modality=true` (or `--write-modality`) first writes a default
meta/modality.json derived from meta/info.json, to check and edit before training.
The old spelling `gr00t-stats <dataset> --embodiment <name>` still works.
Statistics already in the files are kept; absent ones are added. Statistics that do not fit the
embodiment (wrong widths or horizon, NaN) are an error unless ``recompute=true`` (``--recompute``)
replaces them.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import MISSING

from gr00t.cli.common import UsageError, run_main
from gr00t.cli.keyvalue import setting

PROG = "gr00t-stats"


@dataclass
class StatsArgs:
    dataset: str = setting(MISSING, "dataset root (the folder holding meta/info.json)")
    embodiment: str | None = setting(
        None, "embodiment name, tag, or path to a robot YAML file (needed for the statistics)"
    )
    write_modality: bool = setting(False, "write a default meta/modality.json from meta/info.json first")
    overwrite_modality: bool = setting(False, "with write_modality: replace an existing modality.json")
    recompute: bool = setting(
        False,
        "recompute and replace our statistics even where the files hold some (without it, existing "
        "statistics are kept and ones that do not fit the embodiment are an error)",
    )
    quiet: bool = setting(False, "print only the written paths")
    config_dir: str | None = setting(None, "a folder of your own configs, added to the shipped ones")


def _fmt(values: np.ndarray) -> str:
    return np.array2string(
        np.asarray(values), precision=3, max_line_width=100, threshold=12, suppress_small=True
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gr00t-stats` console script."""
    return run_main(PROG, _stats, argv)


def _write_modality(root: Path, overwrite: bool) -> None:
    from gr00t.data.modality import write_default_modality

    try:
        path = write_default_modality(root, overwrite=overwrite)
    except FileExistsError as exc:
        raise UsageError(f"{exc}; pass overwrite_modality=true to replace it") from exc
    print(f"wrote {path} (derived from meta/info.json: check its groups before training)")


def _stats(argv: list[str]) -> int:
    from gr00t.cli import checks
    from gr00t.cli.keyvalue import parse_settings

    doc = (
        __doc__ or ""
    ) + "\nStatistics: meta/stats.json (per parquet column: mean, std, min, max, q01, q99) "
    doc += "and meta/relative_stats.json (per relative action group and horizon step)."
    args = parse_settings(StatsArgs, argv, PROG, doc, positional=("dataset",))
    if args is None:
        return 0
    root = Path(args.dataset)
    if not (root / "meta" / "info.json").is_file():
        raise UsageError(f"{root} is not a LeRobot dataset (no meta/info.json)")
    if args.write_modality:
        _write_modality(root, args.overwrite_modality)
        if args.embodiment is None:
            return 0
    if args.embodiment is None:
        raise UsageError("missing required key embodiment=<name | robot.yaml> (see --help)")
    from gr00t.data.embodiment import load_embodiment

    emb = load_embodiment(args.embodiment)
    checks.dataset("dataset", str(root), emb)
    from gr00t.data.stats import StatsError, check_stats, compute_stats, write_stats
    from gr00t.data.stats_check import how_to_fix

    start = time.perf_counter()
    report = check_stats(root, emb)
    if report.problems and not args.recompute:
        raise StatsError(f"{'; '.join(report.problems)}. {how_to_fix(root, emb, report)}")
    columns, relative = compute_stats(root, emb)
    written = args.recompute or not report.ok
    if written:
        stats_path, rel_path = write_stats(root, columns, relative, emb, replace=args.recompute)
    elapsed = time.perf_counter() - start
    if not args.quiet:
        frames = max(int(s["count"]) for s in columns.values())
        print(f"dataset {root}  embodiment {emb.name} (tag {emb.tag})  {frames} frames  {elapsed:.2f} s")
        for col, s in columns.items():
            print(f"  {col}  dims {s['mean'].shape[-1]}")
            for k in ("mean", "std", "min", "max"):
                print(f"    {k:5s} {_fmt(s[k])}")
        for key, s in relative.items():
            print(
                f"  relative {key}  [H={s['mean'].shape[0]}, D={s['mean'].shape[1]}] from {int(s['count'])} chunks"
            )
            print(f"    |mean| max per step {_fmt(np.abs(s['mean']).max(-1))}")
    if not written:
        print(
            f"statistics of {root} are complete and fit {emb.name}: nothing written (recompute=true replaces them)"
        )
        return 0
    print(f"{'replaced' if args.recompute else 'wrote'} {stats_path}")
    print(f"{'replaced' if args.recompute else 'wrote'} {rel_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
