"""`gr00t-demo-data <dir>`: write the deterministic demo dataset (LeRobot v3.0 or v2.1, real mp4)."""

from __future__ import annotations

import argparse
import sys

from gr00t.data.demo import SUPPORTED_VERSIONS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gr00t-demo-data",
        description="Write a small deterministic LeRobot dataset for the 'new_embodiment' demo robot "
        "(cameras front/wrist, state/action = arm(6) + gripper(1), fps 15) with meta/modality.json.",
    )
    parser.add_argument("output", help="dataset folder to create (must not exist or be empty)")
    parser.add_argument(
        "--version", default="v3.0", choices=SUPPORTED_VERSIONS, help="LeRobot layout (default v3.0)"
    )
    parser.add_argument("--episodes", type=int, default=6, help="number of episodes (default 6)")
    parser.add_argument("--length", type=int, default=60, help="frames per episode (default 60)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--codec", default="h264", help="h264, av1, or an encoder name such as libsvtav1")
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument(
        "--episodes-per-file", type=int, default=None, help="v3.0: episodes per data/video file"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from gr00t.data.demo import write_demo_dataset

    try:
        path = write_demo_dataset(
            args.output,
            version=args.version,
            num_episodes=args.episodes,
            episode_length=args.length,
            seed=args.seed,
            codec=args.codec,
            height=args.height,
            width=args.width,
            episodes_per_file=args.episodes_per_file,
            overwrite=args.overwrite,
        )
    except (ValueError, FileExistsError) as err:
        print(f"gr00t-demo-data: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.version} demo dataset: {args.episodes} episodes x {args.length} frames -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
