"""`gr00t-eval checkpoint=<dir> data=<dataset dir> embodiment=<name> [server=host:port] [key=value ...]`

Open-loop evaluation: replays recorded episodes through the policy (loaded locally from
`checkpoint`, or queried over the network from a running `gr00t-serve` with `server=host:port`),
querying every `action_horizon` steps, and reports un-normalised MSE/MAE per action key. Writes
`metrics.json` and one PNG per episode (predicted vs ground truth, query points marked) into
`output_dir`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gr00t.cli.serve import parse_overrides, register_help, resolve_device


@dataclasses.dataclass
class EvalArgs:
    data: str = "???"
    embodiment: str = "???"
    checkpoint: str | None = None
    server: str | None = None
    api_token: str | None = None
    episodes: Any = None
    max_episodes: int | None = None
    max_steps: int | None = None
    action_horizon: int | None = None
    output_dir: str | None = None
    device: str = "auto"
    seed: int | None = 0
    plots: bool = True
    timeout_ms: int = 60000
    log_level: str = "INFO"


register_help(
    EvalArgs,
    {
        "data": "LeRobot dataset directory (v2.x or v3.0, with meta/modality.json and statistics)",
        "embodiment": "embodiment name or tag of the dataset",
        "checkpoint": "checkpoint directory to load locally (required unless server= is given)",
        "server": "host:port of a running gr00t-serve to query instead of loading the checkpoint",
        "api_token": "token for the server; falls back to $GR00T_API_TOKEN",
        "episodes": "episode indices to evaluate, e.g. [0,3]",
        "max_episodes": "evaluate at most this many episodes (after `episodes`)",
        "max_steps": "evaluate at most this many steps per episode",
        "action_horizon": "steps executed per query; null = the embodiment chunk length",
        "output_dir": "where metrics.json and plots go; null = outputs/open_loop/<checkpoint name>",
        "device": "torch device for a local policy: auto, cpu, cuda, ...",
        "seed": "noise seed of the first query (query i uses seed + i); null for random",
        "plots": "write one PNG per episode",
        "timeout_ms": "per-request timeout when querying a server",
        "log_level": "python logging level",
    },
)


def _episode_list(value: Any) -> list[int] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return value
    raise SystemExit(f"gr00t-eval: episodes={value!r}: expected an integer or a list like [0,2]")


def _parse_server(server: str) -> tuple[str, int]:
    host, sep, port = server.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise SystemExit(f"gr00t-eval: server={server!r}: expected host:port, e.g. 127.0.0.1:5555")
    return host, int(port)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_overrides(EvalArgs, sys.argv[1:] if argv is None else argv, "gr00t-eval", __doc__ or "")
    if args is None:
        return 0
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.checkpoint is None and args.server is None:
        raise SystemExit("gr00t-eval: give checkpoint=<dir> (local policy) or server=host:port")
    episodes = _episode_list(args.episodes)

    from gr00t.data.dataset import Gr00tDataset
    from gr00t.eval.open_loop import run_open_loop, write_report

    dataset = Gr00tDataset(args.data, args.embodiment)
    if episodes is None:
        episodes = list(dataset.episode_indices)
    if args.max_episodes is not None:
        episodes = episodes[: args.max_episodes]

    closer = None
    if args.server is not None:
        from gr00t.policy.client import PolicyClient

        host, port = _parse_server(args.server)
        token = args.api_token if args.api_token is not None else os.environ.get("GR00T_API_TOKEN") or None
        client = PolicyClient(host=host, port=port, timeout_ms=args.timeout_ms, api_token=token)
        if not client.ping():
            raise SystemExit(f"gr00t-eval: no policy server answers at {args.server}")
        policy: Any = client
        closer = client.close
        name = f"server_{host}_{port}"
    else:
        from gr00t.policy.policy import Gr00tPolicy

        policy = Gr00tPolicy.from_checkpoint(
            args.checkpoint, args.embodiment, device=resolve_device(args.device)
        )
        name = Path(args.checkpoint).resolve().name  # type: ignore[arg-type]

    out_dir = Path(args.output_dir) if args.output_dir else Path("outputs") / "open_loop" / name
    try:
        report = run_open_loop(
            policy,
            dataset,
            episodes=episodes,
            action_horizon=args.action_horizon,
            max_steps=args.max_steps,
            plot_dir=out_dir if args.plots else None,
            seed=args.seed,
        )
    finally:
        if closer is not None:
            closer()
    path = write_report(report, out_dir / "metrics.json")
    print(
        f"open-loop evaluation: {len(report.episodes)} episode(s), query every {report.action_horizon} steps"
    )
    for key, m in report.metrics["per_key"].items():
        print(f"  {key:<20} MSE {m['mse']:.6g}  MAE {m['mae']:.6g}")
    print(f"  {'all':<20} MSE {report.metrics['mse']:.6g}  MAE {report.metrics['mae']:.6g}")
    print(f"metrics: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
