"""The LeRobot v3.0 reader on generated data (and on variants laid out the way LeRobot writes them)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gr00t.data.demo import TASKS, read_frame_code, write_demo_dataset
from gr00t.data.lerobot import LeRobotV3Reader, open_lerobot_dataset

FRONT, WRIST = "observation.images.front", "observation.images.wrist"


def _rows(root) -> pd.DataFrame:
    return pd.concat(
        [pd.read_parquet(p) for p in sorted((root / "data").rglob("*.parquet"))], ignore_index=True
    )


def test_metadata(demo_dataset_v3):
    reader = open_lerobot_dataset(demo_dataset_v3)
    assert isinstance(reader, LeRobotV3Reader) and reader.version == "v3.0"
    assert reader.fps == 15.0
    assert reader.num_episodes == 6 and reader.episode_indices == list(range(6))
    assert reader.episode_lengths == dict.fromkeys(range(6), 60)
    assert reader.tasks == dict(enumerate(TASKS))
    assert reader.episode_tasks(4) == [TASKS[4 % 3]]
    assert reader.video_keys == [FRONT, WRIST]
    assert reader.feature_shape("observation.state") == (7,)


def test_episode_data_matches_the_parquet_rows(demo_dataset_v3):
    reader = open_lerobot_dataset(demo_dataset_v3)
    rows = _rows(demo_dataset_v3)
    for ep in (0, 3, 5):
        expected = rows[rows["episode_index"] == ep]
        data = reader.episode_data(ep, ["observation.state", "action", "annotation.human.task_description"])
        assert set(data) == {"observation.state", "action", "annotation.human.task_description"}
        assert data["observation.state"].shape == (60, 7) and data["observation.state"].dtype == np.float32
        assert np.array_equal(data["observation.state"], np.stack(expected["observation.state"]))
        assert np.array_equal(data["action"], np.stack(expected["action"]))
        assert (data["annotation.human.task_description"] == ep % 3).all()
    everything = reader.episode_data(2)
    assert {"observation.state", "action", "timestamp", "frame_index", "index"} <= set(everything)
    assert everything["index"].tolist() == list(range(120, 180))


def test_video_location_and_timestamps(demo_dataset_v3):
    reader = open_lerobot_dataset(demo_dataset_v3)
    path, start = reader.video_location(2, WRIST)
    assert path == demo_dataset_v3 / "videos" / WRIST / "chunk-000/file-000.mp4"
    assert start == pytest.approx(8.0)
    assert reader.frame_timestamps(2, [0, 30, 59], WRIST) == pytest.approx(
        [8.0, 10.0, 8.0 + 59 / 15], abs=1e-6
    )
    with pytest.raises(IndexError, match="episode 2 has 60 frames"):
        reader.frame_timestamps(2, [60])


@pytest.mark.parametrize("backend", ["torchcodec", "pyav"])
def test_decoded_frames_are_the_requested_ones(demo_dataset_v3, backend):
    reader = open_lerobot_dataset(demo_dataset_v3)
    for ep, key in ((1, FRONT), (5, WRIST)):
        indices = [59, 0, 17, 17, 40]
        frames = reader.decode_frames(ep, key, indices, backend=backend)
        assert frames.shape == (5, 96, 128, 3) and frames.dtype == np.uint8
        assert [read_frame_code(f) for f in frames] == [(ep, i) for i in indices]
    segment = reader.decode_segment(3, FRONT, 55, 60, backend=backend)
    assert [read_frame_code(f) for f in segment] == [(3, i) for i in range(55, 60)]


def test_several_data_and_video_files(tmp_path):
    root = write_demo_dataset(
        tmp_path / "ds", num_episodes=5, episode_length=[4, 6, 5, 3, 7], episodes_per_file=2
    )
    reader = open_lerobot_dataset(root)
    assert reader.data_path(4) == root / "data/chunk-000/file-002.parquet"
    assert reader.video_location(3, FRONT) == (
        root / "videos" / FRONT / "chunk-000/file-001.mp4",
        pytest.approx(5 / 15),
    )
    rows = _rows(root)
    for ep, length in reader.episode_lengths.items():
        data = reader.episode_data(ep, ["observation.state", "frame_index"])
        assert data["frame_index"].tolist() == list(range(length))
        assert np.array_equal(
            data["observation.state"], np.stack(rows[rows["episode_index"] == ep]["observation.state"])
        )
        frames = reader.decode_frames(ep, WRIST, [length - 1])
        assert read_frame_code(frames[0]) == (ep, length - 1)


def _relayout_like_lerobot(root):
    """Rewrite the v3 metadata/data the way LeRobot's own writer stores it: unnamed task index,
    stats/* columns, several episode-metadata files, and variable-length list vectors."""
    tasks = pd.read_parquet(root / "meta/tasks.parquet")
    pd.DataFrame({"task_index": tasks["task_index"].tolist()}, index=list(tasks.index)).to_parquet(
        root / "meta/tasks.parquet"
    )
    episodes = pd.read_parquet(root / "meta/episodes/chunk-000/file-000.parquet")
    episodes["stats/observation.state/mean"] = [np.zeros(7).tolist()] * len(episodes)
    episodes["stats/action/count"] = [[60]] * len(episodes)
    (root / "meta/episodes/chunk-000/file-000.parquet").unlink()
    episodes.iloc[:4].to_parquet(root / "meta/episodes/chunk-000/file-000.parquet", index=False)
    episodes.iloc[4:].to_parquet(root / "meta/episodes/chunk-000/file-001.parquet", index=False)
    data_path = root / "data/chunk-000/file-000.parquet"
    table = pq.read_table(data_path)
    for name in ("observation.state", "action"):
        col = table.column(name).cast(pa.list_(pa.float32()))
        table = table.set_column(table.schema.get_field_index(name), name, col)
    pq.write_table(table, data_path, row_group_size=50)


def test_reads_lerobot_style_variants(demo_dataset_v3, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(demo_dataset_v3, root)
    _relayout_like_lerobot(root)
    original = open_lerobot_dataset(demo_dataset_v3)
    reader = open_lerobot_dataset(root)
    assert reader.tasks == original.tasks and reader.episode_lengths == original.episode_lengths
    for ep in (0, 4, 5):
        a, b = (
            reader.episode_data(ep, ["observation.state"]),
            original.episode_data(ep, ["observation.state"]),
        )
        assert np.array_equal(a["observation.state"], b["observation.state"])
    assert read_frame_code(reader.decode_frames(5, FRONT, [7])[0]) == (5, 7)


def test_tasks_from_a_task_column(demo_dataset_v3, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(demo_dataset_v3, root)
    pd.DataFrame({"task_index": [2, 0, 1], "task": ["c", "a", "b"]}).to_parquet(
        root / "meta/tasks.parquet", index=False
    )
    assert open_lerobot_dataset(root).tasks == {0: "a", 1: "b", 2: "c"}


def test_column_reads_are_cached_and_selective(demo_dataset_v3, monkeypatch):
    reader = open_lerobot_dataset(demo_dataset_v3)
    reads = []
    real = pq.read_table

    def counting(path, columns=None, **kw):
        reads.append(tuple(columns or ()))
        return real(path, columns=columns, **kw)

    monkeypatch.setattr(pq, "read_table", counting)
    reader.episode_data(0, ["action"])
    reader.episode_data(1, ["action"])
    reader.episode_data(2, ["action", "timestamp"])
    assert reads == [("episode_index",), ("action",), ("timestamp",)]
    info = json.loads((demo_dataset_v3 / "meta/info.json").read_text())
    assert "observation.state" in info["features"]  # present in the file, never read above
