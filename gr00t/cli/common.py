"""What every command shares: user errors as one line (exit 2), `--debug` for the traceback.

A user mistake (a bad key or value, a missing file, an unknown embodiment, ...) raises one of
`user_errors()`; `run_main` prints it as ``gr00t-<cmd>: error: <one line>`` and returns 2.
Anything else is a bug and keeps its traceback. ``--debug`` (or ``GR00T_DEBUG=1``) prints the
traceback of user errors too.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from gr00t.configs.errors import ConfigError

DEBUG_FLAG = "--debug"


class UsageError(ConfigError):
    """The command line itself is wrong (missing key, bad flag, a path that does not exist)."""


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean "the input is wrong" (reported as one line, exit code 2)."""
    from gr00t.data.embodiment import EmbodimentConfigError
    from gr00t.data.mixture import MixtureError
    from gr00t.data.modality import ModalityError
    from gr00t.data.stats import StatsError
    from gr00t.hub import HubError
    from gr00t.model.checkpoint_files import IncompleteCheckpointError
    from gr00t.train.run_lock import RunDirLocked

    errors: list[type[BaseException]] = [
        ConfigError,
        EmbodimentConfigError,
        MixtureError,
        ModalityError,
        StatsError,
        HubError,
        RunDirLocked,
        IncompleteCheckpointError,
    ]
    loaded = sys.modules  # only types whose (heavy) modules are already imported can have been raised
    if "gr00t.train.build_data" in loaded:
        errors.append(loaded["gr00t.train.build_data"].BuildError)
    if "gr00t.train.checkpoint" in loaded:
        errors.append(loaded["gr00t.train.checkpoint"].ResumeMismatchError)
    if "gr00t.data.lerobot.base" in loaded:
        errors.append(loaded["gr00t.data.lerobot.base"].LeRobotFormatError)
    return tuple(errors)


def one_line(exc: BaseException) -> str:
    """The first line of an error message (the rest is for `--debug`)."""
    text = str(exc).strip()
    if isinstance(exc, KeyError) and len(exc.args) == 1:
        text = str(exc.args[0])
    return text.splitlines()[0] if text else type(exc).__name__


def rank() -> int:
    """This process's rank under torchrun/SLURM (0 without a launcher)."""
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")) or 0)


def run_main(prog: str, body: Callable[[list[str]], int], argv: Sequence[str] | None = None) -> int:
    """Run `body(args)`; user errors become one `prog: error: ...` line on stderr and exit code 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in args or os.environ.get("GR00T_DEBUG", "") not in ("", "0")
    args = [a for a in args if a != DEBUG_FLAG]
    try:
        return body(args)
    except user_errors() as exc:
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr, flush=True)
        return 2


def existing_dir(key: str, value: str, what: str) -> Path:
    """`value` as an existing folder, else a `UsageError` naming `key`."""
    path = Path(value).expanduser()
    if not path.is_dir():
        raise UsageError(f"{key}={value!r}: no such {what} folder ({path.resolve()})")
    return path
