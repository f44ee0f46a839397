"""Cheap checks of a command's inputs, run before torch, transformers or the model are imported.

Folders exist, a dataset has `meta/info.json` and `meta/modality.json` with the embodiment's
keys, a checkpoint folder has its config, weights and processor, the embodiment is one the
checkpoint was trained for; Hub ids are resolved to local snapshot folders. Every failure is a
`UsageError` whose one line names the key, the value and what was expected.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from gr00t.cli.common import UsageError
from gr00t.hub import looks_like_hub_id, resolve

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")


def local_folder(key: str, value: str, repo_type: str, what: str) -> Path:
    """`value` as a local folder: itself, or the snapshot of a Hugging Face Hub id."""
    path = Path(value).expanduser()
    if path.is_dir():
        return path
    if looks_like_hub_id(value):
        return resolve(value, repo_type=repo_type, key=key)
    if path.exists():
        raise UsageError(f"{key}={value!r}: {path.resolve()} is a file; expected a {what} folder")
    raise UsageError(f"{key}={value!r}: no such {what} folder ({path.resolve()}) and not a Hub id (org/name)")


def dataset(key: str, value: str, embodiment: Any | None = None) -> Path:
    """A LeRobot dataset folder (or Hub dataset id) with meta/modality.json naming `embodiment`'s keys."""
    root = local_folder(key, value, "dataset", "dataset")
    if not (root / "meta" / "info.json").is_file():
        raise UsageError(f"{key}={value!r}: {root} is not a LeRobot dataset (no meta/info.json)")
    if not (root / "meta" / "modality.json").is_file():
        raise UsageError(
            f"{key}={value!r}: {root}/meta/modality.json is missing (it names the dataset's state/action "
            f"slices, cameras and language); write a default one with `gr00t-stats {root} --write-modality` "
            "and check it"
        )
    if embodiment is not None:
        modality_has_keys(root, embodiment)
    return root


def modality_has_keys(root: Path, embodiment: Any) -> None:
    """meta/modality.json names every camera, state and action key of `embodiment`."""
    from gr00t.data.modality import load_modality

    modality = load_modality(root)
    for section, keys in (
        ("video", embodiment.video.keys),
        ("state", embodiment.state.keys),
        ("action", embodiment.action.keys),
    ):
        have = getattr(modality, section)
        missing = [k for k in keys if k not in have]
        if missing:
            raise UsageError(
                f"{root}/meta/modality.json: {section} keys {missing} of embodiment {embodiment.name or embodiment.tag!r} "
                f"({embodiment.source}) are missing; it has {sorted(have)}"
            )


def checkpoint(key: str, value: str, prog: str) -> Path:
    """A loadable policy checkpoint: the folder itself, or the newest complete one of a run folder."""
    from gr00t.train.checkpoint import incomplete_checkpoints, latest_checkpoint

    path = local_folder(key, value, "model", "checkpoint")
    if not (path / "config.json").is_file():
        latest = latest_checkpoint(path)
        if latest is None:
            started = sorted(p.name for p in incomplete_checkpoints(path))
            extra = f" (incomplete: {started})" if started else ""
            raise UsageError(
                f"{key}={value!r}: {path} is neither a checkpoint folder (no config.json) nor a run folder "
                f"with a complete checkpoint-<step>/ inside{extra}"
            )
        print(
            f"{prog}: {path} is a run folder; using its newest complete checkpoint {latest.name}",
            file=sys.stderr,
        )
        path = latest
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise UsageError(f"{key}={value!r}: {path} has config.json but no model.safetensors")
    if not (path / "processor_config.json").is_file():
        raise UsageError(
            f"{key}={value!r}: {path} has no processor_config.json: not a checkpoint written by gr00t training"
        )
    return path


def checkpoint_embodiment(path: Path, embodiment: str) -> str:
    """The tag of `embodiment` (name, tag or robot YAML) among those `path` was trained for."""
    from gr00t.data.embodiment import EmbodimentConfigError, load_embodiment

    try:
        trained = json.loads((path / "processor_config.json").read_text())["embodiments"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UsageError(
            f"{path}/processor_config.json is unreadable or has no 'embodiments' ({exc})"
        ) from exc
    names = {
        str((v.get("embodiment") or {}).get("name")): tag for tag, v in trained.items() if isinstance(v, dict)
    }
    if embodiment in trained:
        return embodiment
    if embodiment in names:
        return names[embodiment]
    try:
        tag = load_embodiment(embodiment).tag
    except EmbodimentConfigError:
        tag = None
    if tag in trained:
        return tag
    raise UsageError(
        f"embodiment={embodiment!r}: {path} was trained for {sorted(trained)}; pass one of them "
        "(a name, tag or the robot's YAML file)"
    )


def deepspeed_choice(value: str | None) -> None:
    """`trainer.deepspeed`: auto, none, a shipped/user config name, or a JSON file."""
    from gr00t.paths import available

    name = str(value or "none").strip()
    if name.lower() in ("auto", "none", "off", "false", "no", ""):
        return
    names = available("deepspeed", (".json",))
    if Path(name).suffix:
        if not Path(name).expanduser().is_file():
            raise UsageError(f"trainer.deepspeed={name!r}: no such file")
    elif name not in names:
        raise UsageError(
            f"trainer.deepspeed={name!r}: expected auto, none, one of {names} or a path to a JSON file"
        )


def training_inputs(cfg: Any) -> None:
    """Cheap checks of a composed recipe, before torch is imported. Hugging Face ids in `data=` and
    `base=` are resolved here (downloaded unless cached or offline) and replaced by local folders."""
    from gr00t.data.embodiment import load_embodiment
    from gr00t.train import build_data
    from gr00t.train.build import resolve_base_checkpoint

    main = build_data.main_embodiment(cfg)  # validates the robot's YAML
    single = build_data.DistInfo(rank=0, world_size=1, local_rank=0)
    if cfg.get("data") is not None and not build_data.is_demo(cfg):
        data = str(cfg.data)
        if looks_like_hub_id(data):
            cfg.data = str(resolve(data, repo_type="dataset", key="data"))
        elif not Path(data).expanduser().exists() and (data.startswith((".", "/", "~")) or "/" in data):
            raise UsageError(f"data={data!r}: no such dataset folder ({Path(data).expanduser().resolve()})")
    if not build_data.is_demo(cfg):
        mixture = build_data.resolve_mixture(
            cfg, (main.name or main.tag) if main is not None else None, single
        )
        for entry in mixture.entries:
            known = main is not None and entry.embodiment in (main.name, main.tag)
            label = "data" if len(mixture.entries) == 1 else f"data ({entry.name})"
            dataset(label, str(entry.path), main if known else load_embodiment(entry.embodiment))
    if cfg.get("base"):
        cfg.base = str(resolve_base_checkpoint(str(cfg.base)))
    deepspeed_choice(cfg.trainer.get("deepspeed"))
