"""`gr00t-demo-data <dir> [version=v3.0|v2.1] [episodes=6] [key=value ...]`: write the deterministic demo
dataset (LeRobot v3.0 or v2.1, real mp4) for the `new_embodiment` demo robot: cameras front/wrist,
state/action = arm(6) + gripper(1), fps 15, with meta/modality.json.

`gr00t-demo-data --mixture <name | mixture.yaml> <root>`: a small synthetic dataset (LeRobot v3.0)
for every entry of the mixture, at the entry's path under <root>, with its embodiment's cameras,
state/action groups and language key (`gr00t.data.demo_mixture`); then train on it with
`gr00t-train recipe=... data_root=<root>`.
The old spellings (`--version v2.1`, `--episodes 3`, `--overwrite`) still work.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

from omegaconf import MISSING

from gr00t.cli.common import UsageError, run_main
from gr00t.cli.keyvalue import setting


@dataclass
class DemoDataArgs:
    output: str = setting(MISSING, "dataset folder to create (must not exist or be empty)")
    version: str = setting("v3.0", "LeRobot layout: v3.0 or v2.1")
    episodes: int = setting(6, "number of episodes")
    length: int = setting(60, "frames per episode")
    seed: int = setting(0, "random seed of the trajectories and images")
    codec: str = setting("h264", "h264, av1, or an encoder name such as libsvtav1")
    height: int = setting(96, "frame height")
    width: int = setting(128, "frame width")
    episodes_per_file: int | None = setting(None, "v3.0: episodes per data/video file")
    overwrite: bool = setting(False, "replace an existing dataset folder")
    subtasks: bool = setting(
        False, "add a per-frame sub-task channel (annotation.human.subtask) that switches mid-episode"
    )
    mixture: str | None = setting(None, "write a dataset for every entry of this mixture under the folder")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gr00t-demo-data` console script."""
    return run_main("gr00t-demo-data", _demo_data, argv)


def _demo_data(argv: list[str]) -> int:
    from gr00t.cli.keyvalue import parse_settings

    args = parse_settings(DemoDataArgs, argv, "gr00t-demo-data", __doc__ or "", positional=("output",))
    if args is None:
        return 0
    from gr00t.data.demo import SUPPORTED_VERSIONS, write_demo_dataset

    if args.mixture is not None:
        return _mixture(args)
    if args.version not in SUPPORTED_VERSIONS:
        raise UsageError(f"version={args.version!r}: expected one of {list(SUPPORTED_VERSIONS)}")
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
            subtasks=args.subtasks,
        )
    except (ValueError, FileExistsError) as err:
        raise UsageError(str(err)) from err
    print(f"wrote {args.version} demo dataset: {args.episodes} episodes x {args.length} frames -> {path}")
    return 0


def _mixture(args: DemoDataArgs) -> int:
    from gr00t.data.demo_mixture import write_mixture_demo
    from gr00t.data.embodiment import EmbodimentConfigError
    from gr00t.data.mixture import MixtureError

    try:
        paths = write_mixture_demo(args.mixture, args.output, episodes=max(1, args.episodes // 3))
    except (ValueError, FileExistsError, MixtureError, EmbodimentConfigError) as err:
        raise UsageError(str(err)) from err
    for path in paths:
        print(f"wrote {path}")
    print(f"mixture {args.mixture}: {len(paths)} synthetic datasets under {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
