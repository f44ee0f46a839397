"""`gr00t-serve checkpoint=<dir> embodiment=<name> [host=127.0.0.1] [port=5555] [api_token=...]`

Loads a checkpoint as a `Gr00tPolicy` and serves it with the reference GR00T ZeroMQ protocol until a
client sends ``kill`` (or Ctrl-C / SIGTERM). Each request's cost is bounded by the ``max_*`` keys
(`gr00t.policy.limits`): batch size, frames, pixels, aspect ratio, denoising steps, instruction length;
a request beyond them is answered with ``{"error": ...}`` before any image work. The API token may also come from ``GR00T_API_TOKEN`` so
that it does not show in the process list.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


@dataclasses.dataclass
class ServeArgs:
    checkpoint: str = "???"
    embodiment: str = "???"
    host: str = "127.0.0.1"
    port: int = 5555
    api_token: str | None = None
    device: str = "auto"
    compile: bool = False
    cuda_graphs: bool = False
    denoising_steps: int | None = None
    seed: int | None = None
    max_message_mb: float = 64.0
    # per-request cost bounds (gr00t.policy.limits.RequestLimits), checked before any image work
    max_batch_size: int = 64
    max_frames: int = 16
    max_image_pixels: int = 2048 * 2048
    max_aspect_ratio: float = 8.0
    max_request_pixels: int = 16 * 1024 * 1024
    max_denoising_steps: int = 64
    max_instruction_chars: int = 4096
    max_channels: int = 4
    max_array_values: int = 1024 * 1024
    max_rtc_steps: int = 1024
    max_keys: int = 256
    log_level: str = "INFO"


_HELP = {
    "checkpoint": "checkpoint directory (a checkpoint-<step>/ folder written by training)",
    "embodiment": "embodiment name or tag the policy acts for (e.g. new_embodiment)",
    "host": "interface to bind; 127.0.0.1 (default) accepts only local clients, 0.0.0.0 all",
    "port": "TCP port (0 picks a free one and prints it)",
    "api_token": "require this token in every request; falls back to $GR00T_API_TOKEN",
    "device": "torch device: auto (cuda if available, else cpu), cpu, cuda, cuda:1, ...",
    "compile": "torch.compile the backbone and the DiT of the action head",
    "cuda_graphs": "torch.compile with CUDA graphs (mode=reduce-overhead); CUDA only",
    "denoising_steps": "Euler steps per action chunk; null = the model config value",
    "seed": "seed for the initial noise of every call; null = fresh noise per call",
    "max_message_mb": "reject requests larger than this; twice this drops the connection",
    "max_batch_size": "reject requests with more observation rows (batch B)",
    "max_frames": "reject more frames per camera view (T)",
    "max_image_pixels": "reject frames with more pixels (H x W)",
    "max_aspect_ratio": "reject frames whose longer side exceeds the shorter one this many times",
    "max_request_pixels": "reject requests whose frames hold more pixels in all",
    "max_denoising_steps": "reject options.denoising_steps above this",
    "max_instruction_chars": "reject longer language instructions",
    "max_channels": "reject frames with more channels (C)",
    "max_array_values": "reject other arrays (state, RTC actions) with more values",
    "max_rtc_steps": "reject options.rtc frozen/overlap steps or prev_actions longer than this",
    "max_keys": "reject observation mappings with more keys",
    "log_level": "python logging level",
}


def _coerce(name: str, raw: str, annotation: Any) -> Any:
    value = yaml.safe_load(raw) if raw != "" else None
    kinds = str(annotation)
    if value is None:
        if "None" in kinds:
            return None
        raise ValueError(f"{name}: a value is required")
    if "bool" in kinds and not isinstance(value, bool):
        raise ValueError(f"{name}={raw!r}: expected true or false")
    if "int" in kinds and "float" not in kinds and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"{name}={raw!r}: expected an integer")
    if "float" in kinds and not isinstance(value, (int, float)):
        raise ValueError(f"{name}={raw!r}: expected a number")
    if "str" in kinds and "int" not in kinds and "float" not in kinds and not isinstance(value, str):
        value = raw  # keep paths/tokens like 123 or 1e3 as text
    return value


def parse_overrides(schema: type[T], argv: Sequence[str], prog: str, summary: str) -> T | None:
    """Parse Hydra-style ``key=value`` arguments into `schema` (a dataclass).

    Handles ``--help`` (prints the keys and returns None) and ``--cfg job`` (prints the resolved
    config as YAML and returns None). Unknown keys fail with the closest valid ones.
    """
    fields = {f.name: f for f in dataclasses.fields(schema)}  # type: ignore[arg-type]
    args = list(argv)
    if any(a in ("-h", "--help") for a in args):
        print(
            f"usage: {prog} "
            + " ".join(f"{k}=<{k}>" for k, f in fields.items() if f.default == "???")
            + " [key=value ...]\n\n"
            + summary.strip()
            + "\n\nkeys:"
        )
        for name, f in fields.items():
            default = "required" if f.default == "???" else f"default: {f.default!r}"
            print(f"  {name:<18} {_HELP_REGISTRY.get(schema, {}).get(name, '')} ({default})")
        return None
    show_cfg = False
    if "--cfg" in args:
        i = args.index("--cfg")
        if i + 1 >= len(args) or args[i + 1] != "job":
            raise SystemExit(f"{prog}: only '--cfg job' is supported")
        del args[i : i + 2]
        show_cfg = True
    values: dict[str, Any] = {}
    for arg in args:
        if "=" not in arg:
            raise SystemExit(f"{prog}: expected key=value, got {arg!r} (see --help)")
        key, raw = arg.split("=", 1)
        key = key.lstrip("+")
        if key not in fields:
            hint = difflib.get_close_matches(key, list(fields), n=2)
            extra = f"; did you mean {' or '.join(hint)}?" if hint else ""
            raise SystemExit(f"{prog}: unknown key {key!r}{extra} (valid: {', '.join(fields)})")
        try:
            values[key] = _coerce(key, raw, fields[key].type)
        except ValueError as exc:
            raise SystemExit(f"{prog}: {exc}") from exc
    parsed = schema(**values)
    missing = [k for k, f in fields.items() if getattr(parsed, k) == "???"]
    if show_cfg:
        print(yaml.safe_dump(dataclasses.asdict(parsed), sort_keys=False), end="")  # type: ignore[call-overload]
        return None
    if missing:
        raise SystemExit(
            f"{prog}: missing required key(s) {', '.join(f'{k}=...' for k in missing)} (see --help)"
        )
    return parsed


_HELP_REGISTRY: dict[type, dict[str, str]] = {ServeArgs: _HELP}


def register_help(schema: type, help_text: dict[str, str]) -> None:
    """Attach per-key help strings to a schema used with `parse_overrides`."""
    _HELP_REGISTRY[schema] = help_text


def resolve_device(device: str) -> str:
    """`auto` -> cuda when available, else cpu."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_overrides(ServeArgs, sys.argv[1:] if argv is None else argv, "gr00t-serve", __doc__ or "")
    if args is None:
        return 0
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from gr00t.policy.limits import RequestLimits
    from gr00t.policy.policy import Gr00tPolicy
    from gr00t.policy.server import PolicyServer

    try:
        limits = RequestLimits.from_mapping(dataclasses.asdict(args))
    except ValueError as exc:
        raise SystemExit(f"gr00t-serve: {exc}") from exc
    token = args.api_token if args.api_token is not None else os.environ.get("GR00T_API_TOKEN") or None
    policy = Gr00tPolicy.from_checkpoint(
        args.checkpoint,
        args.embodiment,
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
        f"gr00t-serve: serving {args.checkpoint} ({args.embodiment}) on tcp://{args.host}:{server.port}"
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
