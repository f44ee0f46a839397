"""Parsing LeRobot's files: JSON / JSON-lines metadata and Arrow (parquet) columns, with errors that
name the file and what was expected. The readers (`gr00t.data.lerobot.base`) build on these."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa


class LeRobotFormatError(ValueError):
    """The dataset's files are missing, malformed or contradict each other."""


class NonFiniteValueError(ValueError):
    """A numeric column holds NaN or inf."""


def read_json(path: Path) -> dict:
    """Parse a JSON file, naming the file in any error."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise LeRobotFormatError(f"{path} is not valid JSON: {err}") from err


def read_jsonl(path: Path) -> list[dict]:
    """Parse a JSON-lines file (blank lines ignored), naming file and line in any error."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise LeRobotFormatError(f"{path}, line {number}: not valid JSON: {err}") from err
    return rows


def task_strings(value) -> list[str]:
    """An episode's `tasks` entry (a list, or a single task) as a list of strings."""
    return [str(t) for t in (value if isinstance(value, list) else [value])]


def column_to_numpy(column: pa.ChunkedArray | pa.Array, where: str) -> np.ndarray:
    """Arrow column → numpy: scalars → [N], fixed-width lists → [N, D], nested fixed lists → [N, ...]."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if column.null_count:
        raise LeRobotFormatError(f"{where}: {column.null_count} null value(s)")
    shape = [len(column)]
    arr = column
    while (
        pa.types.is_list(arr.type)
        or pa.types.is_large_list(arr.type)
        or pa.types.is_fixed_size_list(arr.type)
    ):
        if pa.types.is_fixed_size_list(arr.type):
            width = arr.type.list_size
        else:
            lengths = np.asarray(arr.value_lengths())
            width = int(lengths[0]) if len(lengths) else 0
            if len(lengths) and np.any(lengths != width):
                raise LeRobotFormatError(
                    f"{where}: rows have different lengths ({int(lengths.min())}..{int(lengths.max())})"
                )
        shape.append(width)
        arr = arr.flatten()
        if arr.null_count:
            raise LeRobotFormatError(f"{where}: {arr.null_count} null value(s) inside lists")
    values = arr.to_numpy(zero_copy_only=False)
    return values.reshape(shape)
