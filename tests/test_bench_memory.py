"""bench/memory.py: the fake-tensor estimate of the n16_release finetune (JSON rows, the 24gb budget)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
KEYS = [
    "profile",
    "batch",
    "params_gib",
    "grads_gib",
    "optimizer_gib",
    "activations_gib",
    "peak_gib",
    "host_gib",
]


@pytest.mark.slow
def test_24gb_profile_fits_22_gib_at_batch_16_and_json_rows_have_the_keys() -> None:
    proc = subprocess.run(
        [sys.executable, "bench/memory.py", "--json", "--profiles", "default", "24gb", "--batches", "16"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["profile"]: r for r in map(json.loads, proc.stdout.splitlines())}
    assert set(rows) == {"default", "24gb"}
    for row in rows.values():
        assert list(row) == KEYS and row["batch"] == 16
        parts = row["params_gib"] + row["grads_gib"] + row["optimizer_gib"] + row["activations_gib"]
        assert abs(parts - row["peak_gib"]) < 0.05  # the peak is made of the four parts
    # 1.34 B frozen bf16 + 1.62 B trainable float32 parameters
    assert 8.4 < rows["24gb"]["params_gib"] < 8.7
    assert rows["24gb"]["peak_gib"] <= 22.0
    assert rows["default"]["peak_gib"] > 24.0  # why the profile exists
    assert rows["default"]["optimizer_gib"] > 3.5 * rows["24gb"]["optimizer_gib"]
