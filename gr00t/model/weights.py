"""The weights a checkpoint folder serves: raw or EMA, LoRA adapters merged, nothing missing.

A training checkpoint holds

* ``model.safetensors`` (or shards + ``model.safetensors.index.json``): the raw training weights;
* ``ema.safetensors`` (runs with ``trainer.ema_decay``): the EMA of the trained tensors, same key
  names, float32;
* for a LoRA run, peft's layout in both files (``<m>.base_layer.weight|bias``,
  ``<m>.lora_A.<adapter>.weight``, ``<m>.lora_B.<adapter>.weight``) plus ``lora_config.json``
  (``r``, ``lora_alpha``), so that a resume restores the adapters exactly.

`checkpoint_state_dict` turns that into the plain model's state dict: the EMA tensors replace the
raw ones (``weights="ema"``, or ``"auto"`` when the file exists), then every adapted layer is
merged, ``W = W_base + (lora_alpha / r) · B · A`` (computed in float32, stored in the base's
dtype). A checkpoint that lacks weights the model needs raises `MissingWeightsError`, one line
naming the keys and the file, instead of leaving them freshly initialised.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gr00t.model.checkpoint_files import WEIGHTS_INDEX_NAME, WEIGHTS_NAME

if TYPE_CHECKING:  # torch is imported where tensors are made: the command line checks stay light
    import torch

logger = logging.getLogger(__name__)

EMA_WEIGHTS_NAME = "ema.safetensors"
LORA_CONFIG_NAME = "lora_config.json"
WEIGHT_CHOICES = ("auto", "ema", "raw")
_LORA_PARTS = (".lora_A.", ".lora_B.")


class MissingWeightsError(ValueError):
    """A checkpoint lacks weights the model needs (they would be silently re-initialised)."""


def _first(names: Iterable[str], count: int = 5) -> str:
    names = sorted(names)
    shown = ", ".join(names[:count])
    return shown + (f", … ({len(names)} in all)" if len(names) > count else "")


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files of the raw weights (one file, or the shards of the index)."""
    index = folder / WEIGHTS_INDEX_NAME
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        return [folder / name for name in sorted(set(weight_map.values()))]
    return [folder / WEIGHTS_NAME]


def resolve_weights(folder: Path, weights: str) -> str:
    """``"ema"`` or ``"raw"`` for the ``weights`` choice (auto: ema when the checkpoint has it)."""
    if weights not in WEIGHT_CHOICES:
        raise ValueError(f"weights={weights!r}: expected one of {list(WEIGHT_CHOICES)}")
    has_ema = (folder / EMA_WEIGHTS_NAME).is_file()
    if weights == "ema" and not has_ema:
        raise MissingWeightsError(
            f"weights=ema: {folder} has no {EMA_WEIGHTS_NAME} (the run did not keep an EMA: trainer.ema_decay); "
            "use weights=raw"
        )
    return "ema" if weights == "ema" or (weights == "auto" and has_ema) else "raw"


def has_lora_layout(folder: Path) -> bool:
    """Whether the checkpoint stores LoRA adapters (peft layout) rather than plain weights."""
    if (folder / LORA_CONFIG_NAME).is_file():
        return True
    from safetensors import safe_open

    for path in weight_files(folder):
        if path.is_file():
            with safe_open(str(path), framework="pt") as f:
                if any(p in key for key in f.keys() for p in _LORA_PARTS):
                    return True
    return False


def needs_conversion(folder: Path, weights: str) -> bool:
    """Whether `checkpoint_state_dict` must build the state dict (EMA chosen or LoRA layout)."""
    return folder.is_dir() and (resolve_weights(folder, weights) == "ema" or has_lora_layout(folder))


def checkpoint_state_dict(folder: str | Path, weights: str = "auto") -> dict[str, torch.Tensor]:
    """The plain state dict a checkpoint serves (see the module docstring), each tensor in the dtype
    its raw weight is stored in."""
    from safetensors.torch import load_file

    folder = Path(folder)
    state: dict[str, torch.Tensor] = {}
    for path in weight_files(folder):
        state.update(load_file(str(path)))
    if resolve_weights(folder, weights) == "ema":
        ema = load_file(str(folder / EMA_WEIGHTS_NAME))
        unknown = sorted(set(ema) - set(state))
        if unknown:
            raise MissingWeightsError(
                f"{folder / EMA_WEIGHTS_NAME}: tensors {_first(unknown)} are not in {WEIGHTS_NAME}; "
                "the EMA does not belong to these weights"
            )
        for key, value in ema.items():
            state[key] = value.to(state[key].dtype)
        logger.info("%s: EMA weights (%d tensors from %s)", folder, len(ema), EMA_WEIGHTS_NAME)
    if any(p in key for key in state for p in _LORA_PARTS):
        state = merge_lora(state, read_lora_config(folder))
    return state


def read_lora_config(folder: Path) -> dict:
    """``lora_config.json`` of a LoRA checkpoint (``r`` and ``lora_alpha`` at least)."""
    path = folder / LORA_CONFIG_NAME
    if not path.is_file():
        raise MissingWeightsError(
            f"{folder}: the weights hold LoRA adapters but there is no {LORA_CONFIG_NAME} (r, lora_alpha) "
            "to merge them with"
        )
    try:
        config = json.loads(path.read_text())
        r, alpha = int(config["r"]), float(config["lora_alpha"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise MissingWeightsError(
            f"{path}: expected a JSON object with integer 'r' and 'lora_alpha' ({exc})"
        ) from None
    if r < 1 or config.get("use_rslora") or config.get("use_dora"):
        raise MissingWeightsError(
            f"{path}: unsupported LoRA settings {config} (plain LoRA with r >= 1 expected)"
        )
    return {**config, "r": r, "lora_alpha": alpha}


def merge_lora(state: Mapping[str, torch.Tensor], config: Mapping) -> dict[str, torch.Tensor]:
    """Plain weights from peft's layout: ``<m>.weight = base + (alpha / r) · B · A``, ``<m>.bias`` = base's."""
    import torch

    scale = float(config["lora_alpha"]) / int(config["r"])
    out: dict[str, torch.Tensor] = {}
    adapters: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        for part in _LORA_PARTS:
            if part in key:
                module, rest = key.split(part, 1)
                adapters.setdefault(module, {})[part.strip(".") + "." + rest] = value
                break
        else:
            out[key.replace(".base_layer.", ".")] = value
    for module, parts in adapters.items():
        a = [v for k, v in parts.items() if k.startswith("lora_A.") and k.endswith(".weight")]
        b = [v for k, v in parts.items() if k.startswith("lora_B.") and k.endswith(".weight")]
        base = out.get(f"{module}.weight")
        if len(a) != 1 or len(b) != 1 or base is None or len(parts) != 2:
            raise MissingWeightsError(
                f"LoRA layer {module}: expected one lora_A/lora_B weight pair and {module}.base_layer.weight, "
                f"got {sorted(parts)}"
            )
        merged = base.to(torch.float32) + scale * (b[0].to(torch.float32) @ a[0].to(torch.float32))
        out[f"{module}.weight"] = merged.to(base.dtype)
    return out


@contextmanager
def quiet_load_report() -> Iterator[None]:
    """Hold back transformers' multi-line load report: `check_loading` reports in one line instead."""
    hf = logging.getLogger("transformers.modeling_utils")
    level = hf.level
    hf.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hf.setLevel(level)


def check_loading(info: Mapping[str, Any], folder: str | Path, allowed: Iterable[str] = ()) -> None:
    """After a load: missing weights raise (`check_missing`), unused checkpoint tensors are logged."""
    check_missing(info.get("missing_keys", ()), folder, allowed)
    unexpected = sorted(info.get("unexpected_keys", ()))
    if unexpected:
        logger.warning(
            "%s: %d checkpoint tensor(s) not used by the model: %s",
            folder,
            len(unexpected),
            _first(unexpected),
        )


def check_missing(missing: Iterable[str], folder: str | Path, allowed: Iterable[str] = ()) -> None:
    """Raise `MissingWeightsError` for model weights a checkpoint did not provide (except ``allowed``)."""
    missing = sorted(set(missing) - set(allowed))
    if missing:
        raise MissingWeightsError(
            f"{folder}: the checkpoint lacks {len(missing)} weight(s) the model needs: {_first(missing)} "
            "(they would start from random values; is it a checkpoint of this model?)"
        )


__all__ = [
    "EMA_WEIGHTS_NAME",
    "LORA_CONFIG_NAME",
    "WEIGHT_CHOICES",
    "MissingWeightsError",
    "check_loading",
    "check_missing",
    "checkpoint_state_dict",
    "has_lora_layout",
    "merge_lora",
    "needs_conversion",
    "quiet_load_report",
    "resolve_weights",
]
