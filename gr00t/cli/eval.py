"""`gr00t-eval checkpoint=<dir> data=<dataset dir> embodiment=<name> [server=host:port] [key=value ...]`

Open-loop evaluation: replays recorded episodes through the policy (loaded locally from
`checkpoint`, or queried over the network from a running `gr00t-serve` with `server=host:port`),
querying every `action_horizon` steps, and reports un-normalised MSE/MAE per action key and per
dimension (named with the dataset's joint names). Writes `metrics.json` and one PNG per episode
(recorded vs predicted per dimension, query points marked, a header with checkpoint, episode and
task) into `output_dir`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import MISSING

from gr00t.cli.common import UsageError, run_main
from gr00t.cli.keyvalue import setting


@dataclass
class EvalArgs:
    data: str = setting(MISSING, "LeRobot dataset folder or Hub dataset id (with meta/modality.json)")
    embodiment: str = setting(MISSING, "embodiment of the dataset: name, tag or robot YAML file")
    checkpoint: str | None = setting(None, "checkpoint (or run) folder to load locally; or give server=")
    server: str | None = setting(None, "host:port of a running gr00t-serve to query instead")
    api_token: str | None = setting(None, "token for the server; falls back to $GR00T_API_TOKEN")
    episodes: Any = setting(None, "episode indices to evaluate, e.g. [0,3]")
    max_episodes: int | None = setting(None, "evaluate at most this many episodes (after `episodes`)")
    max_steps: int | None = setting(None, "evaluate at most this many steps per episode")
    action_horizon: int | None = setting(None, "steps executed per query; null = the embodiment chunk")
    latency_steps: int | None = setting(
        None, "replay as an async controller: ask for each chunk this many steps early, prefix frozen"
    )
    rtc_mode: str | None = setting(None, "with latency_steps: RTC mode guidance or prefix; null = model's")
    output_dir: str | None = setting(None, "metrics.json and plots; null = outputs/open_loop/<name>")
    device: str = setting("auto", "torch device for a local policy: auto, cpu, cuda, ...")
    seed: int | None = setting(0, "noise seed of the first query (query i uses seed + i); null: random")
    plots: bool = setting(True, "write one PNG per episode")
    timeout_ms: int = setting(60000, "per-request timeout when querying a server")
    log_level: str = setting("INFO", "python logging level")
    config_dir: str | None = setting(None, "a folder of your own configs, added to the shipped ones")


def _episode_list(value: Any) -> list[int] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return value
    raise UsageError(f"episodes={value!r}: expected an integer or a list like [0,2]")


def _parse_server(server: str) -> tuple[str, int]:
    host, sep, port = server.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UsageError(f"server={server!r}: expected host:port, e.g. 127.0.0.1:5555")
    return host, int(port)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gr00t-eval` console script."""
    return run_main("gr00t-eval", _eval, argv)


def _load_policy(args: EvalArgs, checkpoint: Path | None, tag: str | None) -> tuple[Any, Any, str]:
    """(policy, closer, output name) for a server or a local checkpoint."""
    if args.server is not None:
        from gr00t.policy.client import PolicyClient

        host, port = _parse_server(args.server)
        token = args.api_token if args.api_token is not None else os.environ.get("GR00T_API_TOKEN") or None
        client = PolicyClient(host=host, port=port, timeout_ms=args.timeout_ms, api_token=token)
        if not client.ping():
            raise UsageError(f"server={args.server!r}: no policy server answers")
        return client, client.close, f"server_{host}_{port}"
    from gr00t.cli.serve import resolve_device
    from gr00t.policy.policy import Gr00tPolicy

    assert checkpoint is not None and tag is not None

    policy = Gr00tPolicy.from_checkpoint(checkpoint, tag, device=resolve_device(args.device))
    return policy, None, checkpoint.resolve().name


def _check_latency(args: EvalArgs, horizon: int, checkpoint: Path | None) -> None:
    """`latency_steps` below the steps run per chunk, and within a local RTC-trained model's limits."""
    if args.latency_steps is None:
        return
    k = args.action_horizon or horizon
    if not 0 <= args.latency_steps < k:
        raise UsageError(
            f"latency_steps={args.latency_steps}: expected 0..{k - 1} (less than the {k} steps run per chunk)"
        )
    config = checkpoint / "config.json" if checkpoint is not None else None
    if config is None or not config.is_file():
        return
    delay = int(json.loads(config.read_text()).get("rtc_training_max_delay") or 0)
    mode = args.rtc_mode or ("prefix" if delay > 0 else "guidance")
    if mode == "prefix" and args.latency_steps > delay:
        raise UsageError(
            f"latency_steps={args.latency_steps} with rtc_mode=prefix: expected 0..{delay} (the checkpoint's "
            f"rtc_training_max_delay={delay}); use rtc_mode=guidance"
        )


def _eval(argv: list[str]) -> int:
    from gr00t.cli import checks
    from gr00t.cli.keyvalue import parse_settings

    args = parse_settings(EvalArgs, argv, "gr00t-eval", __doc__ or "")
    if args is None:
        return 0
    if args.checkpoint is None and args.server is None:
        raise UsageError("give checkpoint=<dir> (local policy) or server=host:port")
    episodes = _episode_list(args.episodes)
    if args.rtc_mode not in (None, "guidance", "prefix"):
        raise UsageError(f"rtc_mode={args.rtc_mode!r}: expected guidance or prefix (or null)")
    if args.latency_steps is not None and args.latency_steps < 0:
        raise UsageError(f"latency_steps={args.latency_steps}: expected >= 0")
    from gr00t.data.embodiment import load_embodiment

    embodiment = load_embodiment(args.embodiment)
    data = checks.dataset("data", args.data, embodiment)
    checkpoint = tag = None
    if args.server is None:
        checkpoint = checks.checkpoint("checkpoint", str(args.checkpoint), "gr00t-eval")
        tag = checks.checkpoint_embodiment(checkpoint, args.embodiment)
    _check_latency(args, embodiment.action_horizon, checkpoint)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from gr00t.data.dataset import Gr00tDataset
    from gr00t.eval.open_loop import format_report, run_open_loop, write_report

    dataset = Gr00tDataset(data, embodiment)
    if episodes is None:
        episodes = list(dataset.episode_indices)
    if args.max_episodes is not None:
        episodes = episodes[: args.max_episodes]

    policy, closer, name = _load_policy(args, checkpoint, tag)
    source = str(checkpoint) if checkpoint is not None else f"server {args.server}"
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
            latency_steps=args.latency_steps,
            rtc_mode=args.rtc_mode,
            source=source,
        )
    finally:
        if closer is not None:
            closer()
    path = write_report(report, out_dir / "metrics.json")
    print(format_report(report))
    print(f"metrics: {path}" + (f"; plots: {out_dir}/episode_*.png" if args.plots else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
