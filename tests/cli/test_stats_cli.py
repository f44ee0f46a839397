"""`gr00t-stats` command line (gr00t/cli/stats.py)."""

import json
import shutil
import subprocess
import sys

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
    assert main([str(root), "--embodiment", "new_embodyment"]) == 2  # user mistakes exit 2, one line
    assert "Did you mean 'new_embodiment'" in capsys.readouterr().err
    assert main([str(tmp_path / "nowhere"), "--embodiment", "new_embodiment"]) == 2
    assert "not a LeRobot dataset" in capsys.readouterr().err
    assert main([str(root)]) == 2  # embodiment= is required
    assert "missing required key embodiment=" in capsys.readouterr().err


def test_help_runs_as_a_program():
    proc = subprocess.run(
        [sys.executable, "-m", "gr00t.cli.stats", "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0
    assert "--embodiment" in proc.stdout and "relative_stats.json" in proc.stdout


def test_key_value_spelling_and_robot_yaml_outside_the_repo(demo_dataset_v3, tmp_path, capsys):
    import shutil as sh

    from gr00t.data.embodiment import resolve_embodiment_path

    root = copy_without_video(demo_dataset_v3, tmp_path)
    robot = tmp_path / "elsewhere" / "my_arm.yaml"
    robot.parent.mkdir()
    sh.copy(resolve_embodiment_path("new_embodiment"), robot)
    assert main([str(root), f"embodiment={robot}", "quiet=true"]) == 0
    out = capsys.readouterr().out
    assert "frames" not in out and "wrote" in out
    rel = json.loads((root / "meta/relative_stats.json").read_text())
    assert rel["embodiment"] == "new_embodiment"  # the tag inside my_arm.yaml
    assert main([str(root), "embodiment=new_embodiment", "quiet=maybe"]) == 2
    assert "quiet='maybe': expected true or false" in capsys.readouterr().err


def test_write_modality(demo_dataset_v3, tmp_path, capsys):
    root = copy_without_video(demo_dataset_v3, tmp_path)
    (root / "meta" / "modality.json").unlink()
    # without modality.json the statistics cannot be computed: the error says how to write one
    assert main([str(root), "embodiment=new_embodiment"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "modality.json is missing" in err and "--write-modality" in err
    assert main([str(root), "--write-modality"]) == 0
    written = json.loads((root / "meta" / "modality.json").read_text())
    assert set(written) == {"state", "action", "video", "annotation"} and written["video"]
    assert main([str(root), "write_modality=true"]) == 2  # never overwritten by accident
    assert "overwrite_modality=true" in capsys.readouterr().err
