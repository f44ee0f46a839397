"""`gr00t-serve checkpoint=<dir> embodiment=<name | robot.yaml> [host=127.0.0.1] [port=5555] [api_token=...]`

Loads a checkpoint as a `Gr00tPolicy` and serves it with the reference GR00T ZeroMQ protocol until a
client sends ``kill`` (or Ctrl-C / SIGTERM). The API token may also come from ``GR00T_API_TOKEN`` so
that it does not show in the process list. Each request's cost is bounded by the ``max_*`` keys
(`gr00t.policy.limits`): batch size, frames, pixels, aspect ratio, denoising steps, instruction length,
RTC fields; a request beyond them is answered with ``{"error": ...}`` before any image work.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING

from gr00t.cli.common import UsageError, run_main
from gr00t.cli.keyvalue import setting as _key


@dataclass
class ServeArgs:
    checkpoint: str = _key(MISSING, "checkpoint folder, or a run folder (its newest complete checkpoint)")
    embodiment: str = _key(MISSING, "embodiment the policy acts for: name, tag or robot YAML file")
    host: str = _key("127.0.0.1", "interface to bind; 127.0.0.1 accepts only local clients, 0.0.0.0 all")
    port: int = _key(5555, "TCP port (0 picks a free one and prints it)")
    api_token: str | None = _key(None, "require this token in every request; falls back to $GR00T_API_TOKEN")
    device: str = _key("auto", "torch device: auto (cuda if available, else cpu), cpu, cuda, cuda:1, ...")
    compile: bool = _key(False, "torch.compile the backbone and the DiT of the action head")
    cuda_graphs: bool = _key(False, "torch.compile with CUDA graphs (mode=reduce-overhead); CUDA only")
    denoising_steps: int | None = _key(None, "Euler steps per action chunk; null = the model config value")
    seed: int | None = _key(None, "seed for the initial noise of every call; null = fresh noise per call")
    max_message_mb: float = _key(64.0, "reject requests larger than this; twice this drops the connection")
    # per-request cost bounds (gr00t.policy.limits.RequestLimits), checked before any image work
    max_batch_size: int = _key(64, "reject requests with more observation rows (batch B)")
    max_frames: int = _key(16, "reject more frames per camera view (T)")
    max_image_pixels: int = _key(2048 * 2048, "reject frames with more pixels (H x W)")
    max_aspect_ratio: float = _key(
        8.0, "reject frames whose longer side exceeds the shorter one this many times"
    )
    max_request_pixels: int = _key(16 * 1024 * 1024, "reject requests whose frames hold more pixels in all")
    max_denoising_steps: int = _key(64, "reject options.denoising_steps above this")
    max_instruction_chars: int = _key(4096, "reject longer language instructions")
    max_channels: int = _key(4, "reject frames with more channels (C)")
    max_array_values: int = _key(1024 * 1024, "reject other arrays (state, RTC actions) with more values")
    max_rtc_steps: int = _key(
        1024, "reject options.rtc frozen/overlap steps or prev_actions longer than this"
    )
    max_keys: int = _key(256, "reject observation mappings with more keys")
    log_level: str = _key("INFO", "python logging level")
    config_dir: str | None = _key(
        None, "a folder of your own configs (embodiment/*.yaml), added to the shipped ones"
    )


def resolve_device(device: str) -> str:
    """`auto` -> cuda when available, else cpu."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gr00t-serve` console script."""
    return run_main("gr00t-serve", _serve, argv)


def _serve(argv: list[str]) -> int:
    from gr00t.cli import checks
    from gr00t.cli.keyvalue import parse_settings

    args = parse_settings(ServeArgs, argv, "gr00t-serve", __doc__ or "")
    if args is None:
        return 0
    from gr00t.policy.limits import RequestLimits

    try:
        limits = RequestLimits.from_mapping(dataclasses.asdict(args))
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    checkpoint = checks.checkpoint("checkpoint", args.checkpoint, "gr00t-serve")
    tag = checks.checkpoint_embodiment(checkpoint, args.embodiment)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from gr00t.policy.policy import Gr00tPolicy
    from gr00t.policy.server import PolicyServer

    token = args.api_token if args.api_token is not None else os.environ.get("GR00T_API_TOKEN") or None
    policy = Gr00tPolicy.from_checkpoint(
        checkpoint,
        tag,
        device=resolve_device(args.device),
        compile=args.compile,
        cuda_graphs=args.cuda_graphs,
        denoising_steps=args.denoising_steps,
        seed=args.seed,
    )
    server = PolicyServer(
        policy,
        host=args.host,
        port=args.port,
        api_token=token,
        max_message_bytes=int(args.max_message_mb * 1024 * 1024),
        limits=limits,
    )

    def _terminate(signum: int, _frame: Any) -> None:
        server.stop()

    signal.signal(signal.SIGTERM, _terminate)
    print(
        f"gr00t-serve: serving {checkpoint} ({tag}) on tcp://{args.host}:{server.port}"
        + (" (token required)" if token else ""),
        flush=True,
    )
    try:
        server.run()
    except KeyboardInterrupt:
        server.close()
    print("gr00t-serve: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
