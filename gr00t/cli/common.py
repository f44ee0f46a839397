"""Shared plumbing of the Hydra training commands (`gr00t-train`, `gr00t-finetune`).

A recipe (`recipes/<name>.yaml`) is the Hydra primary config; the config groups (`model/`,
`embodiment/`, `trainer/`, `launcher/`) live in `configs/` and are put on Hydra's search path.
`recipe=<name>` on the command line selects the primary config (it becomes `--config-name`).

Before Hydra runs, every override is checked against the composed config so that a typo fails
with the valid choices and a did-you-mean (`trainer.max_stpes=5` → `trainer.max_steps`), rather
than with Hydra's bare "Key 'max_stpes' is not in struct".
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from gr00t.paths import config_root, recipes_root

CONFIG_GROUPS = ("model", "embodiment", "trainer", "launcher")
# Hydra flags that take the next argument as their value.
_FLAGS_WITH_VALUE = (
    "--cfg",
    "-c",
    "--package",
    "-p",
    "--info",
    "--config-name",
    "-cn",
    "--config-path",
    "-cp",
    "--config-dir",
    "-cd",
    "--experimental-rerun",
)
_HELP_FLAGS = ("--help", "-h", "--hydra-help", "--version", "--shell-completion", "-sc", "--info", "-i")


class ConfigError(ValueError):
    """A command-line override or a config value is invalid; the message lists the valid choices."""


# ---- discovery ----------------------------------------------------------------------------------


def available_recipes() -> list[str]:
    """Recipe names (`recipes/*.yaml`)."""
    return sorted(p.stem for p in recipes_root().glob("*.yaml"))


def group_options(group: str) -> list[str]:
    """Options of a config group (`configs/<group>/*.yaml`)."""
    return sorted(p.stem for p in (config_root() / group).glob("*.yaml"))


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`" Did you mean 'x'?"` for the closest choice, or an empty string."""
    hint = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" Did you mean {hint[0]!r}?" if hint else ""


def searchpath_override() -> str:
    """The override that puts `configs/` on Hydra's search path."""
    return f"hydra.searchpath=[file://{config_root().resolve()}]"


# ---- argv handling ------------------------------------------------------------------------------


def split_argv(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split a command line into (Hydra flags with their values, key=value overrides)."""
    flags: list[str] = []
    overrides: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("-"):
            flags.append(arg)
            if (
                arg in _FLAGS_WITH_VALUE
                and "=" not in arg
                and i + 1 < len(argv)
                and not argv[i + 1].startswith("-")
            ):
                # `--info` and `--cfg` take an optional/required word; the others a value.
                if arg not in ("--info", "-i") or argv[i + 1] in (
                    "all",
                    "config",
                    "defaults",
                    "defaults-tree",
                    "plugins",
                    "searchpath",
                ):
                    flags.append(argv[i + 1])
                    i += 1
        else:
            overrides.append(arg)
        i += 1
    return flags, overrides


def pick_recipe(overrides: Sequence[str], default: str) -> str:
    """The recipe named by a `recipe=<name>` override (or `default`), checked to exist."""
    name = default
    for item in overrides:
        if item.startswith("recipe="):
            name = item.split("=", 1)[1]
    names = available_recipes()
    if name not in names:
        raise ConfigError(
            f"recipe={name!r}: no file {recipes_root() / (name + '.yaml')}. "
            f"Valid recipes: {names}.{did_you_mean(name, names)}"
        )
    return name


# ---- override validation ------------------------------------------------------------------------


def _dotted_paths(node: Any, prefix: str = "") -> list[str]:
    out: list[str] = []
    if isinstance(node, DictConfig):
        for key in node.keys():
            path = f"{prefix}{key}"
            out.append(path)
            child = node._get_node(key)
            if isinstance(child, DictConfig):
                out.extend(_dotted_paths(child, path + "."))
    return out


def _check_key(cfg: DictConfig, key: str) -> Any:
    """Return the node at dotted `key`; raise a did-you-mean error when some part does not exist."""
    node: Any = cfg
    parts = key.split(".")
    for depth, part in enumerate(parts):
        where = ".".join(parts[:depth])
        if isinstance(node, ListConfig) and part.isdigit() and int(part) < len(node):
            node = node._get_node(int(part))
            continue
        if not isinstance(node, DictConfig) or part not in node.keys():
            if isinstance(node, DictConfig):
                siblings = [str(k) for k in node.keys()]
                prefix = f"{where}." if where else ""
                close = difflib.get_close_matches(part, siblings, n=1, cutoff=0.6)
                if close:
                    suggestion = prefix + close[0]
                else:  # a key given at the wrong level, e.g. `max_steps=5` for `trainer.max_steps=5`
                    paths = [p for p in _dotted_paths(cfg) if not key.startswith(p + ".")]
                    leaf = [p for p in paths if p.rsplit(".", 1)[-1] == part]
                    close = leaf or difflib.get_close_matches(key, paths, n=1, cutoff=0.8)
                    suggestion = close[0] if close else None
                hint = f" Did you mean {suggestion!r}?" if suggestion else ""
                scope = f"'{where}'" if where else "the top level"
                raise ConfigError(
                    f"unknown config key {key!r}: {scope} has no key {part!r}.{hint} "
                    f"Valid keys of {scope}: {sorted(siblings)}. (Use +{key}=... to add a new key on purpose.)"
                )
            raise ConfigError(f"unknown config key {key!r}: {'.'.join(parts[:depth])!r} is not a mapping")
        node = node._get_node(part)
    return node


def _check_value_type(key: str, old: Any, new: Any) -> None:
    """Reject a value whose type cannot replace the recipe's (e.g. `trainer.max_steps=ten`)."""
    if old is None or new is None or isinstance(old, str):
        return
    if isinstance(old, bool):
        if not isinstance(new, bool):
            raise ConfigError(f"{key}={new!r}: expected true or false")
    elif isinstance(old, int):
        if isinstance(new, bool) or not isinstance(new, int):
            raise ConfigError(f"{key}={new!r}: expected an integer (current value {old!r})")
    elif isinstance(old, float):
        if isinstance(new, bool) or not isinstance(new, (int, float)):
            raise ConfigError(f"{key}={new!r}: expected a number (current value {old!r})")


def validate_overrides(recipe: str, overrides: Sequence[str]) -> DictConfig:
    """Compose `recipe` with `overrides` and check every override names a real key or group option.

    Returns the composed job config (without the `hydra` node). Raises `ConfigError`.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as exc:
        raise ConfigError(f"cannot parse the command line: {exc}") from exc

    group_overrides = []
    for ov in parsed:
        key = ov.key_or_group
        if key in CONFIG_GROUPS and not ov.is_delete():
            value = ov.value()
            options = group_options(key)
            if not isinstance(value, str) or value not in options:
                raise ConfigError(
                    f"{key}={value!r}: no file {config_root() / key / (str(value) + '.yaml')}. "
                    f"Valid choices for {key}: {options}.{did_you_mean(str(value), options)}"
                )
            group_overrides.append(ov.input_line)

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(recipes_root().resolve()), version_base="1.3"):
            base = compose(recipe, overrides=[searchpath_override(), *group_overrides])
            for ov in parsed:
                key = ov.key_or_group
                if (
                    key in CONFIG_GROUPS
                    or key == "recipe"
                    or key.startswith("hydra")
                    or ov.is_add()
                    or ov.is_force_add()
                    or ov.is_delete()
                    or ov.package is not None
                ):
                    continue
                node = _check_key(base, key)
                if not ov.is_sweep_override() and not isinstance(node, (DictConfig, ListConfig)):
                    _check_value_type(key, node._value() if hasattr(node, "_value") else None, ov.value())
            full = compose(recipe, overrides=[searchpath_override(), *overrides])
    except HydraException as exc:
        raise ConfigError(str(exc)) from exc
    finally:
        GlobalHydra.instance().clear()
    return full


# ---- Hydra entry ------------------------------------------------------------------------------------


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean "the input is wrong" (reported as one line, exit code 2)."""
    from gr00t.data.embodiment import EmbodimentConfigError
    from gr00t.data.mixture import MixtureError
    from gr00t.data.stats import StatsError
    from gr00t.model.checkpoint_files import IncompleteCheckpointError
    from gr00t.train.build import BuildError
    from gr00t.train.run_lock import RunDirLocked

    return (
        ConfigError,
        BuildError,
        EmbodimentConfigError,
        MixtureError,
        StatsError,
        RunDirLocked,
        IncompleteCheckpointError,
    )


def _rank() -> int:
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")) or 0)


def run_hydra(
    prog: str, default_recipe: str, task: Callable[[DictConfig], Any], argv: Sequence[str] | None = None
) -> int:
    """Validate the command line, then run `task(cfg)` under `hydra.main`. Returns an exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    flags, overrides = split_argv(argv)
    help_only = any(f in _HELP_FLAGS for f in flags)
    try:
        recipe = pick_recipe(overrides, default_recipe)
        if not help_only:
            composed = validate_overrides(recipe, overrides)
            multi = int(os.environ.get("WORLD_SIZE", "1")) > 1
            raw_run_dir = str(composed._get_node("run_dir")._value()) if "run_dir" in composed else ""
            if multi and "${now:" in raw_run_dir and "--cfg" not in flags:
                # the default run_dir holds a timestamp, which the processes would each resolve differently
                raise ConfigError(
                    "with several processes (WORLD_SIZE > 1) give run_dir=<directory> explicitly"
                )
    except ConfigError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2

    import hydra

    extra = ["--config-dir", str(config_root().resolve())]
    rank_overrides: list[str] = [f"hydra.job.name={prog}"]
    if _rank() != 0:  # one copy of .hydra/ and of the job log per run, written by rank 0
        rank_overrides += ["hydra.output_subdir=null", "hydra/job_logging=stdout"]
    result: dict[str, Any] = {}

    @hydra.main(version_base="1.3", config_path=str(recipes_root().resolve()), config_name=recipe)
    def _main(cfg: DictConfig) -> None:
        try:
            result["value"] = task(cfg)
        except user_errors() as exc:  # bad input: one clear line, no traceback
            print(f"{prog}: error: {exc}", file=sys.stderr)
            result["value"] = 2

    saved = sys.argv
    sys.argv = [prog, *extra, *flags, *overrides, *rank_overrides]
    try:
        _main()
    except SystemExit as exc:  # Hydra exits on its own errors (already printed)
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    finally:
        sys.argv = saved
    code = result.get("value")
    return code if isinstance(code, int) else 0


def to_plain(cfg: DictConfig) -> dict[str, Any]:
    """The resolved job config as plain containers."""
    data = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    assert isinstance(data, dict)
    return data


def describe_path(path: str | os.PathLike) -> str:
    """Absolute form of a path for log lines."""
    return str(Path(path).expanduser().resolve())
