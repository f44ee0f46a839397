"""The demo dataset writer: layout, determinism, frame codes, image content that follows the state."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from gr00t.cli.demo_data import main as demo_main
from gr00t.data.demo import CAMERAS, TASKS, read_frame_code, write_demo_dataset
from gr00t.data.video import decode_frames


def _all_rows(root) -> pd.DataFrame:
    return pd.concat(
        [pd.read_parquet(p) for p in sorted((root / "data").rglob("*.parquet"))], ignore_index=True
    )


def test_v3_layout_packs_episodes_into_shared_files(demo_dataset_v3):
    info = json.loads((demo_dataset_v3 / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    assert info["fps"] == 15 and info["total_episodes"] == 6 and info["total_frames"] == 360
    assert sorted(p.name for p in (demo_dataset_v3 / "data").rglob("*.parquet")) == ["file-000.parquet"]
    for cam in CAMERAS:
        files = list((demo_dataset_v3 / "videos" / f"observation.images.{cam}").rglob("*.mp4"))
        assert [f.name for f in files] == ["file-000.mp4"]
        assert info["features"][f"observation.images.{cam}"]["shape"] == [96, 128, 3]
    episodes = pd.read_parquet(demo_dataset_v3 / "meta/episodes/chunk-000/file-000.parquet")
    assert episodes["dataset_from_index"].tolist() == [0, 60, 120, 180, 240, 300]
    assert episodes["videos/observation.images.front/from_timestamp"].tolist() == pytest.approx(
        [0, 4, 8, 12, 16, 20]
    )
    assert list(episodes["tasks"].iloc[1]) == [TASKS[1]]
    tasks = pd.read_parquet(demo_dataset_v3 / "meta/tasks.parquet")
    assert dict(zip(tasks["task_index"], tasks.index)) == dict(enumerate(TASKS))


def test_v21_layout_one_file_per_episode(demo_dataset_v21):
    info = json.loads((demo_dataset_v21 / "meta/info.json").read_text())
    assert info["codebase_version"] == "v2.1"
    assert len(list((demo_dataset_v21 / "data").rglob("episode_*.parquet"))) == 6
    assert (demo_dataset_v21 / "videos/chunk-000/observation.images.wrist/episode_000005.mp4").is_file()
    lines = (demo_dataset_v21 / "meta/episodes.jsonl").read_text().splitlines()
    assert [json.loads(x)["length"] for x in lines] == [60] * 6
    assert (demo_dataset_v21 / "meta/episodes_stats.jsonl").is_file()


def test_same_arguments_same_data_and_frames(tmp_path, demo_dataset_v3):
    again = write_demo_dataset(tmp_path / "again", version="v3.0")
    pd.testing.assert_frame_equal(_all_rows(again), _all_rows(demo_dataset_v3))
    other_seed = write_demo_dataset(tmp_path / "seed1", version="v3.0", seed=1)
    assert not np.allclose(
        np.stack(_all_rows(other_seed)["observation.state"]),
        np.stack(_all_rows(demo_dataset_v3)["observation.state"]),
    )
    path = "videos/observation.images.front/chunk-000/file-000.mp4"
    a = decode_frames(again / path, [0.0, 7.0], backend="pyav")
    b = decode_frames(demo_dataset_v3 / path, [0.0, 7.0], backend="pyav")
    assert np.array_equal(a, b)


def test_v3_and_v21_hold_the_same_episodes(demo_dataset_v3, demo_dataset_v21):
    pd.testing.assert_frame_equal(_all_rows(demo_dataset_v3), _all_rows(demo_dataset_v21))


def test_actions_are_the_next_state_and_trajectories_are_smooth(demo_dataset_v3):
    rows = _all_rows(demo_dataset_v3)
    for _, ep in rows.groupby("episode_index"):
        state, action = np.stack(ep["observation.state"]), np.stack(ep["action"])
        assert np.allclose(action[:-1], state[1:])
        assert np.abs(np.diff(state[:, :6], axis=0)).max() < 0.2
        assert set(np.round(state[[0, -1], 6])) == {0.0, 1.0}  # the gripper closes during the episode


def test_frame_codes_survive_encoding(demo_dataset_v21):
    path = demo_dataset_v21 / "videos/chunk-000/observation.images.front/episode_000004.mp4"
    frames = decode_frames(path, np.arange(60) / 15, backend="pyav")
    assert [read_frame_code(f) for f in frames] == [(4, i) for i in range(60)]


def test_blob_follows_the_arm(demo_dataset_v21):
    """The front camera's blob x position moves with tanh(arm joint 0): images carry the state."""
    rows = _all_rows(demo_dataset_v21)
    ep = rows[rows["episode_index"] == 0]
    state = np.stack(ep["observation.state"])
    path = demo_dataset_v21 / "videos/chunk-000/observation.images.front/episode_000000.mp4"
    frames = decode_frames(path, np.arange(60) / 15, backend="pyav").astype(np.float32)
    red = frames[:, 16:, :, 0] - frames[:, 16:, :, 1]  # task 0 paints a red blob
    xs = np.arange(frames.shape[2])
    blob_x = np.array([(m.clip(0) * xs).sum() / m.clip(0).sum() for m in (r * (r > 100) for r in red)])
    assert np.corrcoef(blob_x, np.tanh(state[:, 0]))[0, 1] > 0.95


def test_multiple_files_lengths_and_av1(tmp_path):
    root = write_demo_dataset(
        tmp_path / "ds",
        num_episodes=3,
        episode_length=[5, 7, 9],
        episodes_per_file=2,
        codec="av1",
        height=64,
        width=96,
    )
    assert len(list((root / "data").rglob("*.parquet"))) == 2
    info = json.loads((root / "meta/info.json").read_text())
    assert info["features"]["observation.images.front"]["info"]["video.codec"] == "av1"
    episodes = pd.read_parquet(root / "meta/episodes/chunk-000/file-000.parquet")
    assert episodes["data/file_index"].tolist() == [0, 0, 1]
    assert episodes["videos/observation.images.wrist/from_timestamp"].tolist() == pytest.approx(
        [0, 5 / 15, 0]
    )
    assert pq.read_metadata(root / "data/chunk-000/file-001.parquet").num_rows == 9
    frames = decode_frames(
        root / "videos/observation.images.wrist/chunk-000/file-001.mp4", [8 / 15], backend="pyav"
    )
    assert frames.shape == (1, 64, 96, 3) and read_frame_code(frames[0]) == (2, 8)


def test_refuses_to_overwrite_and_bad_arguments(tmp_path, demo_dataset_v3):
    with pytest.raises(FileExistsError, match="not empty"):
        write_demo_dataset(demo_dataset_v3)
    with pytest.raises(ValueError, match="v1.6"):
        write_demo_dataset(tmp_path / "x", version="v1.6")
    with pytest.raises(ValueError, match="episode_length"):
        write_demo_dataset(tmp_path / "y", num_episodes=2, episode_length=[3])
    with pytest.raises(ValueError, match="not-a-codec"):
        write_demo_dataset(tmp_path / "z", codec="not-a-codec")
    assert not (tmp_path / "z").exists() and not list(tmp_path.glob(".z*"))


def test_cli_writes_a_dataset(tmp_path, capsys):
    assert demo_main([str(tmp_path / "cli"), "--version", "v2.1", "--episodes", "2", "--length", "4"]) == 0
    assert "wrote v2.1" in capsys.readouterr().out
    assert json.loads((tmp_path / "cli/meta/info.json").read_text())["total_frames"] == 8
    assert demo_main([str(tmp_path / "cli"), "--episodes", "1", "--length", "2"]) == 2
    assert "not empty" in capsys.readouterr().err


def test_mixture_demo_writes_one_readable_dataset_per_entry(tmp_path):
    """`gr00t-demo-data --mixture`: each entry's embodiment keys and widths, read back by the real dataset."""
    import subprocess
    import sys

    from gr00t.data.dataset import Gr00tDataset
    from gr00t.data.demo_mixture import group_width
    from gr00t.data.embodiment import load_embodiment
    from gr00t.data.mixture import load_mixture

    proc = subprocess.run(
        [sys.executable, "-m", "gr00t.cli.demo_data", "--mixture", "pretrain_n16", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    mixture = load_mixture("pretrain_n16", data_root=tmp_path)
    for entry in mixture.entries:
        embodiment = load_embodiment(entry.embodiment)
        sample = Gr00tDataset(entry.path, embodiment)[0]
        assert set(sample["video"]) == set(embodiment.video.keys)
        for key in embodiment.state.keys:
            assert sample["state"][key].shape[-1] == group_width(embodiment, key), (entry.name, key)
        for key in embodiment.action.keys:
            assert sample["action"][key].shape == (embodiment.action_horizon, group_width(embodiment, key))
        assert isinstance(sample["language"], str) and sample["language"]
    assert group_width(load_embodiment("g1"), "left_arm") == 7
    assert group_width(load_embodiment("behavior_r1_pro"), "robot_pos") == 3
    again = subprocess.run(
        [sys.executable, "-m", "gr00t.cli.demo_data", "--mixture", "pretrain_n16", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 2 and "not empty" in again.stderr  # nothing is overwritten


def test_dataset_files_honour_the_umask(tmp_path):
    import os
    import stat

    old = os.umask(0o027)
    try:
        root = write_demo_dataset(tmp_path / "shared", num_episodes=2, episode_length=12)
    finally:
        os.umask(old)
    paths = [root, *root.rglob("*")]
    assert any(p.suffix == ".mp4" for p in paths) and any(p.suffix == ".parquet" for p in paths)
    for path in paths:
        want = 0o750 if path.is_dir() else 0o640
        assert stat.S_IMODE(path.stat().st_mode) == want, path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared"]  # no staging folder left
