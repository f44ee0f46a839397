"""Cheap integrity checks of checkpoint files, so a truncated or corrupt file is named, not obscure.

A copy cut short or a disk that filled up leaves files whose loader errors name nothing
(``SafetensorError: Error while deserializing header``). These checks read only headers and file
sizes: a safetensors file must hold exactly the bytes its header declares, an index's shards must
exist, JSON files must parse, and torch's zip-format ``.pt``/``.pth`` files must end in a readable
central directory. Each failure raises `IncompleteCheckpointError` naming the file.
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
_MAX_HEADER = 100 * 1024 * 1024


class IncompleteCheckpointError(ValueError):
    """A checkpoint file is truncated or corrupt; the message names it."""


def _incomplete(path: Path, what: str) -> IncompleteCheckpointError:
    return IncompleteCheckpointError(
        f"{path}: {what}; the checkpoint {path.parent} is incomplete or corrupt "
        "(copy it again, or use an earlier checkpoint)"
    )


def check_safetensors(path: str | Path) -> None:
    """The file's header parses and its size is exactly what the header declares."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise _incomplete(path, f"{size} bytes, too short for a safetensors header")
        (length,) = struct.unpack("<Q", head)
        if length > min(_MAX_HEADER, size - 8):
            raise _incomplete(path, f"header length {length} does not fit a file of {size} bytes")
        try:
            header = json.loads(f.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _incomplete(path, f"unreadable safetensors header ({exc})") from None
    if not isinstance(header, dict):
        raise _incomplete(path, "safetensors header is not a JSON object")
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise _incomplete(path, f"tensor {name!r} has no valid data_offsets in the header")
        end = max(end, offsets[1])
    expected = 8 + length + end
    if size != expected:
        state = "truncated" if size < expected else "longer than its header declares"
        raise _incomplete(path, f"{state}: {size} bytes, the header declares {expected}")


def check_json(path: str | Path) -> None:
    """The file parses as JSON."""
    path = Path(path)
    try:
        json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _incomplete(path, f"not valid JSON ({exc})") from None


def check_torch_file(path: str | Path) -> None:
    """A ``torch.save`` file (zip format) ends in a readable central directory."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise _incomplete(path, f"not a complete torch.save archive ({exc})") from None


def check_weights(folder: str | Path) -> None:
    """Check the safetensors weights of a local checkpoint folder (single file or sharded)."""
    folder = Path(folder)
    index = folder / WEIGHTS_INDEX_NAME
    if index.is_file():
        check_json(index)
        weight_map = json.loads(index.read_text()).get("weight_map")
        if not isinstance(weight_map, dict):
            raise _incomplete(index, "no 'weight_map' object")
        for name in sorted(set(map(str, weight_map.values()))):
            shard = folder / name
            if not shard.is_file():
                raise _incomplete(shard, f"missing (listed in {WEIGHTS_INDEX_NAME})")
            check_safetensors(shard)
    elif (folder / WEIGHTS_NAME).is_file():
        check_safetensors(folder / WEIGHTS_NAME)


def check_model_files(folder: str | Path) -> None:
    """What ``from_pretrained`` reads: ``config.json`` and the weights (no-op unless a local folder)."""
    folder = Path(str(folder))
    if not folder.is_dir():
        return
    if (folder / "config.json").is_file():
        check_json(folder / "config.json")
    check_weights(folder)


def check_checkpoint_files(folder: str | Path) -> None:
    """What a resume reads: the model files, every top-level ``*.json`` and ``*.pt`` / ``*.pth``."""
    folder = Path(str(folder))
    if not folder.is_dir():
        return
    check_model_files(folder)
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix == ".json" and path.name not in ("config.json", WEIGHTS_INDEX_NAME):
            check_json(path)
        elif path.is_file() and path.suffix in (".pt", ".pth"):
            check_torch_file(path)


__all__ = [
    "IncompleteCheckpointError",
    "check_checkpoint_files",
    "check_json",
    "check_model_files",
    "check_safetensors",
    "check_torch_file",
    "check_weights",
]
