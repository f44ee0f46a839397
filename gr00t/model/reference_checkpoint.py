"""Load NVIDIA's own GR00T N1.6 checkpoint folders (e.g. the released GR00T-N1.6-3B).

The reference saves its model with `save_pretrained`, so a release folder holds

- `config.json` — the reference `Gr00tN1d6Config` (`"model_type": "Gr00tN1d6"`,
  `"architectures": ["Gr00tN1d6"]`): one flat dict plus a nested `diffusion_model_cfg`;
  the backbone is named only by `model_name` (`"nvidia/Eagle-Block2A-2B-v2"`), its sizes are not in
  the file;
- `model.safetensors` or `model-*.safetensors` + `model.safetensors.index.json` — weights whose key
  layout is the one `Gr00tN16Model` builds (see tests/model/test_release_layout.py), so they load as
  they are;
- `processor_config.json`, `statistics.json`, `embodiment_id.json` — data-side metadata, read by
  `gr00t.data.reference_metadata`, not here.

This module turns that `config.json` into a `Gr00tN16Config`. Every field of the reference schema
is handled explicitly:

The tables named below live in `gr00t.model.reference_schema`:

- same name and meaning (copied): `REFERENCE_COPIED_FIELDS`;
- `diffusion_model_cfg.{num_layers, num_attention_heads, attention_head_dim, output_dim, dropout,
  final_dropout, norm_type, interleave_self_attention}` → `dit_*` / `interleave_self_attention`;
- fields whose value must be one we implement (`REFERENCE_REQUIRED_VALUES`, e.g.
  `reproject_vision` false, `backbone_model_type` "eagle", `diffusion_model_cfg.positional_embeddings`
  null): any other value raises `ReferenceCheckpointError` naming the field;
- `model_name`: must name the Eagle-Block2A-2B-v2 backbone (hub id, or a local folder of that name);
  the backbone sizes then come from `RELEASE_VISION_CONFIG` / `RELEASE_TEXT_CONFIG`;
- runtime, image-augmentation and unused fields (`REFERENCE_IGNORED_FIELDS`) are not part of the
  model; they are returned in `ReferenceConversion.ignored` so callers can log or use them;
- generic `PretrainedConfig` keys (`architectures`, `transformers_version`, `dtype`, ...) are skipped;
- any other key raises, naming it (it may change the architecture in a way we cannot see).

A field absent from the file takes the reference's default (`REFERENCE_DEFAULTS`, or the reference
DiT's constructor defaults for keys missing inside `diffusion_model_cfg`), as the reference would.

`Gr00tN16Model.from_pretrained(folder)` calls `prepare_from_pretrained_kwargs`, so a reference folder
loads directly; keyword arguments named like `Gr00tN16Config` fields override converted values
(e.g. a tiny `vision_config`/`text_config` for tests, or `tune_visual=True`).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gr00t.model.config import RELEASE_TEXT_CONFIG, RELEASE_VISION_CONFIG, Gr00tN16Config
from gr00t.model.reference_schema import (
    CONFIG_FILE,
    DIFFUSION_FIELD_MAP,
    GENERIC_CONFIG_KEYS,
    REFERENCE_BACKBONE,
    REFERENCE_COPIED_FIELDS,
    REFERENCE_DEFAULTS,
    REFERENCE_DIFFUSION_DEFAULTS,
    REFERENCE_DIT_CONSTRUCTOR_DEFAULTS,
    REFERENCE_IGNORED_FIELDS,
    REFERENCE_MODEL_TYPE,
    REFERENCE_REQUIRED_VALUES,
)


class ReferenceCheckpointError(ValueError):
    """A reference checkpoint's config cannot be represented by `Gr00tN16Config`."""


@dataclass
class ReferenceConversion:
    """Result of `convert_reference_config`: our config plus the reference fields it did not use."""

    config: Gr00tN16Config
    ignored: dict[str, Any] = field(default_factory=dict)


def config_field_names() -> frozenset[str]:
    """Names of `Gr00tN16Config.__init__` parameters (the fields an override may set)."""
    params = inspect.signature(Gr00tN16Config.__init__).parameters.values()
    return frozenset(p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD and p.name != "self")


def read_config_json(folder: str | Path) -> dict[str, Any] | None:
    """The parsed `config.json` of a local folder; None when there is no such file."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ReferenceCheckpointError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ReferenceCheckpointError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def is_reference_config(data: Mapping[str, Any]) -> bool:
    """Whether a parsed config.json is the reference's N1.6 schema."""
    return data.get("model_type") == REFERENCE_MODEL_TYPE or REFERENCE_MODEL_TYPE in (
        data.get("architectures") or []
    )


def is_reference_checkpoint(folder: str | Path) -> bool:
    """Whether `folder` is a local checkpoint written by NVIDIA's reference N1.6 code."""
    data = read_config_json(folder)
    return data is not None and is_reference_config(data)


def _check_backbone_name(name: Any, source: str) -> None:
    text = str(name).rstrip("/")
    if text == REFERENCE_BACKBONE or Path(text).name == Path(REFERENCE_BACKBONE).name:
        return
    raise ReferenceCheckpointError(
        f"{source}: model_name={name!r} cannot be represented: only the {REFERENCE_BACKBONE!r} backbone "
        "(hub id, or a local folder of that name) has a known layout in this project"
    )


def _equal(value: Any, required: Any) -> bool:
    """`value == required`, with booleans not equal to numbers and floats compared to rounding."""
    if isinstance(required, bool) or isinstance(value, bool):
        return value is required
    if isinstance(required, float) and isinstance(value, (int, float)):
        return abs(float(value) - required) <= 1e-9 * max(1.0, abs(required))
    return value == required


def convert_reference_config(
    data: Mapping[str, Any], source: str = CONFIG_FILE, overrides: Mapping[str, Any] | None = None
) -> ReferenceConversion:
    """Map a reference `config.json` (parsed) onto a `Gr00tN16Config`.

    `overrides` are `Gr00tN16Config` fields applied after the mapping (before validation), e.g.
    backbone sizes the reference file cannot express. Raises `ReferenceCheckpointError` naming the
    first field (dotted for `diffusion_model_cfg.*`) whose value cannot be represented.
    """
    flat = _flatten_reference(data, source)
    fields, ignored = _our_fields(flat, source)
    return ReferenceConversion(config=_finish_config(fields, overrides, source), ignored=ignored)


def _flatten_reference(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The reference fields with defaults filled in, ``diffusion_model_cfg.*`` flattened."""
    if not is_reference_config(data):
        raise ReferenceCheckpointError(
            f"{source}: model_type={data.get('model_type')!r} is not the reference N1.6 type {REFERENCE_MODEL_TYPE!r}"
        )
    if data.get("model_type", REFERENCE_MODEL_TYPE) != REFERENCE_MODEL_TYPE:
        raise ReferenceCheckpointError(
            f"{source}: model_type={data.get('model_type')!r} but architectures name {REFERENCE_MODEL_TYPE!r}; "
            f"expected model_type {REFERENCE_MODEL_TYPE!r}"
        )
    known = set(REFERENCE_DEFAULTS) | GENERIC_CONFIG_KEYS
    unknown = sorted(k for k in data if k not in known)
    if unknown:
        raise ReferenceCheckpointError(
            f"{source}: field(s) {unknown} are not part of the reference N1.6 schema this converter knows; "
            "their effect on the architecture cannot be represented"
        )
    ref = {**REFERENCE_DEFAULTS, **{k: v for k, v in data.items() if k in REFERENCE_DEFAULTS}}
    diffusion = ref["diffusion_model_cfg"]
    if not isinstance(diffusion, Mapping):
        raise ReferenceCheckpointError(f"{source}: diffusion_model_cfg={diffusion!r}: expected an object")
    if "diffusion_model_cfg" in data:  # keys missing inside a given dict take the DiT constructor's defaults
        diffusion = {**REFERENCE_DIT_CONSTRUCTOR_DEFAULTS, **diffusion}
    else:
        diffusion = {**REFERENCE_DIT_CONSTRUCTOR_DEFAULTS, **REFERENCE_DIFFUSION_DEFAULTS}
    flat = {k: v for k, v in ref.items() if k != "diffusion_model_cfg"}
    flat.update({f"diffusion_model_cfg.{k}": v for k, v in diffusion.items()})
    return flat


def _our_fields(flat: dict[str, Any], source: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(`Gr00tN16Config` fields, ignored reference fields) of flattened reference fields (consumed)."""
    _check_backbone_name(flat.pop("model_name"), source)
    cross_dim = flat.pop("diffusion_model_cfg.cross_attention_dim", None)
    if cross_dim is not None and cross_dim != flat["backbone_embedding_dim"]:
        raise ReferenceCheckpointError(
            f"{source}: diffusion_model_cfg.cross_attention_dim={cross_dim!r} cannot be represented: the DiT "
            f"cross-attends to backbone features of width backbone_embedding_dim={flat['backbone_embedding_dim']}"
        )
    for name, required in REFERENCE_REQUIRED_VALUES.items():
        value = flat.pop(name)
        if not _equal(value, required):
            raise ReferenceCheckpointError(
                f"{source}: {name}={value!r} cannot be represented; this project implements only {required!r}"
            )
    ignored = {name: flat.pop(name) for name in REFERENCE_IGNORED_FIELDS if name in flat}
    fields: dict[str, Any] = {
        "backbone_type": "eagle",
        "vision_config": dict(RELEASE_VISION_CONFIG),
        "text_config": dict(RELEASE_TEXT_CONFIG),
    }
    for name in REFERENCE_COPIED_FIELDS:
        fields[name] = flat.pop(name)
    for ref_name, ours in DIFFUSION_FIELD_MAP.items():
        fields[ours] = flat.pop(f"diffusion_model_cfg.{ref_name}")
    if fields["dit_norm_type"] != "ada_norm":  # our config accepts the name, the DiT builds only ada_norm
        raise ReferenceCheckpointError(
            f"{source}: diffusion_model_cfg.norm_type={fields['dit_norm_type']!r} cannot be represented "
            "(dit_norm_type): this project implements only 'ada_norm'"
        )
    leftover = sorted(flat)
    if leftover:
        raise ReferenceCheckpointError(
            f"{source}: field(s) {leftover} are not part of the reference N1.6 schema this converter knows; "
            "their effect on the architecture cannot be represented"
        )
    return fields, ignored


def _finish_config(
    fields: dict[str, Any], overrides: Mapping[str, Any] | None, source: str
) -> Gr00tN16Config:
    """Apply ``overrides`` (our field names) and build the validated config."""
    valid = config_field_names()
    bad = sorted(k for k in (overrides or {}) if k not in valid)
    if bad:
        raise ReferenceCheckpointError(f"overrides {bad} are not Gr00tN16Config fields")
    fields.update(overrides or {})
    text_width = dict(fields["text_config"]).get("hidden_size")
    if fields["backbone_embedding_dim"] != text_width:
        raise ReferenceCheckpointError(
            f"{source}: backbone_embedding_dim={fields['backbone_embedding_dim']} cannot be represented with the "
            f"Eagle-Block2A-2B-v2 backbone, whose LLM width (text_config.hidden_size) is {text_width}; the "
            "reference names its backbone only by hub id, so other backbone sizes must be given as "
            "vision_config/text_config overrides"
        )
    try:
        return Gr00tN16Config(**fields)
    except (ValueError, TypeError) as exc:
        raise ReferenceCheckpointError(f"{source}: converted config is not valid: {exc}") from exc


def load_model_config(folder: str | Path, **overrides: Any) -> Gr00tN16Config:
    """The model config of a checkpoint folder in either format (this project's or the reference's)."""
    data = read_config_json(folder)
    if data is None:
        raise FileNotFoundError(f"{Path(folder) / CONFIG_FILE} does not exist")
    if is_reference_config(data):
        return convert_reference_config(data, str(Path(folder) / CONFIG_FILE), overrides).config
    _check_own_model_type(data, Path(folder) / CONFIG_FILE)
    return Gr00tN16Config.from_pretrained(str(folder), **overrides)


def _check_own_model_type(data: Mapping[str, Any], path: Path) -> None:
    model_type = data.get("model_type")
    if model_type != Gr00tN16Config.model_type:
        raise ReferenceCheckpointError(
            f"{path}: model_type={model_type!r} is not supported; expected {Gr00tN16Config.model_type!r} "
            f"(this project) or {REFERENCE_MODEL_TYPE!r} (NVIDIA's GR00T N1.6 reference)"
        )


def prepare_from_pretrained_kwargs(pretrained: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for `PreTrainedModel.from_pretrained` that make a reference folder loadable.

    For a local reference folder (and no explicit `config`), converts its config.json, applies the
    kwargs named like `Gr00tN16Config` fields as overrides and passes the result as `config=`.
    A local folder with a config.json of any other unknown model_type raises. Anything else (this
    project's checkpoints, hub ids, an explicit config) is returned unchanged.
    """
    if "config" in kwargs:
        return kwargs
    folder = Path(str(pretrained)) / kwargs.get("subfolder", "")
    if not folder.is_dir():
        return kwargs
    data = read_config_json(folder)
    if data is None:
        return kwargs
    if not is_reference_config(data):
        _check_own_model_type(data, folder / CONFIG_FILE)
        return kwargs
    names = config_field_names()
    overrides = {k: v for k, v in kwargs.items() if k in names}
    rest = {k: v for k, v in kwargs.items() if k not in names}
    rest["config"] = convert_reference_config(data, str(folder / CONFIG_FILE), overrides).config
    return rest


__all__ = [
    "REFERENCE_BACKBONE",
    "REFERENCE_MODEL_TYPE",
    "ReferenceCheckpointError",
    "ReferenceConversion",
    "convert_reference_config",
    "is_reference_checkpoint",
    "is_reference_config",
    "load_model_config",
    "prepare_from_pretrained_kwargs",
    "read_config_json",
]
