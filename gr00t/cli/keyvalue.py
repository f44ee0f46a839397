"""`key=value` settings for the commands that are not training recipes (serve, eval, stats, demo-data,
the dataset tool).

A command declares its settings as a dataclass: types, defaults (`MISSING` = required) and a
``field(metadata={"help": ...})`` line per key. Values use Hydra's override grammar (the same as
`gr00t-finetune`: ``episodes=[0,3]``, ``host=0.0.0.0``, ``seed=null``) and OmegaConf checks them
against the dataclass, so unknown keys and bad values fail with the same one-line messages and
did-you-mean hints as the recipes. Also handled: ``--help``, ``--cfg job``, positional arguments
for file tools (``gr00t-stats <dir>``; a last positional setting typed as a list takes all the
remaining ones, as in ``gr00t-dataset merge <a> <b> out=<dir>``), and ``--key value`` / ``--flag`` spellings of any key
(``--embodiment g1``, ``--overwrite``). A ``config_dir`` key, when the schema has one, adds a
user config folder (`gr00t.paths.add_user_config_dir`).

    @dataclass
    class StatsArgs:
        dataset: str = setting(MISSING, "dataset folder")
        embodiment: str = setting(MISSING, "robot name, tag or YAML file")

    settings = parse_settings(StatsArgs, argv, "gr00t-stats", __doc__, positional=("dataset",))
    if settings is None:  # --help or --cfg job
        return 0
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from typing import Any, TypeVar

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from gr00t.cli.common import UsageError
from gr00t.configs.errors import did_you_mean, explain

T = TypeVar("T")
HELP_FLAGS = ("-h", "--help")


def setting(default: Any, help_text: str) -> Any:
    """A dataclass field with its --help line (`MISSING` default = a required key)."""
    return dataclasses.field(default=default, metadata={"help": help_text})


def _type_text(schema: type, name: str) -> str:
    types = {f.name: f.type for f in dataclasses.fields(schema)}  # type: ignore[arg-type]
    return str(types.get(name, "")).replace("Optional[", "")


def _is_bool(schema: type, name: str) -> bool:
    return _type_text(schema, name).startswith("bool")


def _describe(f: dataclasses.Field) -> str:
    if f.default is MISSING:
        return "required"
    if f.default is dataclasses.MISSING:
        return "default: see --cfg job"
    value = f.default.value if isinstance(f.default, enum.Enum) else f.default
    if value is None or isinstance(value, bool):
        value = {None: "null", True: "true", False: "false"}[value]
    return f"default: {value}"


def print_help(schema: type, prog: str, summary: str, positional: Sequence[str] = ()) -> None:
    """Usage, summary and one line per key (from the dataclass and its help metadata)."""
    fields = dataclasses.fields(schema)  # type: ignore[arg-type]
    required = [f.name for f in fields if f.default is MISSING and f.name not in positional]
    usage = " ".join([prog, *(f"<{p}>" for p in positional), *(f"{k}=<{k}>" for k in required)])
    print(f"usage: {usage} [key=value ...] [--cfg job] [--debug]\n\n{summary.strip()}\n\nsettings:")
    for f in fields:
        kind = "positional" if f.name in positional else _describe(f)
        print(f"  {f.name:<20} {f.metadata.get('help', '')} ({kind})")
    print(
        "\nEvery setting is key=value (also --key value); --cfg job prints the resolved settings; "
        "--debug shows the traceback of an error."
    )


def _split(schema: type, argv: Sequence[str], positional: Sequence[str]) -> tuple[list[str], dict, bool]:
    """(key=value overrides, positional values, --cfg job given)."""
    names = [f.name for f in dataclasses.fields(schema)]  # type: ignore[arg-type]
    overrides: list[str] = []
    raw: dict[str, str] = {}
    free: list[str] = []
    show = False
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("--cfg", "-c"):
            if i + 1 >= len(args) or args[i + 1] != "job":
                raise UsageError("only '--cfg job' is supported")
            show, i = True, i + 2
            continue
        if arg.startswith("--") and len(arg) > 2:
            key, eq, value = arg[2:].partition("=")
            key = key.replace("-", "_")
            if key not in names:
                raise UsageError(f"unknown option {arg!r}.{did_you_mean(key, names)} (see --help)")
            if not eq and not _is_bool(schema, key):
                if i + 1 >= len(args):
                    raise UsageError(f"{arg} needs a value")
                value, i = args[i + 1], i + 1
            raw[key] = value if (eq or not _is_bool(schema, key)) else "true"
        elif "=" in arg and not arg.startswith("-"):
            overrides.append(arg)
        elif arg.startswith("-"):
            raise UsageError(f"unknown option {arg!r} (see --help)")
        else:
            free.append(arg)
        i += 1
    rest = bool(positional) and _type_text(schema, positional[-1]).startswith(("list", "List"))
    if rest:  # the last positional setting is a list: it takes every remaining argument
        named = len(positional) - 1
        raw.update(zip(positional[:named], free[:named]))
        if len(free) > named:
            raw[positional[-1]] = free[named:]  # type: ignore[assignment]
    elif len(free) > len(positional):
        extra = free[len(positional)]
        raise UsageError(f"unexpected argument {extra!r}: settings are key=value (see --help)")
    else:
        raw.update(zip(positional, free))
    return overrides, raw, show


def _apply(cfg: DictConfig, key: str, value: Any) -> None:
    try:
        OmegaConf.update(cfg, key, value, merge=False)
    except OmegaConfBaseException as exc:
        raise UsageError(explain(exc, {key: value}, add_hint=False)) from exc


def parse_settings(
    schema: type[T], argv: Sequence[str], prog: str, summary: str, positional: Sequence[str] = ()
) -> T | None:
    """`argv` as an instance of the dataclass `schema`; None after ``--help`` or ``--cfg job``.

    Raises `UsageError` (one line) for unknown keys, bad values and missing required keys.
    """
    if any(a in HELP_FLAGS for a in argv):
        print_help(schema, prog, summary, positional)
        return None
    from gr00t.configs.compose import parse

    overrides, raw, show = _split(schema, argv, positional)
    cfg = OmegaConf.structured(schema)
    OmegaConf.set_struct(cfg, True)
    for key, value in raw.items():  # positional paths and --key values: taken as text, typed by the schema
        _apply(cfg, key, value)
    for ov in parse(overrides):
        if ov.is_delete() or ov.is_sweep_override():
            raise UsageError(f"{ov.input_line!r}: expected key=value")
        _apply(cfg, ov.key_or_group, ov.value())
    if show:
        print(OmegaConf.to_yaml(cfg), end="")
        return None
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise UsageError(f"missing required key(s) {', '.join(f'{k}=...' for k in missing)} (see --help)")
    settings = OmegaConf.to_object(cfg)
    config_dir = getattr(settings, "config_dir", None)
    if config_dir:
        from gr00t.paths import add_user_config_dir

        try:
            add_user_config_dir(config_dir)
        except FileNotFoundError as exc:
            raise UsageError(str(exc)) from exc
    return settings  # type: ignore[return-value]
