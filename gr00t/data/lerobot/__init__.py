"""LeRobot dataset readers: `open_lerobot_dataset(root)` picks the reader from meta/info.json."""

from __future__ import annotations

from pathlib import Path

from gr00t.data.lerobot.base import (
    INFO_PATH,
    LeRobotFormatError,
    LeRobotReader,
    NonFiniteValueError,
    read_json,
)
from gr00t.data.lerobot.v2 import LeRobotV2Reader
from gr00t.data.lerobot.v3 import LeRobotV3Reader

READERS: dict[str, type[LeRobotReader]] = {
    "v2.0": LeRobotV2Reader,
    "v2.1": LeRobotV2Reader,
    "v3.0": LeRobotV3Reader,
}


def read_info(root: str | Path) -> dict:
    """meta/info.json of a dataset, with a helpful error when `root` is not a LeRobot dataset."""
    root = Path(root)
    path = root / INFO_PATH
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} does not exist")
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: {root} is not a LeRobot dataset (expected meta/info.json with "
            f"'codebase_version' one of {sorted(READERS)})"
        )
    return read_json(path)


def open_lerobot_dataset(root: str | Path, check_files: bool = True) -> LeRobotReader:
    """Open the LeRobot dataset at `root` (v2.0, v2.1 or v3.0, from info.json's codebase_version).

    With `check_files` every data and video file named by the metadata must exist.
    """
    info = read_info(root)
    version = info.get("codebase_version")
    reader = READERS.get(str(version))
    if reader is None:
        raise LeRobotFormatError(
            f"{Path(root) / INFO_PATH}: codebase_version {version!r} is not supported; "
            f"supported: {sorted(READERS)} (convert older datasets with LeRobot's conversion scripts)"
        )
    return reader(root, info=info, check_files=check_files)


__all__ = [
    "LeRobotFormatError",
    "LeRobotReader",
    "LeRobotV2Reader",
    "LeRobotV3Reader",
    "NonFiniteValueError",
    "open_lerobot_dataset",
    "read_info",
]
