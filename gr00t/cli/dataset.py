"""`gr00t-dataset info|merge|append|split`: the DAgger data loop on LeRobot v2.1 / v3.0 datasets.

    gr00t-dataset info <dir> [json=true]
    gr00t-dataset merge <a> <b> ... out=<dir> [overwrite=false]
    gr00t-dataset append <base> <new> [allow_duplicates=false]
    gr00t-dataset split <dir> val=<fraction|count> out=<dir> [seed=0] [overwrite=false]

Settings are `key=value` after the paths. Bad input prints one line naming the file or key and
exits with 2; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import difflib
import json
import signal
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass

PROG = "gr00t-dataset"
EXIT_USAGE = 2


class UsageError(ValueError):
    """A malformed command line."""


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError("expected an integer") from None


def _text(text: str) -> str:
    if not text:
        raise ValueError("expected a value")
    return text


@dataclass(frozen=True)
class Setting:
    parse: Callable[[str], object]
    default: object
    help: str
    required: bool = False


def parse_key_values(tokens: list[str], spec: dict[str, Setting]) -> tuple[list[str], dict]:
    """Split `tokens` into positional paths and `key=value` settings checked against `spec`.

    Self-contained on purpose: it can be swapped for the package's shared key=value parser.
    """
    positional, settings = [], {}
    for token in tokens:
        key, sep, value = token.partition("=")
        if not sep or "/" in key:
            if settings:
                raise UsageError(f"{token!r}: paths must come before the key=value settings")
            positional.append(token)
            continue
        if key not in spec:
            close = difflib.get_close_matches(key, list(spec), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UsageError(f"unknown setting {key!r}.{hint} Valid settings: {sorted(spec)}")
        if key in settings:
            raise UsageError(f"setting {key!r} is given twice")
        try:
            settings[key] = spec[key].parse(value)
        except ValueError as err:
            raise UsageError(f"{key}={value!r}: {err}") from None
    for key, setting in spec.items():
        if key not in settings:
            if setting.required:
                raise UsageError(f"missing setting {key}=... ({setting.help})")
            settings[key] = setting.default
    return positional, settings


COPY_SETTINGS = {
    "verify": Setting(
        _bool,
        True,
        "decode the first and last frame of every copied video segment and compare (default true)",
    ),
    "reencode": Setting(_bool, False, "re-encode videos instead of copying their streams (default false)"),
    "embodiment": Setting(
        _text, None, "recompute meta/relative_stats.json for this embodiment (default: the inputs' own)"
    ),
}


@dataclass(frozen=True)
class Command:
    usage: str
    summary: str
    paths: tuple[int, int | None]  # (min, max) positional paths
    settings: dict[str, Setting]


COMMANDS = {
    "info": Command(
        "info <dir> [json=true]",
        "Episodes, frames, fps, features, tasks, video codecs/GOP and which statistics are present.",
        (1, 1),
        {"json": Setting(_bool, False, "print the summary as JSON")},
    ),
    "merge": Command(
        "merge <a> <b> ... out=<dir> [overwrite=false]",
        "Merge datasets into a new one (v3.0 if any input is v3.0, else v2.1). Tasks are united and "
        "remapped, episodes and frame indices renumbered, videos stream-copied, statistics rewritten.",
        (2, None),
        {
            "out": Setting(_text, None, "output dataset folder", required=True),
            "overwrite": Setting(_bool, False, "replace an existing output folder"),
            **COPY_SETTINGS,
        },
    ),
    "append": Command(
        "append <base> <new> [allow_duplicates=false]",
        "Add the episodes of a new recording session to <base>, in place and atomically: <base> is "
        "either unchanged or fully appended.",
        (2, 2),
        {
            **COPY_SETTINGS,
            "allow_duplicates": Setting(
                _bool,
                False,
                "append episodes <base> already holds (same rows and numeric values); refused by default",
            ),
        },
    ),
    "split": Command(
        "split <dir> val=<fraction|count> out=<dir> [seed=0]",
        "Split episodes into <out>/train and <out>/val, deterministically for a seed.",
        (1, 1),
        {
            "val": Setting(
                _text, None, "validation share: a fraction such as 0.1, or a count such as 5", required=True
            ),
            "out": Setting(_text, None, "folder to hold train/ and val/", required=True),
            "seed": Setting(_int, 0, "seed of the episode draw"),
            "overwrite": Setting(_bool, False, "replace an existing output folder"),
            **COPY_SETTINGS,
        },
    ),
}


def _help(name: str | None = None) -> str:
    if name is None:
        lines = [f"usage: {PROG} <command> ... [--debug]", "", "commands:"]
        lines += [f"  {c.usage}\n      {c.summary}" for c in COMMANDS.values()]
        lines += ["", f"`{PROG} <command> --help` lists a command's settings."]
        return "\n".join(lines)
    cmd = COMMANDS[name]
    lines = [f"usage: {PROG} {cmd.usage}", "", cmd.summary, "", "settings (key=value):"]
    for key, setting in cmd.settings.items():
        default = "required" if setting.required else f"default {setting.default}"
        lines.append(f"  {key}: {setting.help} ({default})")
    return "\n".join(lines)


def _user_errors() -> tuple[type[BaseException], ...]:
    from gr00t.data.dataset_ops import DatasetOpsError, PublishError
    from gr00t.data.embodiment import EmbodimentConfigError
    from gr00t.data.lerobot import LeRobotFormatError
    from gr00t.data.modality import ModalityError
    from gr00t.data.stats import StatsError
    from gr00t.data.video import VideoDecodeError

    return (
        UsageError,
        DatasetOpsError,
        PublishError,
        EmbodimentConfigError,
        LeRobotFormatError,
        ModalityError,
        StatsError,
        VideoDecodeError,
        FileNotFoundError,
        FileExistsError,
        NotADirectoryError,
        PermissionError,
        KeyError,
    )


def _run(name: str, paths: list[str], settings: dict) -> int:
    from gr00t.data import dataset_ops as ops

    copy = {k: settings[k] for k in ("verify", "reencode")} if "verify" in settings else {}
    if name == "info":
        summary = ops.dataset_summary(paths[0])
        print(json.dumps(summary, indent=2) if settings["json"] else ops.format_summary(summary))
        return 0
    if name == "merge":
        report = ops.merge(
            paths, settings["out"], overwrite=settings["overwrite"], embodiment=settings["embodiment"], **copy
        )
        target = settings["out"]
    elif name == "append":
        report = ops.append(
            paths[0],
            paths[1],
            embodiment=settings["embodiment"],
            allow_duplicates=settings["allow_duplicates"],
            **copy,
        )
        target = paths[0]
    else:
        reports = ops.split(
            paths[0],
            settings["val"],
            settings["out"],
            seed=settings["seed"],
            overwrite=settings["overwrite"],
            **copy,
        )
        for part, report in reports.items():
            print(f"{settings['out']}/{part}: " + "\n  ".join(report.lines()))
        return 0
    print(f"{target}: " + "\n  ".join(report.lines()))
    return 0


def _on_sigterm(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    # SIGTERM (SLURM, `kill`) unwinds like Ctrl-C, so the staging folder is removed on the way out.
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread
        return _main(argv)
    try:
        return _main(argv)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_help())
        return 0 if argv else EXIT_USAGE
    name, rest = argv[0], argv[1:]
    try:
        if name not in COMMANDS:
            close = difflib.get_close_matches(name, list(COMMANDS), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UsageError(f"unknown command {name!r}.{hint} Commands: {sorted(COMMANDS)}")
        if any(a in ("-h", "--help") for a in rest):
            print(_help(name))
            return 0
        flags = [a for a in rest if a.startswith("--")]
        if flags:
            raise UsageError(
                f"unknown option {flags[0]!r}; settings are key=value (see {PROG} {name} --help)"
            )
        cmd = COMMANDS[name]
        paths, settings = parse_key_values(rest, cmd.settings)
        low, high = cmd.paths
        if len(paths) < low or (high is not None and len(paths) > high):
            raise UsageError(f"{name}: got {len(paths)} dataset path(s); usage: {PROG} {cmd.usage}")
        return _run(name, paths, settings)
    except Exception as exc:
        if debug or not isinstance(exc, _user_errors()):
            if not debug:
                print(f"{PROG}: internal error (run with --debug for the traceback): {exc}", file=sys.stderr)
                return 1
            traceback.print_exc()
            return EXIT_USAGE if isinstance(exc, _user_errors()) else 1
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"{PROG}: error: {message}".splitlines()[0], file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; no output was published", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
