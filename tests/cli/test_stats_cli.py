"""`gr00t-stats` command line (gr00t/cli/stats.py)."""

import json
import shutil
import subprocess
import sys

import pytest

from gr00t.cli.stats import main


def copy_without_video(src, tmp_path):
    dst = tmp_path / "ds"
    shutil.copytree(src, dst)
    for f in ("stats.json", "relative_stats.json"):
        (dst / "meta" / f).unlink(missing_ok=True)
    # corrupt every video: decoding any of them would fail loudly
    for mp4 in (dst / "videos").rglob("*.mp4"):
        mp4.write_bytes(b"not a video")
    return dst


def test_writes_both_files_without_decoding_video(demo_dataset_v3, tmp_path, capsys):
    root = copy_without_video(demo_dataset_v3, tmp_path)
    assert main([str(root), "--embodiment", "new_embodiment"]) == 0
    out = capsys.readouterr().out
    assert "360 frames" in out and "relative arm" in out
    stats = json.loads((root / "meta/stats.json").read_text())
    rel = json.loads((root / "meta/relative_stats.json").read_text())
    assert set(stats) >= {"observation.state", "action"}
    assert len(rel["stats"]["arm"]["mean"]) == 16 and rel["embodiment"] == "new_embodiment"


def test_errors_are_clear(demo_dataset_v3, tmp_path, capsys):
    root = copy_without_video(demo_dataset_v3, tmp_path)
    assert main([str(root), "--embodiment", "new_embodyment"]) == 1
    assert "Did you mean 'new_embodiment'" in capsys.readouterr().err
    assert main([str(tmp_path / "nowhere"), "--embodiment", "new_embodiment"]) == 2
    assert "not a LeRobot dataset" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main([str(root)])  # --embodiment is required
    assert info.value.code == 2


def test_help_runs_as_a_program():
    proc = subprocess.run(
        [sys.executable, "-m", "gr00t.cli.stats", "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0
    assert "--embodiment" in proc.stdout and "relative_stats.json" in proc.stdout
