"""Compose recipes and model presets with Hydra's compose API.

A recipe (`recipes/<name>.yaml`, shipped or in a user config folder) is the primary config; it
starts from the structured `recipe_base` (`gr00t.configs.schema.RecipeConfig`) and the config
groups (`model/`, `embodiment/`, `trainer/`, `launcher/`) of every config folder are on Hydra's
search path, the user's first. Hydra validates every override against the schema while
composing; failures become one `ConfigError` line (`gr00t.configs.errors`).

`embodiment=` also takes a tag (`unitree_g1`) or a path to a robot YAML file anywhere: the file
is registered as an option of the `embodiment` group under ``<stem>@<hash>``.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from gr00t.configs.errors import ConfigError, did_you_mean, explain, missing_option
from gr00t.paths import add_user_config_dir, available, find_file, search_dirs, shipped_root, user_roots

RECIPE_BASE = "recipe_base"
PRESET_ROOT = "model_preset"
UNSET = "_unset_"  # an empty `model` option: shows which model keys the recipe files set
GROUPS = ("model", "embodiment", "trainer", "memory", "launcher")
_registered: set[str] = set()
_explicit_files: dict[str, Path] = {}  # `embodiment` option -> the robot YAML file it was given as


@dataclass
class Composed:
    """A composed recipe: the job config and how it came about."""

    cfg: DictConfig
    recipe: str
    choices: dict[str, Any]
    overrides: list[str]  # as passed to Hydra (embodiment paths rewritten to their option)


class PresetNotFound(ConfigError, FileNotFoundError):
    """`model=<name>` names no preset file."""


def register_schemas() -> None:
    """Put the structured configs into Hydra's ConfigStore (once per process)."""
    if "schemas" in _registered:
        return
    from hydra.core.config_store import ConfigStore

    from gr00t.configs.schema import PresetConfig, RecipeConfig

    store = ConfigStore.instance()
    store.store(name=RECIPE_BASE, node=RecipeConfig)
    store.store(name=PRESET_ROOT, node=PresetConfig)
    _registered.add("schemas")


def recipe_names() -> list[str]:
    """Recipes of every config folder."""
    return available("recipes")


def group_options(group: str) -> list[str]:
    """Options of a config group, shipped and the user's."""
    return available(group)


def _searchpath(main: Path) -> str:
    dirs = [d for d in search_dirs("recipes") if d != main] + [*user_roots(), shipped_root()]
    return "hydra.searchpath=[" + ",".join(f"file://{d}" for d in dirs) + "]"


@contextlib.contextmanager
def _hydra(config_dir: Path) -> Iterator[None]:
    """Hydra initialised on `config_dir`, restoring any Hydra state that was there before."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_schemas()
    holder = GlobalHydra.instance()
    saved = holder.hydra if holder.is_initialized() else None
    holder.clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            yield
    finally:
        GlobalHydra.instance().clear()
        if saved is not None:
            GlobalHydra.instance().initialize(saved)


def parse(overrides: Sequence[str]) -> list[Any]:
    """Hydra's parse of `key=value` strings (the same grammar for every command)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    try:
        return OverridesParser.create().parse_overrides(list(overrides))
    except OverrideParseException as exc:
        first = str(exc.message).strip().splitlines()[0]
        raise ConfigError(f"cannot parse the setting {exc.override!r}: {first}") from exc


def embodiment_option(value: str) -> str:
    """The `embodiment` group option for a name, a tag or a path to a robot YAML file."""
    from gr00t.data.embodiment import EmbodimentConfigError, resolve_embodiment_path
    from gr00t.data.yaml_file import load_yaml_mapping

    if value in available("embodiment"):
        return value
    try:
        path = resolve_embodiment_path(value).resolve()
        if find_file("embodiment", path.stem) == path:
            return path.stem  # a known name (given as its tag or its path)
        data = load_yaml_mapping(path, EmbodimentConfigError)
    except EmbodimentConfigError as exc:
        raise ConfigError(str(exc)) from exc
    from hydra.core.config_store import ConfigStore

    name = f"{path.stem}@{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    ConfigStore.instance().store(group="embodiment", name=name, node=dict(data))
    _explicit_files[name] = path
    return name


def embodiment_source(option: str) -> Path | None:
    """The robot YAML file behind an `embodiment` option."""
    return _explicit_files.get(option) or find_file("embodiment", option)


def embodiment_name(option: str | None) -> str | None:
    """The robot's name for an `embodiment` option (`robot@1a2b3c4d` -> `robot`)."""
    return None if option is None else option.split("@", 1)[0]


def _prepare(overrides: Sequence[str], default_recipe: str) -> tuple[str, list[str], dict[str, Any]]:
    """(recipe, overrides for Hydra, key -> typed value) from the user's `key=value` list."""
    recipe = default_recipe
    lines: list[str] = []
    values: dict[str, Any] = {}
    for ov in parse(overrides):
        key = ov.key_or_group
        if key == "config_dir" and not ov.is_delete():
            try:
                add_user_config_dir(str(ov.value()))
            except FileNotFoundError as exc:
                raise ConfigError(str(exc)) from exc
            continue
        if key == "recipe":
            recipe = str(ov.value())
            continue
        line = ov.input_line
        if key == "embodiment" and ov.package is None and not ov.is_delete():
            value = ov.value()
            if value is not None:
                line = f"{'+' if ov.is_add() else ''}embodiment={embodiment_option(str(value))}"
        lines.append(line)
        if not ov.is_sweep_override():
            values[key] = ov.value()
    names = recipe_names()
    if recipe not in names:
        where = ", ".join(str(d) for d in search_dirs("recipes"))
        raise ConfigError(
            f"recipe={recipe!r}: no {recipe}.yaml in {where}. Valid recipes: {names}.{did_you_mean(recipe, names)}"
        )
    return recipe, lines, values


def _main_dir(recipe: str) -> Path:
    path = find_file("recipes", recipe)
    assert path is not None
    return path.parent


def _compose(recipe: str, lines: list[str], values: dict[str, Any]) -> DictConfig:
    from hydra import compose
    from hydra.errors import HydraException, MissingConfigException

    main = _main_dir(recipe)
    try:
        with _hydra(main):
            return compose(recipe, overrides=[_searchpath(main), *lines], return_hydra_config=True)
    except MissingConfigException as exc:
        group, _, option = str(exc.missing_cfg_file or "").rpartition("/")
        if group in GROUPS:
            raise ConfigError(missing_option(group, option, group_options(group))) from exc
        raise ConfigError(explain(exc)) from exc
    except (HydraException, ValueError) as exc:
        raise ConfigError(explain(exc, values)) from exc


def compose_recipe(overrides: Sequence[str], default_recipe: str, set_hydra_config: bool = True) -> Composed:
    """Compose the recipe named by `recipe=` (else `default_recipe`) with `key=value` overrides.

    Raises `ConfigError` (one line) for unknown keys, bad values or options, naming the valid ones.
    With `set_hydra_config`, `HydraConfig.get()` describes this composition afterwards.
    """
    recipe, lines, values = _prepare(overrides, default_recipe)
    full = _compose(recipe, lines, values)
    if set_hydra_config:
        from hydra.core.hydra_config import HydraConfig

        HydraConfig.instance().set_config(full)
    choices = OmegaConf.to_container(full.hydra.runtime.choices)
    assert isinstance(choices, dict)
    with open_dict(full):
        del full["hydra"]
    if full.get("run_dir") is None:
        full.run_dir = default_run_dir(full, choices)
    return Composed(full, recipe, choices, lines)


def default_run_dir(cfg: DictConfig, choices: dict[str, Any]) -> str | None:
    """`runs/<recipe>/<trainer.run_name>`, else `runs/<recipe>/<embodiment>-<dataset name>`."""
    if cfg.trainer.get("run_name"):
        return f"runs/{cfg.recipe}/{cfg.trainer.run_name}"
    if OmegaConf.is_missing(cfg, "data"):
        return None
    from gr00t.hub import hub_name, looks_like_hub_id

    data = str(cfg.data).rstrip("/")
    if data.endswith((".yaml", ".yml")):
        name = Path(data).stem
    else:
        name = hub_name(data) if looks_like_hub_id(data) else Path(data).name
    emb = embodiment_name(choices.get("embodiment"))
    return f"runs/{cfg.recipe}/{emb}-{name}" if emb else f"runs/{cfg.recipe}/{name}"


def model_keys_set(recipe: str, overrides: Sequence[str]) -> set[str]:
    """`model.<field>` keys the recipe files or `overrides` set (not the preset's): the keys that may
    change a base checkpoint's config.

    The recipe is composed once more on an untyped stand-in for `recipe_base` whose `model` group
    option is empty, so its `model` node holds exactly what the recipe files wrote."""
    from hydra.core.config_store import ConfigStore

    from gr00t.configs.schema import RecipeConfig

    register_schemas()
    store = ConfigStore.instance()
    probe = {
        "defaults": [
            "_self_",
            {"model": UNSET},
            *(d for d in RecipeConfig().defaults if isinstance(d, dict) and "model" not in d),
        ],
        "model": {},
    }
    store.store(group="model", name=UNSET, node={})
    store.store(name=RECIPE_BASE, node=probe)
    try:
        full = _compose(recipe, [f"model={UNSET}"], {})
    finally:
        store.store(name=RECIPE_BASE, node=RecipeConfig)
    keys = {str(k) for k in full.model.keys() if k != "name"}
    for ov in parse(overrides):
        key = str(ov.key_or_group)
        if key.startswith("model.") and not ov.is_delete():
            keys.add(key.split(".", 2)[1])
    return keys


def compose_preset(name: str) -> dict[str, Any]:
    """The fields of model preset `name` (shipped or a user's), validated against the schema."""
    names = group_options("model")
    if name not in names:
        raise PresetNotFound(
            f"model preset {name!r} not found in {[str(d) for d in search_dirs('model')]}. "
            f"Available: {names}.{did_you_mean(name, names)}"
        )
    from hydra import compose
    from hydra.errors import HydraException

    root = shipped_root()
    try:
        with _hydra(root):
            cfg = compose(PRESET_ROOT, overrides=[_searchpath(root), f"model={name}"])
    except HydraException as exc:
        raise ConfigError(f"model preset {name!r}: {explain(exc)}") from exc
    data = OmegaConf.to_container(cfg.model, resolve=True, enum_to_str=True)
    assert isinstance(data, dict)
    return data
