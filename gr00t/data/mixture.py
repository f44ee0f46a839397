"""Named training mixtures (`data_mixtures/<name>.yaml`) and co-training.

Schema of a mixture file (every field is checked; errors name the file and the key)::

    description: free text
    data_root: /datasets        # optional base of relative paths (see `resolve_root`)
    datasets:                   # at least one
      - name: demo              # optional, default: the path's last component
        path: demo              # dataset directory (LeRobot v2.x/v3.0 + meta/modality.json)
        embodiment: new_embodiment
        weight: 1.0             # relative share of draws (normalised over the mixture), > 0
        intervention: {column: is_intervention, weight: 3.0}   # optional, gr00t.data.intervention
    co_training_mixture: pretrain_n16   # optional: mix another mixture in ...
    co_training_ratio: 0.2              # ... so that it receives this fraction of all draws

Weights are shares of the sampler's draws (`MixtureSampler(weights=...)`), not of samples: a
dataset with weight 0.3 supplies 30 % of every epoch whatever its size (small datasets cycle,
large ones are subsampled without replacement). With co-training, the file's own datasets share
``1 - co_training_ratio`` of the draws in proportion to their weights, and the datasets of the
co-training mixture share ``co_training_ratio`` in proportion to theirs.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gr00t.data.intervention import InterventionWeighting, parse_intervention
from gr00t.data.yaml_file import load_yaml_mapping
from gr00t.paths import available, default_data_root, find_file, search_dirs

DATA_ROOT_ENV = "GR00T_DATA_ROOT"
_TOP_KEYS = ("description", "data_root", "datasets", "co_training_mixture", "co_training_ratio")
_ENTRY_KEYS = ("name", "path", "embodiment", "weight", "intervention")


class MixtureError(ValueError):
    """A mixture name is unknown or its file is malformed."""


@dataclass(frozen=True)
class MixtureEntry:
    """One dataset of a mixture, with its normalised share of draws."""

    name: str
    path: Path
    embodiment: str
    weight: float
    source: str = "main"  # "main" or the name of the co-training mixture it came from
    intervention: InterventionWeighting | None = None  # None: the embodiment's, if any


@dataclass(frozen=True)
class Mixture:
    """An ordered list of datasets whose weights sum to 1."""

    name: str
    entries: tuple[MixtureEntry, ...]

    @property
    def weights(self) -> list[float]:
        return [e.weight for e in self.entries]

    @property
    def paths(self) -> list[Path]:
        return [e.path for e in self.entries]

    @property
    def embodiments(self) -> list[str]:
        """Distinct embodiments in first-appearance order."""
        return list(dict.fromkeys(e.embodiment for e in self.entries))

    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML-ready description (recorded with checkpoints)."""
        return {
            "name": self.name,
            "datasets": [
                {
                    "name": e.name,
                    "path": str(e.path),
                    "embodiment": e.embodiment,
                    "weight": e.weight,
                    "source": e.source,
                    **({"intervention": e.intervention.to_dict()} if e.intervention else {}),
                }
                for e in self.entries
            ],
        }


def available_mixtures() -> list[str]:
    """Names of the known mixtures: shipped (`gr00t/configs/data_mixtures/`) and the user's
    (`<config_dir>/data_mixtures/`, `$GR00T_MIXTURES_DIR`)."""
    return available("data_mixtures")


def mixture_path(name: str) -> Path:
    """File of mixture `name`, with a did-you-mean error when there is none."""
    path = find_file("data_mixtures", name)
    if path is not None:
        return path
    names = available_mixtures()
    hint = difflib.get_close_matches(name, names, n=1)
    extra = f" Did you mean {hint[0]!r}?" if hint else ""
    where = ", ".join(str(d) for d in search_dirs("data_mixtures"))
    raise MixtureError(
        f"unknown data mixture {name!r} (no {name}.yaml in {where}). Available mixtures: {names}.{extra}"
    )


def resolve_root(data_root: str | Path | None, file_root: Any) -> Path:
    """Base directory of relative dataset paths.

    Precedence: the explicit ``data_root`` argument, then ``$GR00T_DATA_ROOT``, then the file's
    ``data_root`` field, then ``./data``. A relative result is taken from the current directory.
    """
    for candidate in (data_root, os.environ.get(DATA_ROOT_ENV), file_root):
        if candidate not in (None, ""):
            return Path(str(candidate)).expanduser()
    return default_data_root()


def load_mixture(
    name_or_path: str | Path,
    data_root: str | Path | None = None,
    co_training_ratio: float | None = None,
    _seen: tuple[str, ...] = (),
) -> Mixture:
    """Load a mixture by name (`demo`, `pretrain_n16`) or YAML path; weights come back normalised.

    ``co_training_ratio`` overrides the file's value (it needs ``co_training_mixture`` in the file).
    """
    text = str(name_or_path)
    path = Path(text).expanduser() if text.endswith((".yaml", ".yml")) else mixture_path(text)
    if not path.is_file():
        raise MixtureError(f"mixture file {path} does not exist")
    if path.stem in _seen:
        raise MixtureError(f"{path}: co_training_mixture forms a cycle: {' -> '.join(_seen + (path.stem,))}")
    data = load_yaml_mapping(path, MixtureError)
    _check_keys(path, "", data, _TOP_KEYS)
    root = resolve_root(data_root, data.get("data_root"))
    entries = _parse_entries(path, data.get("datasets"), root)

    other = data.get("co_training_mixture")
    ratio = data.get("co_training_ratio") if co_training_ratio is None else co_training_ratio
    if other is None:
        if co_training_ratio not in (None, 0, 0.0) or data.get("co_training_ratio") not in (None, 0, 0.0):
            raise MixtureError(f"{path}: key 'co_training_ratio' is set but 'co_training_mixture' is missing")
        return Mixture(path.stem, _normalised(entries, 1.0))
    if not isinstance(other, str) or not other:
        raise MixtureError(f"{path}: key 'co_training_mixture': expected a mixture name, got {other!r}")
    ratio = _ratio(path, ratio)
    co = load_mixture(other, data_root=data_root, _seen=_seen + (path.stem,))
    return co_train(Mixture(path.stem, _normalised(entries, 1.0)), co, ratio)


def co_train(finetune: Mixture, pretrain: Mixture, co_training_ratio: float) -> Mixture:
    """Mix ``pretrain`` into ``finetune`` so that it receives ``co_training_ratio`` of all draws."""
    ratio = _ratio(Path(finetune.name), co_training_ratio)
    main = _normalised(finetune.entries, 1.0 - ratio)
    extra = tuple(
        replace(e, source=e.source if e.source != "main" else pretrain.name)
        for e in _normalised(pretrain.entries, ratio)
    )
    entries = tuple(e for e in main + extra if e.weight > 0)
    return Mixture(finetune.name, entries)


def single_dataset(path: str | Path, embodiment: str) -> Mixture:
    """A one-dataset mixture (the CLI's `data=<dataset dir>`)."""
    p = Path(path).expanduser()
    return Mixture(p.name, (MixtureEntry(p.name, p, embodiment, 1.0),))


def resolve_data(
    data: str | Path,
    embodiment: str | None = None,
    data_root: str | Path | None = None,
    co_training_ratio: float | None = None,
) -> Mixture:
    """The CLI's `data=` argument: a dataset directory (needs ``embodiment``), a mixture YAML path
    or a mixture name."""
    text = str(data)
    p = Path(text).expanduser()
    if p.is_dir():
        if not embodiment:
            raise MixtureError(
                f"data={text!r} is a dataset directory: name its embodiment (embodiment=<name>)"
            )
        mixture = single_dataset(p, embodiment)
        if co_training_ratio:
            raise MixtureError(
                f"co_training_ratio={co_training_ratio} needs a mixture file naming co_training_mixture, "
                f"but data={text!r} is a single dataset directory"
            )
        return mixture
    if "/" in text and not text.endswith((".yaml", ".yml")):
        raise MixtureError(f"data={text!r}: no such dataset directory (and not a mixture name or .yaml file)")
    return load_mixture(text, data_root=data_root, co_training_ratio=co_training_ratio)


# ---- helpers ------------------------------------------------------------------------------------


def _check_keys(path: Path, where: str, data: Mapping[str, Any], allowed: Sequence[str]) -> None:
    for key in data:
        if key not in allowed:
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            extra = f" Did you mean {hint[0]!r}?" if hint else ""
            raise MixtureError(f"{path}: key {where}{key!r}: unknown field; allowed: {list(allowed)}.{extra}")


def _parse_entries(path: Path, raw: Any, root: Path) -> tuple[MixtureEntry, ...]:
    if not isinstance(raw, list) or not raw:
        raise MixtureError(f"{path}: key 'datasets': expected a non-empty list, got {raw!r}")
    entries = []
    for i, item in enumerate(raw):
        where = f"datasets[{i}]."
        if not isinstance(item, Mapping):
            raise MixtureError(f"{path}: key 'datasets[{i}]': expected a mapping, got {item!r}")
        _check_keys(path, where, item, _ENTRY_KEYS)
        for required in ("path", "embodiment"):
            if not isinstance(item.get(required), str) or not item[required]:
                raise MixtureError(
                    f"{path}: key '{where}{required}': expected a non-empty string, got {item.get(required)!r}"
                )
        weight = item.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
            raise MixtureError(f"{path}: key '{where}weight': expected a positive number, got {weight!r}")
        ds_path = Path(item["path"]).expanduser()
        if not ds_path.is_absolute():
            ds_path = root / ds_path
        name = str(item.get("name") or ds_path.name)
        intervention = parse_intervention(
            item.get("intervention"),
            f"{where}intervention",
            lambda key, msg: MixtureError(f"{path}: key {key!r}: {msg}"),
        )
        entries.append(
            MixtureEntry(name, ds_path, item["embodiment"], float(weight), intervention=intervention)
        )
    names = [e.name for e in entries]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise MixtureError(
            f"{path}: key 'datasets': duplicate dataset names {dupes}; set distinct 'name' fields"
        )
    return tuple(entries)


def _normalised(entries: Sequence[MixtureEntry], total: float) -> tuple[MixtureEntry, ...]:
    s = sum(e.weight for e in entries)
    return tuple(replace(e, weight=total * e.weight / s) for e in entries)


def _ratio(path: Path, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise MixtureError(f"{path}: key 'co_training_ratio': expected a number in [0, 1), got {value!r}")
    return float(value)
