"""bench/gpu.sh cannot run here (no GPU): its CPU smoke mode runs every section with the tiny model."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_script_cpu_smoke_runs_every_section(tmp_path: Path) -> None:
    env = {**os.environ, "OUT": str(tmp_path)}
    proc = subprocess.run(["bash", "bench/gpu.sh", "--cpu-smoke"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=400)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for header in ("== environment ==", "== train ==", "== attention ==", "== latency =="):
        assert header in proc.stdout
    rows = [json.loads(line) for line in (tmp_path / "gpu_results.jsonl").read_text().splitlines()]
    train = {r["profile"]: r for r in rows if r["section"] == "train"}
    assert set(train) == {"default", "24gb"}
    for row in train.values():  # a real step ran for each profile, next to its estimate
        assert row["samples_s"] > 0 and row["estimate_gib"] > 0
    assert train["24gb"]["estimate_gib"] < train["default"]["estimate_gib"]
    assert any(r["section"] == "latency" and r.get("ms", 0) > 0 for r in rows)
    assert "SKIPPED compiled get_action: CPU smoke run" in proc.stdout
