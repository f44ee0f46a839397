"""Where configuration files are found: the ones shipped in the package, then the user's own.

The package ships its configuration in `gr00t/configs/` (read through `importlib.resources`, so
a wheel install works from any folder)::

    recipes/        top-level Hydra recipes (finetune_n16, pretrain_n16, demo)
    model/ trainer/ launcher/    Hydra config groups
    embodiment/     robot configs (one YAML per robot)
    data_mixtures/  named co-training mixtures
    deepspeed/      DeepSpeed JSON configs

A user config folder has the same layout (any subset of it) and ADDS to the shipped files; a
user file with the same name as a shipped one takes precedence. Folders come from
``$GR00T_CONFIG_DIR`` (several separated by ``os.pathsep``) and from ``config_dir=<folder>`` on
any command line (`add_user_config_dir`). ``$GR00T_MIXTURES_DIR`` and ``$GR00T_RECIPES_DIR`` add
one folder of mixtures / recipes each.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

CONFIG_DIR_ENV = "GR00T_CONFIG_DIR"
# Extra single-kind folders: kind -> environment variable.
_KIND_ENV = {"data_mixtures": "GR00T_MIXTURES_DIR", "recipes": "GR00T_RECIPES_DIR"}
KINDS = ("recipes", "model", "trainer", "memory", "launcher", "embodiment", "data_mixtures", "deepspeed")


def shipped_root() -> Path:
    """`gr00t/configs/` inside the installed package."""
    return Path(str(resources.files("gr00t") / "configs"))


def user_roots() -> list[Path]:
    """User config folders from ``$GR00T_CONFIG_DIR``, in precedence order."""
    raw = os.environ.get(CONFIG_DIR_ENV, "")
    return [Path(p).expanduser().resolve() for p in raw.split(os.pathsep) if p.strip()]


def add_user_config_dir(folder: str | os.PathLike) -> Path:
    """Put `folder` first among the user config folders (also for child processes, via the environment)."""
    path = Path(folder).expanduser().resolve()
    if not path.is_dir():
        raise FileNotFoundError(f"config_dir={str(folder)!r}: no such folder")
    rest = [str(p) for p in user_roots() if p != path]
    os.environ[CONFIG_DIR_ENV] = os.pathsep.join([str(path), *rest])
    return path


def search_dirs(kind: str) -> list[Path]:
    """Folders holding files of `kind` (see `KINDS`), highest precedence first; the shipped one last."""
    if kind not in KINDS:
        raise ValueError(f"unknown config kind {kind!r}: expected one of {KINDS}")
    dirs = [root / kind for root in user_roots()]
    extra = os.environ.get(_KIND_ENV.get(kind, ""), "") if kind in _KIND_ENV else ""
    if extra:
        dirs.append(Path(extra).expanduser().resolve())
    dirs.append(shipped_root() / kind)
    return [d for d in dirs if d.is_dir()]


def find_file(kind: str, name: str, suffixes: tuple[str, ...] = (".yaml",)) -> Path | None:
    """The first `<dir>/<name><suffix>` over `search_dirs(kind)`, or None."""
    for folder in search_dirs(kind):
        for suffix in suffixes:
            path = folder / f"{name}{suffix}"
            if path.is_file():
                return path
    return None


def available(kind: str, suffixes: tuple[str, ...] = (".yaml",)) -> list[str]:
    """Names (file stems) of every file of `kind`, shipped and the user's."""
    names = {p.stem for folder in search_dirs(kind) for s in suffixes for p in folder.glob(f"*{s}")}
    return sorted(names)


def default_data_root() -> Path:
    """Base of relative mixture paths when nothing else names one: `./data`."""
    return Path("data")
