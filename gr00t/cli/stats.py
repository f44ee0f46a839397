"""`gr00t-stats <dataset> --embodiment <name>`: write meta/stats.json and meta/relative_stats.json.

Reads only the parquet columns (never the videos), so it runs in seconds even on large datasets.
Statistics already in the files are kept; absent ones are added. Statistics that do not fit the
embodiment (wrong widths or horizon, NaN) are an error unless ``--recompute`` replaces them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gr00t-stats",
        description="Compute normalisation statistics of a LeRobot dataset (v2.x or v3.0) for one embodiment: "
        "meta/stats.json (per parquet column: mean, std, min, max, q01, q99) and meta/relative_stats.json "
        "(per relative action group and horizon step). Videos are not decoded.",
    )
    parser.add_argument("dataset", type=Path, help="dataset root (the folder holding meta/info.json)")
    parser.add_argument(
        "--embodiment",
        required=True,
        help="embodiment config name (configs/embodiment/<name>.yaml), tag, or path to a YAML file",
    )
    parser.add_argument(
        "--recompute",
        action="store_true",
        help="recompute and replace our statistics even where the files already hold some (without it, "
        "existing statistics are kept and ones that do not fit the embodiment are an error)",
    )
    parser.add_argument("--quiet", action="store_true", help="print only the written paths")
    return parser


def _fmt(values: np.ndarray) -> str:
    return np.array2string(
        np.asarray(values), precision=3, max_line_width=100, threshold=12, suppress_small=True
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from gr00t.data.embodiment import EmbodimentConfigError, load_embodiment
    from gr00t.data.stats import StatsError, check_stats, compute_stats, write_stats
    from gr00t.data.stats_check import how_to_fix

    root: Path = args.dataset
    if not (root / "meta" / "info.json").is_file():
        print(f"gr00t-stats: error: {root} is not a LeRobot dataset (no meta/info.json)", file=sys.stderr)
        return 2
    try:
        emb = load_embodiment(args.embodiment)
        start = time.perf_counter()
        report = check_stats(root, emb)
        if report.problems and not args.recompute:
            raise StatsError(f"{'; '.join(report.problems)}. {how_to_fix(root, emb, report)}")
        columns, relative = compute_stats(root, emb)
        written = args.recompute or not report.ok
        if written:
            stats_path, rel_path = write_stats(root, columns, relative, emb, replace=args.recompute)
    except (EmbodimentConfigError, StatsError, FileNotFoundError, KeyError, ValueError) as exc:
        print(f"gr00t-stats: error: {exc}", file=sys.stderr)
        return 1
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
            f"statistics of {root} are complete and fit {emb.name}: nothing written (--recompute replaces them)"
        )
        return 0
    print(f"{'replaced' if args.recompute else 'wrote'} {stats_path}")
    print(f"{'replaced' if args.recompute else 'wrote'} {rel_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
