"""LeRobot image features: PNG/JPEG frames stored in the parquet rows (or beside them) → uint8 arrays."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from gr00t.data.video import VideoDecodeError


def decode_image_cell(cell, root: Path, where: str) -> np.ndarray:
    """One parquet image cell (``{"bytes", "path"}`` or raw bytes) → uint8 [H, W, 3].

    A cell without embedded bytes reads its ``path`` (relative to the dataset ``root``). Errors are
    `VideoDecodeError`s that start with ``where`` (file, episode, key, frame).
    """
    from PIL import Image

    data = cell.get("bytes") if isinstance(cell, dict) else cell
    if data is None and isinstance(cell, dict) and cell.get("path"):
        file = Path(cell["path"])
        file = file if file.is_absolute() else root / file
        if not file.is_file():
            raise VideoDecodeError(f"{where}: no embedded image bytes and {file} does not exist")
        data = file.read_bytes()
    if not isinstance(data, (bytes, bytearray)):
        raise VideoDecodeError(f"{where}: expected image bytes, got {type(data).__name__}")
    try:
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB"))
    except Exception as err:  # noqa: BLE001 - PIL raises many types for corrupt data
        raise VideoDecodeError(f"{where}: cannot decode image: {err}") from err
